"""Phase A of writing a dataset: simulate blocks and file each event's row under its time bucket."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from generator.dataset.answer_key import facts_records
from generator.dataset.plan import Plan, PlanCache, blocks_of, shard_dir, sort_key
from generator.events.lines import block_rows, guest_lines
from generator.events.render import BlockRenderer
from generator.events.types import EventType
from generator.model.block import BlockFacts
from generator.profile import Profile

__all__ = ["ANSWER_FILES", "PartsJob", "no_cyclic_gc", "write_parts"]

# Each worker's answer-key records, beside its guests (answer_key.py: PAIR, ORDER, SESSION).
ANSWER_FILES = ("pairs", "orders", "sessions")

# (profile, plan, out, shard, worker, workers)
PartsJob = tuple[Profile, Plan, Path, tuple[int, int], int, int]


@contextmanager
def no_cyclic_gc(enabled: bool = True) -> Iterator[None]:
    """The hot phases make millions of short-lived tuples and no cycles; the cyclic collector
    would only walk them over and over. Only where asked (`enabled`): the CLI's process or the
    package's workers, never a library caller's process."""
    if not enabled:
        yield
        return
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# In a worker process (the package's own): the queue that carries "one more block done" to the
# parent, and the parent's PlanCache as the fork copied it.
_done_queue: Any = None
_worker_cache: PlanCache | None = None


def init_worker(queue: Any, cache: PlanCache) -> None:
    global _done_queue, _worker_cache
    _done_queue = queue
    _worker_cache = cache


def write_parts(
    job: PartsJob,
    on_block: Callable[[int], None] | None = None,
    tune_gc: bool = True,
    cache: PlanCache | None = None,
) -> list[int]:
    """Simulate one worker's blocks into bucket files; returns events per bucket. `tune_gc`:
    the cyclic collector off meanwhile (a worker process, or the CLI's own). `cache`: the
    caller's (in a worker, the parent's, from `init_worker`)."""
    cache = cache or _worker_cache or PlanCache()
    with no_cyclic_gc(tune_gc):
        return _write_parts(*job, cache=cache, on_block=on_block)


def _write_parts(
    profile: Profile,
    plan: Plan,
    out: Path,
    shard: tuple[int, int],
    worker: int,
    workers: int,
    cache: PlanCache,
    on_block: Callable[[int], None] | None,
) -> list[int]:
    renderer = cache.renderer(profile, plan)
    world = renderer.world
    base = shard_dir(out, shard) / f"w{worker}"
    base.mkdir(parents=True, exist_ok=True)
    counts = [0] * plan.buckets
    extra_size = [0] * plan.buckets
    handles: dict[int, tuple[IO[bytes], IO[bytes]]] = {}

    def open_part(name: str, buffering: int) -> IO[bytes]:
        return files.enter_context(open(base / name, "wb", buffering=buffering))

    # Every file opened here is closed when the stack unwinds (one pair per bucket stays open).
    with contextlib.ExitStack() as files:
        guests_out = open_part("guests", 1 << 20)
        # The answer key's records (answer_key.py): small beside the events.
        answer_out = [open_part(name, 1 << 18) for name in ANSWER_FILES]
        for block in blocks_of(world, shard, worker, workers):
            facts = cache.simulate(world, block)
            rows, extras = block_rows(renderer, facts)
            bucket = plan.bucket_of(rows["created"])
            order = np.argsort(bucket, kind="stable")
            bounds = np.searchsorted(bucket[order], np.arange(plan.buckets + 1))
            for k in np.flatnonzero(np.diff(bounds)).tolist():
                part = rows[order[bounds[k] : bounds[k + 1]]]
                bucket_files = handles.get(k)
                if bucket_files is None:
                    # Modest buffers: a big run keeps many buckets open at once.
                    rows_file = open_part(f"b{k:05d}.rows", 1 << 16)
                    bucket_files = handles[k] = (rows_file, open_part(f"b{k:05d}.extra", 1 << 12))
                # CONFIRM carts move from the block's blob to the bucket's.
                carts = np.flatnonzero(part["extra_len"])
                if len(carts):
                    starts = part["extra"][carts].tolist()
                    sizes = part["extra_len"][carts].astype(np.int64)
                    spans = zip(starts, sizes.tolist(), strict=True)
                    bucket_files[1].write(b"".join([extras[a : a + n] for a, n in spans]))
                    part["extra"][carts] = extra_size[k] + np.cumsum(sizes) - sizes
                    extra_size[k] += int(sizes.sum())
                bucket_files[0].write(part.tobytes())
                counts[k] += len(part)
            guests_out.write(_guest_records(renderer, facts))
            for out_file, records in zip(answer_out, facts_records(world, facts), strict=True):
                out_file.write(records.tobytes())
            if on_block is not None:
                on_block(len(facts))
            elif _done_queue is not None:
                _done_queue.put(len(facts))
    return counts


def _guest_records(renderer: BlockRenderer, facts: BlockFacts) -> bytes:
    """Guest lines keyed for the join: index, first event key, first IDENTITY key, JSON."""
    n = len(facts.guest_halves)
    guest_of_event = facts.browser_guest[facts.session_browser[facts.session]]

    def keys_at(rows: np.ndarray) -> list[bytes]:
        return [
            sort_key(c, h, lo)
            for c, h, lo in zip(
                facts.created_ms[rows].tolist(),
                facts.ref_hi[rows].tolist(),
                facts.ref_lo[rows].tolist(),
                strict=True,
            )
        ]

    first_key = [b"~"] * n  # "~" sorts after every key: never seen
    identity_key = [b"~"] * n
    # facts are in (createdAt, ref) order, so a guest's first row is its first event.
    guests_seen, rows = np.unique(guest_of_event, return_index=True)
    for g, key in zip(guests_seen.tolist(), keys_at(rows), strict=True):
        first_key[g] = key
    ident = np.flatnonzero(facts.type == EventType.IDENTITY)
    guests_seen, rows = np.unique(guest_of_event[ident], return_index=True)
    for g, key in zip(guests_seen.tolist(), keys_at(ident[rows]), strict=True):
        identity_key[g] = key
    return b"".join(
        [
            b"%012d\t%s\t%s\t%s\n" % (facts.first_guest + g, first_key[g], identity_key[g], line)
            for g, line in enumerate(guest_lines(renderer, facts))
        ]
    )
