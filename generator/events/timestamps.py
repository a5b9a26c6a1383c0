"""Epoch milliseconds to ISO-8601 text in bulk, by integer arithmetic on digit arrays."""

from __future__ import annotations

import numpy as np

__all__ = ["iso_bytes", "iso_strings"]

_DAY_MS = 86_400_000
_ZERO = ord("0")


def iso_bytes(ms: np.ndarray) -> np.ndarray:
    """`YYYY-MM-DDTHH:MM:SS.mmm` (no zone letter) for each epoch ms, as an S23 array."""
    ms = np.asarray(ms, dtype=np.int64)
    n = len(ms)
    out = np.empty((n, 23), dtype=np.uint8)
    if n == 0:
        return out.view("S23").reshape(0)
    day = ms // _DAY_MS
    # Few distinct days in a batch: format those with numpy, then spread by index.
    days, inverse = np.unique(day, return_inverse=True)
    text = np.datetime_as_string(days.astype("datetime64[D]"), unit="D").astype("S10")
    out[:, :10] = text.view(np.uint8).reshape(len(days), 10)[inverse]
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
    return out.view("S23").reshape(n)


def iso_strings(ms: np.ndarray) -> list[str]:
    """ISO-8601 UTC with milliseconds and a Z, as Python strings."""
    return [t.decode() + "Z" for t in iso_bytes(ms).tolist()]
