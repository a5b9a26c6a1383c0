"""What every shard and worker of one `generate` run agrees on: population, buckets, paths."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from generator.errors import CdpsimError
from generator.events.render import BlockRenderer
from generator.model.block import BlockFacts, simulate_block
from generator.model.world import BLOCK_GUESTS, World
from generator.profile import MAX_DAYS, MAX_GUESTS, Profile

__all__ = [
    "Plan",
    "PlanCache",
    "blocks_of",
    "make_plan",
    "parts_dir",
    "profile_digest",
    "shard_dir",
    "sort_key",
    "sort_position",
]

BUCKET_TARGET = 80_000  # events a time bucket should hold: bounds the memory of sorting one
# Sessions the pilot simulates at most (expected from the arrival model): a very busy population
# gets fewer pilot guests, so that planning itself stays small. Typical runs stay well under it
# and keep their pilot, whose blocks they reuse.
PILOT_SESSIONS = 60_000


@dataclass(frozen=True)
class Plan:
    seed: int
    days: float
    guests: int
    edges: tuple[int, ...]  # bucket k holds createdAt in [edges[k], edges[k+1])
    events: int | None  # cut the dataset at exactly this many events, in time order
    gzip: bool
    expected: int  # events the whole population should make (from the pilot; for progress)

    @property
    def buckets(self) -> int:
        return len(self.edges) - 1

    def bucket_of(self, created_ms: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.edges[1:-1]), created_ms, side="right")

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "edges": list(self.edges)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(**{**data, "edges": tuple(data["edges"])})


def make_plan(
    profile: Profile,
    *,
    seed: int | None,
    days: float | None,
    guests: int | None,
    events: int | None,
    gzip: bool,
    cache: PlanCache | None = None,
) -> Plan:
    """Size the population (for an event count) and cut the window, from a small pilot run.
    The pilot's blocks are kept in `cache`, if given, for the run to reuse."""
    seed = profile.seed if seed is None else seed
    days = profile.days if days is None else days
    if not 0 < days <= MAX_DAYS:
        raise CdpsimError(f"days {days:g}: must be above 0 and at most {MAX_DAYS:,}", 2)
    if guests is not None and not 1 <= guests <= MAX_GUESTS:
        raise CdpsimError(f"guests {guests:,}: must be between 1 and {MAX_GUESTS:,}", 2)
    pilot_guests = guests or BLOCK_GUESTS * 2
    # The pilot simulates its first two blocks at most, over the whole window: a guest's
    # sessions there are bounded however long it is (arrivals.py), but a very busy population
    # gets fewer pilot guests, scaled up.
    simulated = min(pilot_guests, 2 * BLOCK_GUESTS)
    pilot_world = World(profile, seed=seed, days=days, guests=pilot_guests)
    per_guest_sessions = pilot_world.arrivals.expected_sessions(pilot_world.pos_shares)
    if simulated * per_guest_sessions > PILOT_SESSIONS:
        pilot_guests = max(32, int(PILOT_SESSIONS / per_guest_sessions))
        pilot_world = World(profile, seed=seed, days=days, guests=pilot_guests)
    pilot_blocks = min(2, pilot_world.blocks)
    pilot = [simulate_block(pilot_world, b) for b in range(pilot_blocks)]
    if cache is not None:
        cache.keep_pilot(pilot_world, pilot)
    pilot_times = np.concatenate([f.created_ms for f in pilot])
    pilot_guests = sum(pilot_world.block_size(b) for b in range(pilot_blocks))
    per_guest = max(len(pilot_times) / pilot_guests, 1e-3)
    if guests is None:
        if events is not None:
            # Enough guests to hold the requested events with room to spare (more, relatively,
            # for small runs, whose totals vary more); the run is then cut at exactly that
            # many, in time order.
            guests = max(1, math.ceil((events * 1.1 + 60 * math.sqrt(events)) / per_guest))
            if guests > MAX_GUESTS:
                raise CdpsimError(
                    f"{events:,} events need about {guests:,} guests over {days:g} days, more "
                    f"than a profile may have ({MAX_GUESTS:,}): ask for fewer events, or more "
                    "days",
                    2,
                )
        else:
            guests = profile.population.guests
    buckets = max(1, min(4096, math.ceil(per_guest * guests / BUCKET_TARGET)))
    # Cut the window where the pilot's events fall in equal shares, so that every bucket holds
    # about as many events whatever the daily rhythm (equal widths would not).
    start_ms = pilot_world.start_ms
    end_ms = int(start_ms + days * 86_400_000) + 1
    inner = np.zeros(0, dtype=np.int64)
    if len(pilot_times) and buckets > 1:
        cuts = np.quantile(pilot_times, np.linspace(0, 1, buckets + 1)[1:-1])
        inner = np.unique(np.clip(cuts.astype(np.int64), start_ms + 1, end_ms - 1))
    edges = (start_ms, *inner.tolist(), end_ms)
    return Plan(seed, days, guests, edges, events, gzip, round(per_guest * guests))


def parts_dir(out: Path) -> Path:
    return out / ".parts"


def shard_dir(out: Path, shard: tuple[int, int]) -> Path:
    return parts_dir(out) / f"shard-{shard[0]}-of-{shard[1]}"


def blocks_of(world: World, shard: tuple[int, int], worker: int, workers: int) -> list[int]:
    """The blocks a shard (I of N, 1-based) gives to one of its worker processes."""
    i, n = shard
    mine = [b for b in range(world.blocks) if b % n == i - 1]
    return mine[worker::workers]


def sort_key(created: int, hi: int, lo: int) -> bytes:
    """An event's (createdAt, ref) position as bytes that compare the same way."""
    return b"%015d%020d%020d" % (created, hi, lo)


def sort_position(key: bytes) -> tuple[int, int, int]:
    """A `sort_key` back to (createdAt, ref hi, ref lo)."""
    return int(key[:15]), int(key[15:35]), int(key[35:55])


def profile_digest(profile: Profile) -> str:
    """The sha256 of a profile's validated settings: what decides the bytes, however the file
    is laid out or wherever it lives."""
    return hashlib.sha256(profile.model_dump_json().encode()).hexdigest()


class PlanCache:
    """What one process builds for a run and reuses while it works on it: the pilot's blocks
    (phase A need not simulate them again) and the renderer of the plan (its pools and pieces
    are built once). The caller of a run holds it and hands it to the worker processes it
    forks; nothing is kept at module level, so a library call leaves nothing behind."""

    def __init__(self) -> None:
        self._pilot: dict[tuple[int, int, float, int, int], BlockFacts] = {}
        self._renderer: BlockRenderer | None = None
        self._renderer_key: tuple[str, int, float, int] | None = None

    def keep_pilot(self, world: World, blocks: list[BlockFacts]) -> None:
        self._pilot = {_pilot_key(world, b): facts for b, facts in enumerate(blocks)}

    def simulate(self, world: World, block: int) -> BlockFacts:
        """A block's facts: the pilot's, if it simulated this very block, else simulated now."""
        facts = self._pilot.pop(_pilot_key(world, block), None)
        return facts if facts is not None else simulate_block(world, block)

    def renderer(self, profile: Profile, plan: Plan) -> BlockRenderer:
        """The plan's renderer, built on first use. Keyed by the profile's whole content: two
        profiles may share a name."""
        key = (profile_digest(profile), plan.seed, plan.days, plan.guests)
        if self._renderer is None or self._renderer_key != key:
            self._renderer = BlockRenderer(
                World(profile, seed=plan.seed, days=plan.days, guests=plan.guests)
            )
            self._renderer_key = key
        return self._renderer


def _pilot_key(world: World, block: int) -> tuple[int, int, float, int, int]:
    # A block's facts depend on the seed, the window and the block's own size, not the
    # population's: the pilot's full blocks are the run's full blocks.
    return (id(world.profile), world.seed, world.days, block, world.block_size(block))
