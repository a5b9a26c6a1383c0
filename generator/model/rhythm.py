"""When sessions start: the daily and weekly curves, in each point of sale's own timezone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np

from generator.profile import Behaviour, PointOfSale

__all__ = ["SessionClock", "intensity"]

HOUR_MS = 3_600_000


def intensity(behaviour: Behaviour, local: dt.datetime) -> float:
    """Relative session-start intensity at a local time: daily curve x weekly curve."""
    return behaviour.daily_curve[local.hour] * behaviour.weekly_curve[local.weekday()]


class SessionClock:
    """Samples session start times over a window, hour by hour, following the local curves."""

    def __init__(
        self, behaviour: Behaviour, pos: PointOfSale, start: dt.datetime, end: dt.datetime
    ) -> None:
        zone = ZoneInfo(pos.timezone)
        self.start_ms = int(start.timestamp() * 1000)
        self.end_ms = int(end.timestamp() * 1000)
        hours = max(1, -(-(self.end_ms - self.start_ms) // HOUR_MS))
        weights = np.empty(hours)
        for h in range(hours):
            # The middle of each UTC hour, seen in local time (DST handled by zoneinfo).
            utc = start + dt.timedelta(hours=h, minutes=30)
            weights[h] = intensity(behaviour, utc.astimezone(zone))
        # The last hour may be partial.
        tail = (self.end_ms - self.start_ms) - (hours - 1) * HOUR_MS
        weights[-1] *= tail / HOUR_MS
        if weights.sum() <= 0:
            weights[:] = 1.0
        self.cumulative = np.cumsum(weights) / weights.sum()
        self.hours = hours

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n session start times (epoch ms, int64) inside the window."""
        hour = np.searchsorted(self.cumulative, rng.random(n), side="right")
        hour = np.minimum(hour, self.hours - 1)
        offset = (rng.random(n) * HOUR_MS).astype(np.int64)
        return np.minimum(self.start_ms + hour * HOUR_MS + offset, self.end_ms - 1)
