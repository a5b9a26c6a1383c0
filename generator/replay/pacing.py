"""Pacing: a requests-per-second cap shared by all senders, and the dataset's timeline scaled."""

from __future__ import annotations

import time

__all__ = ["RateLimit", "Timeline"]


class RateLimit:
    """Evenly spaced slots at `rate` per second (no bursts); `rate` 0 means no cap."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    def delay(self) -> float:
        """Take the next slot and say how long to wait for it."""
        if not self.interval:
            return 0.0
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        return slot - now


class Timeline:
    """Maps dataset time to wall time, `speed` times faster; speed None means as fast as allowed.

    The origin is the first step sent in this run, so a resumed run does not wait out the time
    the dataset spent before its checkpoint.
    """

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self._origin: tuple[float, int] | None = None

    def wait_for(self, created_ms: int) -> float:
        """Seconds until an event created at `created_ms` is due (0 if due now)."""
        if self.speed is None:
            return 0.0
        now = time.monotonic()
        if self._origin is None:
            self._origin = (now, created_ms)
            return 0.0
        wall0, ms0 = self._origin
        return max(0.0, wall0 + (created_ms - ms0) / 1000.0 / self.speed - now)
