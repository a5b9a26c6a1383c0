"""Arrivals: which guests the window sees, and when each of them visits.

Guests arrive (their first visit) at an acquisition rate that follows the daily and weekly
curves, then come back at their own rate (population.sessionsPerWeek on average, lognormal over
guests with activitySigma) for as long as they stay active, an exponential time of mean
population.activeDays; after that they never come back. The shop has run like this since long
before the window, so the window sees two kinds of guest: those who arrive in it, and those who
arrived before it, are still active when it opens and come back in it. The second kind has a
history before the window (`since_ms`), so every session of theirs in the window is a returning
one, and the share of new guests among sessions is the same on the first day as on the last.

Both kinds are drawn directly: a guest with no visit in the window is never drawn, so the work and
the memory of a block are those of the guests the window sees, however long the history. Time is
measured on the curves' own clock (rhythm days, `SessionClock.at`), where arrivals and returns are
Poisson and the active time is exponential, so each draw is exact: a guest active at the window's
start first returns after an exponential time of rate (its rate + 1/activeDays), cut to the window
(the two clocks race; the guest is seen when the return wins), and being memoryless is still
active then, with an exponential time of mean activeDays ahead.

Each guest's return rate is one of `LEVELS` equally likely quantiles of the lognormal (mean one
times sessionsPerWeek / 7 a day), so the share of each level among the guests seen is computed,
not sampled: how many are new, and which rates the returning ones have, follow from it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from generator.model.rhythm import SessionClock
from generator.profile import Population, Profile

__all__ = ["LEVELS", "ArrivalModel", "GuestVisits", "rate_levels", "sessions_a_day"]

LEVELS = 256
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class GuestVisits:
    """The block's guests' visits in the window: per guest whether it arrives in the window, when
    it was first seen (before the window if not) and its return rate; per session its guest and
    start (epoch ms), each guest's first visit first."""

    new: np.ndarray
    since_ms: np.ndarray
    rate: np.ndarray  # returns a rhythm day
    guest: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return len(self.guest)


def rate_levels(population: Population) -> np.ndarray:
    """The `LEVELS` equally likely return rates (a rhythm day), lognormal quantiles of mean
    sessionsPerWeek / 7."""
    z = np.array([NormalDist().inv_cdf((k + 0.5) / LEVELS) for k in range(LEVELS)])
    levels = np.exp(population.activity_sigma * z)
    return population.sessions_per_week / 7.0 * levels / levels.mean()


def sessions_a_day(population: Population, days: float) -> float:
    """Sessions a day the window of `days` (of average rhythm) is expected to hold: the
    acquisition rate that makes its guests seen `population.guests`, times the sessions each
    arrival brings while active."""
    levels = rate_levels(population)
    mu = population.active_days
    total = levels + 1.0 / mu
    seen = days + mu * float(np.mean(levels / total * -np.expm1(-total * days)))
    return population.guests / seen * (1.0 + mu * float(levels.mean()))


class ArrivalModel:
    """The arrival process of one profile over one window, per point of sale."""

    def __init__(self, profile: Profile, clocks: tuple[SessionClock, ...]) -> None:
        population = profile.population
        self.clocks = clocks
        self.active_days = population.active_days
        self.levels = rate_levels(population)
        self.rhythm_days = np.array([c.rhythm_days for c in clocks])
        seen = self._seen_if_active(self.rhythm_days[:, None], self.levels[None, :])
        # Per point of sale, per unit acquisition rate: guests arriving in the window, and
        # guests active at its start who come back in it (by rate level).
        arriving = self.rhythm_days
        returning = self.active_days * seen.mean(axis=1)
        self.new_share = arriving / (arriving + returning)
        cum = np.cumsum(seen, axis=1)
        self.level_cumulative = cum / cum[:, -1:]
        # Sessions in the window per unit acquisition rate: the arrivals, and the returns of
        # the guests active at any time (activeDays of arrivals, at the mean rate).
        sessions = arriving * (1.0 + self.active_days * self.levels.mean())
        self.sessions_per_guest = sessions / (arriving + returning)

    def _seen_if_active(self, days: np.ndarray, rate: np.ndarray) -> np.ndarray:
        """The chance that a guest active at the window's start returns before it stops."""
        total = rate + 1.0 / self.active_days
        return rate / total * -np.expm1(-total * days)

    def expected_sessions(self, shares: np.ndarray) -> float:
        """Sessions a guest seen in the window has there, on average (before conversions)."""
        return float(np.dot(shares, self.sessions_per_guest))

    def draw(self, rng: np.random.Generator, pos: np.ndarray, start_ms: int) -> GuestVisits:
        """Every visit in the window of guests of the given points of sale (one per guest, all
        seen): whether each is new, its rate, its first visit in the window, then its returns."""
        n = len(pos)
        u = rng.random((5, n))
        new = u[0] < self.new_share[pos]
        level = np.where(
            new,
            np.minimum((u[1] * LEVELS).astype(np.int64), LEVELS - 1),
            _pick(self.level_cumulative, pos, u[1]),
        )
        rate = self.levels[level]
        days = self.rhythm_days[pos]
        mu = self.active_days
        # The first visit in the window: an arrival anywhere in it, or a return that beat the
        # end of the guest's active time.
        race = rate + 1.0 / mu
        first = np.where(new, u[2] * days, -np.log1p(u[2] * np.expm1(-race * days)) / race)
        first = np.minimum(first, days)
        # Still active then, for an exponential time; its returns are Poisson until the window
        # or its active time ends.
        until = np.minimum(first + mu * -np.log1p(-u[3]), days)
        returns = rng.poisson(rate * np.maximum(until - first, 0.0))
        # Guests seen before the window arrived an exponential time of mean activeDays before it
        # (the age of a guest still active is memoryless too).
        age_ms = np.ceil(mu * -np.log1p(-u[4]) * DAY_MS).astype(np.int64) + 1
        counts = 1 + returns
        guest = np.repeat(np.arange(n), counts)
        lead = np.concatenate([[0], np.cumsum(counts)[:-1]])
        at = np.repeat(first, counts)
        span = np.repeat(until - first, counts)
        later = np.ones(len(guest), dtype=bool)
        later[lead] = False
        at[later] += rng.random(int(later.sum())) * span[later]
        start = np.empty(len(guest), dtype=np.int64)
        session_pos = pos[guest]
        for p, clock in enumerate(self.clocks):
            mask = session_pos == p
            start[mask] = clock.at(at[mask])
        since = np.where(new, start[lead], start_ms - age_ms)
        return GuestVisits(new=new, since_ms=since, rate=rate, guest=guest, start=start)


def _pick(cumulative: np.ndarray, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per element, the index that u falls on in its row's cumulative weights."""
    out = np.empty(len(u), dtype=np.int64)
    for r in np.unique(row).tolist():
        mask = row == r
        out[mask] = np.searchsorted(cumulative[r], u[mask], side="right")
    return np.minimum(out, cumulative.shape[1] - 1)
