"""Flow assignment as CDP offers it: which guests a flow reaches, and which variant each one sees.

Three modes (`assignment:` per flow in the profile):

- unique: a hash of (flow ref, guest ref) places the guest inside or outside the traffic
  allocation and picks a variant by the weights; independent of every other flow.
- universal: the guest's one bucket, 1-120, a hash of the guest ref alone, the same in every
  universal flow; the flow takes a bucket range and each variant a range inside it, so two
  universal flows with disjoint ranges never share a guest and overlapping ones share exactly
  the guests of the common buckets.
- optimized: a multi-armed bandit (Thompson sampling, as Sitecore documents it): every guest is
  in; the weights start even and are recomputed at the end of every period from the running
  totals of impressions and conversions; every variant keeps at least 1%. A guest sees the
  variant the weights of their first exposure's period give them, and keeps it.

Everything is a pure function of the profile, the guest ref and (optimized) the time of the
guest's first exposure, so the generator, however its work is split, and the embedded server
agree. The bandit cannot count the run's own events (a block would depend on every block before
it), so it counts what the model expects: each period, `impressionsPerPeriod` impressions
split by that period's weights, converting at the configured rates. Its Monte Carlo draws are
seeded by the flow ref and the period, never by the run's seed.
"""

from __future__ import annotations

import uuid

import numpy as np

from generator.model.arrivals import sessions_a_day
from generator.profile import BUCKETS, Assignment, Flow, Profile

__all__ = [
    "MAX_PERIODS",
    "MINIMUM_WEIGHT",
    "MONTE_CARLO_DRAWS",
    "BanditSchedule",
    "BlockAssignment",
    "FlowTable",
    "assign",
    "assign_block",
    "assign_one",
    "guest_key",
    "universal_bucket",
]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TWO53 = float(2**53)
# Universal buckets hash the guest alone: one salt for every flow (the first 8 bytes of
# sha256("cdpsim universal bucket")).
UNIVERSAL_SALT = np.uint64(0x2F790ADA570AFED8)

MONTE_CARLO_DRAWS = 10_000  # Sitecore's N_MC: "a fixed parameter across all tests"
MINIMUM_WEIGHT = 0.01  # every variant keeps at least 1% of the traffic
# The schedule is computed this far (a few ms a period); later periods keep the last weights.
MAX_PERIODS = 1_000


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash (wraps modulo 2**64)."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x >> np.uint64(11)).astype(np.float64) / _TWO53


def guest_key(guest_ref: str) -> int:
    """The 64-bit key of a guest ref, as `generator.model.refs.uuid_u64` computes it in bulk."""
    return int.from_bytes(uuid.UUID(guest_ref).bytes[:8], "big")


def universal_bucket(guest_keys: np.ndarray) -> np.ndarray:
    """Each guest's bucket, 1..120: the same in every universal flow."""
    u = _unit(_mix(guest_keys.astype(np.uint64) ^ UNIVERSAL_SALT))
    return (1 + np.minimum((u * BUCKETS).astype(np.int64), BUCKETS - 1)).astype(np.int16)


def bandit_impressions(profile: Profile, flow: Flow) -> float:
    """Impressions the bandit counts in a period: as the profile says, or the sessions its
    population is expected to start in a period."""
    bandit = flow.bandit
    assert bandit is not None
    if bandit.impressions_per_period is not None:
        return float(bandit.impressions_per_period)
    return sessions_a_day(profile.population, profile.days) * bandit.period_hours / 24.0


class BanditSchedule:
    """One optimized flow's weights, period by period, computed as far as they are asked for."""

    def __init__(self, rates: tuple[float, ...], impressions: float, salt: int) -> None:
        self.rates = np.array(rates, dtype=np.float64)
        self.impressions = impressions
        self._salt = salt
        k = len(rates)
        self._weights: list[np.ndarray] = [np.full(k, 1.0 / k)]
        self._cumulative: list[np.ndarray] = [np.cumsum(self._weights[0])]
        # Running totals counted before each period: (impressions, conversions).
        self._totals: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(k), np.zeros(k))]

    def _extend(self, period: int) -> None:
        k = len(self.rates)
        while len(self._weights) <= period:
            p = len(self._weights)  # the period whose weights are computed now
            used = self._weights[-1]
            seen, converted = self._totals[-1]
            shown = self.impressions * used
            seen, converted = seen + shown, converted + shown * self.rates
            rng = np.random.default_rng(np.random.SeedSequence(self._salt, spawn_key=(p,)))
            draws = rng.beta(1.0 + converted, 1.0 + seen - converted, size=(MONTE_CARLO_DRAWS, k))
            wins = np.bincount(np.argmax(draws, axis=1), minlength=k)
            weights = MINIMUM_WEIGHT + (1.0 - MINIMUM_WEIGHT * k) * wins / MONTE_CARLO_DRAWS
            self._weights.append(weights)
            self._cumulative.append(np.cumsum(weights))
            self._totals.append((seen, converted))

    def weights(self, period: int) -> np.ndarray:
        period = min(max(period, 0), MAX_PERIODS - 1)
        self._extend(period)
        return self._weights[period]

    def cumulative(self, period: int) -> np.ndarray:
        period = min(max(period, 0), MAX_PERIODS - 1)
        self._extend(period)
        return self._cumulative[period]

    def counted(self, period: int) -> tuple[np.ndarray, np.ndarray]:
        """Expected impressions and conversions counted before `period` (what its weights are
        computed from)."""
        period = min(max(period, 0), MAX_PERIODS - 1)
        self._extend(period)
        return self._totals[period]


class FlowTable:
    """The profile's flows as arrays: salts, modes, allocation, weights, ranges, schedules."""

    def __init__(self, profile: Profile) -> None:
        self.flows: tuple[Flow, ...] = profile.flows
        self.start_ms = int(profile.start.timestamp() * 1000)
        self.salts = np.array(
            [int.from_bytes(profile.flow_ref(f).bytes[8:], "big") for f in profile.flows],
            dtype=np.uint64,
        )
        self.modes = tuple(f.assignment for f in profile.flows)
        self.allocation = np.array([f.traffic_allocation for f in profile.flows])
        self.cumulative = [np.cumsum(f.weights) for f in profile.flows]
        # Universal: the flow's bucket range, and each variant's.
        self.bucket_range = [f.buckets or (1, BUCKETS) for f in profile.flows]
        self.variant_ranges = [
            np.array([v.buckets or (0, -1) for v in f.variants], dtype=np.int16).reshape(-1, 2)
            for f in profile.flows
        ]
        self.period_ms = [
            f.bandit.period_hours * 3_600_000 if f.bandit is not None else 0 for f in profile.flows
        ]
        self.schedules: list[BanditSchedule | None] = [
            BanditSchedule(
                tuple(v.conversion_rate for v in f.variants),
                bandit_impressions(profile, f),
                int.from_bytes(profile.flow_ref(f).bytes, "big"),
            )
            if f.assignment is Assignment.OPTIMIZED
            else None
            for f in profile.flows
        ]

    def period_of(self, flow_index: int, ms: np.ndarray) -> np.ndarray:
        """The bandit period holding each time (clamped to 0 .. MAX_PERIODS - 1)."""
        period = (np.asarray(ms, dtype=np.int64) - self.start_ms) // self.period_ms[flow_index]
        return np.clip(period, 0, MAX_PERIODS - 1)

    def schedule(self, flow_index: int) -> BanditSchedule:
        schedule = self.schedules[flow_index]
        if schedule is None:
            raise ValueError(f"flow {self.flows[flow_index].friendly_id} is not optimized")
        return schedule


def assign(
    table: FlowTable, flow_index: int, guest_keys: np.ndarray, at_ms: np.ndarray | None = None
) -> np.ndarray:
    """Variant index per guest for one flow, or -1 where the flow's allocation leaves the guest
    out. `at_ms` is each guest's first exposure, which an optimized flow's variant depends on
    (without it, an optimized flow answers 0 for everyone: allocated, variant not yet known)."""
    mode = table.modes[flow_index]
    keys = guest_keys.astype(np.uint64)
    if mode is Assignment.UNIVERSAL:
        bucket = universal_bucket(keys)[:, None]
        ranges = table.variant_ranges[flow_index]
        inside = (bucket >= ranges[:, 0]) & (bucket <= ranges[:, 1])
        # The variants tile the flow's range: a guest is in one of them, or outside the flow.
        return np.where(inside.any(axis=1), np.argmax(inside, axis=1), -1).astype(np.int16)
    h1 = _mix(keys ^ table.salts[flow_index])
    h2 = _unit(_mix(h1))
    if mode is Assignment.OPTIMIZED:
        if at_ms is None:
            return np.zeros(len(keys), dtype=np.int16)
        schedule = table.schedule(flow_index)
        period = table.period_of(flow_index, at_ms)
        variant = np.empty(len(keys), dtype=np.int64)
        for p in np.unique(period).tolist():
            rows = period == p
            cumulative = schedule.cumulative(p)
            variant[rows] = np.searchsorted(cumulative, h2[rows] * cumulative[-1], side="right")
        return np.minimum(variant, len(table.flows[flow_index].variants) - 1).astype(np.int16)
    cumulative = table.cumulative[flow_index]
    variant = np.searchsorted(cumulative, h2 * cumulative[-1], side="right")
    variant = np.minimum(variant, len(cumulative) - 1)
    allocated = _unit(h1) < table.allocation[flow_index]
    return np.where(allocated, variant, -1).astype(np.int16)


def assign_one(table: FlowTable, flow_index: int, guest_ref: str, at_ms: int | None = None) -> int:
    """The variant index one guest sees (or -1), for the server's per-request path; `at_ms`:
    the guest's first exposure to an optimized flow."""
    keys = np.array([guest_key(guest_ref)], dtype=np.uint64)
    at = None if at_ms is None else np.array([at_ms], dtype=np.int64)
    return int(assign(table, flow_index, keys, at)[0])


class BlockAssignment:
    """A block's assignments. `[f]` is each guest's variant of flow f, -1 outside its
    allocation; for an optimized flow it says only who is allocated (everyone, as 0): its
    variant depends on when the guest is first exposed, which `at` and `sticky` take."""

    def __init__(self, table: FlowTable, guest_keys: np.ndarray) -> None:
        self.table = table
        self.keys = guest_keys.astype(np.uint64)
        self.static = tuple(assign(table, f, self.keys) for f in range(len(table.flows)))

    def __getitem__(self, flow_index: int) -> np.ndarray:
        return self.static[flow_index]

    def __len__(self) -> int:
        return len(self.static)

    def at(self, flow_index: int, guests: np.ndarray, first_ms: np.ndarray) -> np.ndarray:
        """The variant of each given guest (block index) first exposed at `first_ms`."""
        if self.table.modes[flow_index] is not Assignment.OPTIMIZED:
            return self.static[flow_index][guests]
        return assign(self.table, flow_index, self.keys[guests], first_ms)

    def sticky(self, flow_index: int, guests: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """Per exposure (a guest's block index and its time): the variant the guest keeps from
        their earliest exposure among these."""
        if self.table.modes[flow_index] is not Assignment.OPTIMIZED or len(guests) == 0:
            return self.static[flow_index][guests]
        unique, inverse = np.unique(guests, return_inverse=True)
        first = np.full(len(unique), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, inverse, ms)
        return self.at(flow_index, unique, first)[inverse]


def assign_block(table: FlowTable, guest_keys: np.ndarray) -> BlockAssignment:
    """Every flow's assignment of a block's guests."""
    return BlockAssignment(table, guest_keys)
