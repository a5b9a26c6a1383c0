"""glibc malloc tuning for generation: reuse freed memory instead of mapping it afresh."""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MB = 1 << 20


def keep_freed_memory() -> bool:
    """Large numpy temporaries are made and dropped for every block and bucket; by default
    glibc maps and unmaps each one, and the kernel zeroes every page again. Raising the
    thresholds keeps them on the heap for reuse (peak memory is what the phases need anyway).
    Returns False where the C library is not glibc; nothing changes then."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 256 * _MB) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 512 * _MB) == 1
    ok &= mallopt(_M_TOP_PAD, 64 * _MB) == 1
    return bool(ok)
