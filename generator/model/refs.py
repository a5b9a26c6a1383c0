"""Refs (random UUID v4 strings) drawn in bulk from the caller's generator."""

from __future__ import annotations

import numpy as np

__all__ = ["halves_strings", "uuid_bytes", "uuid_halves", "uuid_strings", "uuid_u64"]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Where each of the 32 hex digits lands in the 36-character form (dashes at 8, 13, 18, 23).
_SLOTS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def uuid_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random UUID v4 values as an (n, 16) uint8 array."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw


def uuid_strings(raw: np.ndarray) -> np.ndarray:
    """Format an (n, 16) uint8 array as an array of 36-byte strings (dtype S36)."""
    n = raw.shape[0]
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, _SLOTS] = digits
    return out.view("S36").reshape(n)


def uuid_u64(raw: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each UUID as a big-endian uint64 (what sticky assignment hashes)."""
    return raw[:, :8].copy().view(">u8").reshape(-1).astype(np.uint64)


def uuid_halves(raw: np.ndarray) -> np.ndarray:
    """Each UUID as two big-endian uint64 (hi, lo): an (n, 2) array that sorts like the strings."""
    return raw.copy().view(">u8").reshape(-1, 2).astype(np.uint64)


def halves_strings(halves: np.ndarray) -> np.ndarray:
    """(n, 2) uint64 hi/lo back to UUID strings (S36)."""
    raw = np.ascontiguousarray(halves, dtype=np.uint64).astype(">u8").view(np.uint8)
    return uuid_strings(raw.reshape(len(halves), 16))
