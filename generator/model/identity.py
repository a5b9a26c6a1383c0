"""Who says who they are: the guests who check out as guests (an order without IDENTITY).

A guest who does not identify in its first session checks out as a guest with the population's
guestCheckoutShare. The choice is a hash of the guest's assignment key, not a draw on the
block's stream: it is fixed per guest however the work is split, and adding it moved no other
draw.
"""

from __future__ import annotations

import numpy as np

__all__ = ["guest_checkout"]

_SALT = np.uint64(0x6A09E667F3BCC909)


def _unit(key: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) per key: splitmix64's finaliser of the salted key."""
    with np.errstate(over="ignore"):
        z = key.astype(np.uint64) ^ _SALT
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def guest_checkout(key: np.ndarray, identifies: np.ndarray, share: float) -> np.ndarray:
    """Per guest: True where its orders go without an IDENTITY (it never identified first)."""
    return ~identifies & (_unit(key) < share)
