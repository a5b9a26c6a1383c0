"""Epoch milliseconds to ISO-8601 text in bulk, by integer arithmetic on digit arrays."""

from __future__ import annotations

import numpy as np

__all__ = ["iso_bytes", "iso_strings", "iso_text"]

_DAY_MS = 86_400_000
_ZERO = ord("0")


def iso_bytes(ms: np.ndarray) -> np.ndarray:
    """`YYYY-MM-DDTHH:MM:SS.mmm` (no zone letter) for each epoch ms, as an S23 array."""
    return iso_text(ms).view("S23").reshape(len(ms))


def iso_text(ms: np.ndarray) -> np.ndarray:
    """`YYYY-MM-DDTHH:MM:SS.mmm` for each epoch ms: an (n, 23) uint8 array of characters."""
    ms = np.asarray(ms, dtype=np.int64)
    n = len(ms)
    out = np.empty((n, 23), dtype=np.uint8)
    if n == 0:
        return out
    day = ms // _DAY_MS
    # A batch spans few days: format each day of its range once, then spread by offset.
    first = int(day.min())
    days = np.arange(first, int(day.max()) + 1)
    text = np.datetime_as_string(days.astype("datetime64[D]"), unit="D").astype("S10")
    out[:, :10] = text.view(np.uint8).reshape(len(days), 10)[day - first]
    out[:, 10] = ord("T")
    rest = ms - day * _DAY_MS
    hours, rest = np.divmod(rest, 3_600_000)
    minutes, rest = np.divmod(rest, 60_000)
    seconds, millis = np.divmod(rest, 1000)
    for col, value in ((11, hours), (14, minutes), (17, seconds)):
        out[:, col] = _ZERO + value // 10
        out[:, col + 1] = _ZERO + value % 10
    out[:, 13] = out[:, 16] = ord(":")
    out[:, 19] = ord(".")
    out[:, 20] = _ZERO + millis // 100
    out[:, 21] = _ZERO + (millis // 10) % 10
    out[:, 22] = _ZERO + millis % 10
    return out


def iso_strings(ms: np.ndarray) -> list[str]:
    """ISO-8601 UTC with milliseconds and a Z, as Python strings."""
    return [t.decode() + "Z" for t in iso_bytes(ms).tolist()]
