"""Refs (random UUID v4 strings) drawn in bulk from the caller's generator."""

from __future__ import annotations

import numpy as np

__all__ = [
    "halves_strings",
    "halves_text",
    "uuid_bytes",
    "uuid_halves",
    "uuid_strings",
    "uuid_text",
    "uuid_u64",
]

_HEX_PAIRS = np.array(
    [ord(f"{i:02x}"[0]) | ord(f"{i:02x}"[1]) << 8 for i in range(256)], dtype="<u2"
)


def uuid_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random UUID v4 values as an (n, 16) uint8 array."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw


def uuid_strings(raw: np.ndarray) -> np.ndarray:
    """Format an (n, 16) uint8 array as an array of 36-byte strings (dtype S36)."""
    return uuid_text(raw).view("S36").reshape(raw.shape[0])


def uuid_text(raw: np.ndarray) -> np.ndarray:
    """Format an (n, 16) uint8 array as UUID text: an (n, 36) uint8 array of characters."""
    n = raw.shape[0]
    # One lookup turns each byte into its two hex digits (a little-endian uint16 pair).
    digits = _HEX_PAIRS[raw].view(np.uint8).reshape(n, 32)
    out = np.empty((n, 36), dtype=np.uint8)
    out[:, 0:8] = digits[:, 0:8]
    out[:, 9:13] = digits[:, 8:12]
    out[:, 14:18] = digits[:, 12:16]
    out[:, 19:23] = digits[:, 16:20]
    out[:, 24:36] = digits[:, 20:32]
    out[:, [8, 13, 18, 23]] = ord("-")
    return out


def uuid_u64(raw: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each UUID as a big-endian uint64 (what sticky assignment hashes)."""
    return raw[:, :8].copy().view(">u8").reshape(-1).astype(np.uint64)


def uuid_halves(raw: np.ndarray) -> np.ndarray:
    """Each UUID as two big-endian uint64 (hi, lo): an (n, 2) array that sorts like the strings."""
    return raw.copy().view(">u8").reshape(-1, 2).astype(np.uint64)


def halves_strings(halves: np.ndarray) -> np.ndarray:
    """(n, 2) uint64 hi/lo back to UUID strings (S36)."""
    return halves_text(halves).view("S36").reshape(len(halves))


def halves_text(halves: np.ndarray) -> np.ndarray:
    """(n, 2) uint64 hi/lo back to UUID text: an (n, 36) uint8 array of characters."""
    raw = np.ascontiguousarray(halves, dtype=np.uint64).astype(">u8").view(np.uint8)
    return uuid_text(raw.reshape(len(halves), 16))
