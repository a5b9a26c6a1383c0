"""When sessions start: the daily and weekly curves, in each point of sale's own timezone.

A `SessionClock` also keeps the window's rhythm time ("rhythm days"): the curves' intensity summed
over the window, scaled so that a day of average intensity counts one. A process that is Poisson
in rhythm time follows the curves in real time, which is how guests arrive and return
(`arrivals.py`).
"""

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
    """The local curves over a window, hour by hour: maps rhythm time (0 .. `rhythm_days`) to
    epoch ms, so that times uniform in rhythm time follow the curves."""

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
        # An hour of average intensity (over a whole day and week) is 1/24 rhythm day.
        average = float(np.mean(behaviour.daily_curve) * np.mean(behaviour.weekly_curve))
        if weights.sum() <= 0:
            weights[:] = 1.0
            average = 1.0
        self.cumulative = np.cumsum(weights) / weights.sum()
        self.hours = hours
        self.rhythm_days = float(weights.sum() / average / 24.0)
        self._weights = weights / weights.sum()
        self._hour_ms = np.full(hours, HOUR_MS, dtype=np.int64)
        self._hour_ms[-1] = tail

    def at(self, rhythm: np.ndarray) -> np.ndarray:
        """Epoch ms (int64) of rhythm times in [0, rhythm_days]: the inverse of the curves'
        running sum, linear inside each hour (its intensity is constant there)."""
        x = np.clip(np.asarray(rhythm, dtype=np.float64) / self.rhythm_days, 0.0, 1.0)
        hour = np.minimum(np.searchsorted(self.cumulative, x, side="right"), self.hours - 1)
        before = self.cumulative[hour] - self._weights[hour]
        within = np.clip((x - before) / np.maximum(self._weights[hour], 1e-300), 0.0, 1.0)
        offset = (within * self._hour_ms[hour]).astype(np.int64)
        return np.minimum(self.start_ms + hour * HOUR_MS + offset, self.end_ms - 1)
