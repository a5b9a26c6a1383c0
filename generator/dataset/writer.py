"""Writing a dataset: blocks simulated into time buckets, buckets sorted, then joined in order.

Three phases, so memory stays flat however many events there are, and the bytes do not depend on
how the work is split:

A. parts: each shard (or worker) simulates its blocks and appends every line to the time bucket
   of its createdAt, under `DIR/.parts/shard-I-of-N/`; guests go to a guest file.
B. chunks: each bucket's lines from every shard are sorted by (createdAt, ref), cut to the
   requested event count, stripped of their sort prefix and written as one chunk.
C. join: chunks are concatenated into `events.jsonl[.gz]`; guests and the manifest follow.
"""

from __future__ import annotations

import gc
import gzip
import heapq
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import orjson

from generator.dataset.answer_key import AnswerTags
from generator.errors import CdpsimError
from generator.events.lines import ROW_DTYPE, block_rows, render_rows, sort_rows
from generator.events.render import BlockRenderer
from generator.events.types import EventType
from generator.model.block import simulate_block
from generator.model.world import BLOCK_GUESTS, World
from generator.profile import Profile

__all__ = ["GenerateRequest", "GenerateResult", "Progress", "generate", "merge_parts"]

_BUCKET_TARGET = 120_000  # lines a bucket should hold: bounds the memory of sorting one
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class GenerateRequest:
    profile: Profile
    out: Path
    seed: int | None = None
    events: int | None = None
    days: float | None = None
    guests: int | None = None
    gzip: bool = False
    shard: tuple[int, int] = (1, 1)  # (I, N), 1-based
    workers: int = 1


@dataclass
class GenerateResult:
    directory: Path
    complete: bool
    events: int = 0
    guests: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    """What every shard must agree on: the population and the bucket layout."""

    seed: int
    days: float
    guests: int
    bucket_ms: int
    buckets: int
    events: int | None
    gzip: bool

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _plan(req: GenerateRequest) -> _Plan:
    profile = req.profile
    seed = profile.seed if req.seed is None else req.seed
    days = req.days if req.days is not None else profile.days
    guests = req.guests
    pilot_world = World(profile, seed=seed, days=days, guests=guests or BLOCK_GUESTS * 4)
    pilot_blocks = min(2, pilot_world.blocks)
    pilot = sum(len(simulate_block(pilot_world, b)) for b in range(pilot_blocks))
    pilot_guests = sum(pilot_world.block_size(b) for b in range(pilot_blocks))
    per_guest = max(pilot / pilot_guests, 1e-3)
    if guests is None:
        if req.events is not None:
            # Enough guests to hold the requested events with room to spare (more, relatively,
            # for small runs, whose totals vary more); the run is then cut at exactly that many,
            # in time order.
            need = (req.events * 1.1 + 60 * math.sqrt(req.events)) / per_guest
            guests = max(1, math.ceil(need))
        else:
            guests = profile.population.guests
    expected = per_guest * guests
    window_ms = int(days * 86_400_000)
    buckets = max(1, min(4096, math.ceil(expected / _BUCKET_TARGET)))
    bucket_ms = max(1, -(-window_ms // buckets))
    return _Plan(seed, days, guests, bucket_ms, buckets, req.events, req.gzip)


def _parts_dir(out: Path) -> Path:
    return out / ".parts"


def _shard_dir(out: Path, shard: tuple[int, int]) -> Path:
    return _parts_dir(out) / f"shard-{shard[0]}-of-{shard[1]}"


def _blocks_of(world: World, shard: tuple[int, int], worker: int, workers: int) -> list[int]:
    i, n = shard
    mine = [b for b in range(world.blocks) if b % n == i - 1]
    return mine[worker::workers]


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The hot phases make millions of short-lived tuples and no cycles; the cyclic collector
    would only walk them over and over."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _phase_a(args: tuple[Profile, _Plan, Path, tuple[int, int], int, int]) -> list[int]:
    """Simulate this worker's blocks into bucket files; returns lines per bucket."""
    with _no_cyclic_gc():
        return _simulate_into_buckets(*args)


def _simulate_into_buckets(
    profile: Profile, plan: _Plan, out: Path, shard: tuple[int, int], worker: int, workers: int
) -> list[int]:
    renderer = _renderer(profile, plan)
    world = renderer.world
    base = _shard_dir(out, shard) / f"w{worker}"
    base.mkdir(parents=True, exist_ok=True)
    counts = [0] * plan.buckets
    extra_size = [0] * plan.buckets
    handles: dict[int, tuple[Any, Any]] = {}
    with open(base / "guests", "wb", buffering=1 << 20) as guests_out:
        try:
            for block in _blocks_of(world, shard, worker, workers):
                facts = simulate_block(world, block)
                rows, extras = block_rows(renderer, facts)
                bucket = np.minimum(
                    (rows["created"] - world.start_ms) // plan.bucket_ms, plan.buckets - 1
                )
                order = np.argsort(bucket, kind="stable")
                bounds = np.searchsorted(bucket[order], np.arange(plan.buckets + 1))
                for k in np.flatnonzero(np.diff(bounds)).tolist():
                    part = rows[order[bounds[k] : bounds[k + 1]]]
                    pair = handles.get(k)
                    if pair is None:
                        # Closed in the finally below: one pair per bucket stays open.
                        pair = handles[k] = (
                            open(base / f"b{k:05d}.rows", "ab", buffering=1 << 18),  # noqa: SIM115
                            open(base / f"b{k:05d}.extra", "ab"),  # noqa: SIM115
                        )
                    carts = np.flatnonzero(part["extra_len"])
                    for i in carts.tolist():
                        start = int(part["extra"][i])
                        piece = extras[start : start + int(part["extra_len"][i])]
                        part["extra"][i] = extra_size[k]
                        pair[1].write(piece)
                        extra_size[k] += len(piece)
                    pair[0].write(part.tobytes())
                    counts[k] += len(part)
                _write_guests(guests_out, renderer, facts)
                _report(worker, len(facts))
        finally:
            for body, extra in handles.values():
                body.close()
                extra.close()
    return counts


def _write_guests(out: Any, renderer: BlockRenderer, facts: Any) -> None:
    """Guest lines keyed for the join: index, first event key, first IDENTITY key, JSON."""
    n = len(facts.guest_ref)
    guest_of_event = facts.browser_guest[facts.session_browser[facts.session]]

    def keys_at(rows: np.ndarray) -> list[bytes]:
        return [
            _sort_key(c, h, lo)
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
    buf = []
    for index, record in renderer.guests(facts):
        g = index - facts.first_guest
        buf.append(
            b"%012d\t%s\t%s\t%s\n" % (index, first_key[g], identity_key[g], orjson.dumps(record))
        )
    out.write(b"".join(buf))


def _sort_key(created: int, hi: int, lo: int) -> bytes:
    """An event's (createdAt, ref) position as bytes that compare the same way."""
    return b"%015d%020d%020d" % (created, hi, lo)


# Progress from worker processes travels through a queue set up by the pool initialiser.
_progress_queue: Any = None


def _init_worker(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue


def _report(worker: int, events: int) -> None:
    if _progress_queue is not None:
        _progress_queue.put(events)


@dataclass
class _Chunk:
    index: int
    lines: int
    counts: np.ndarray  # events by type code
    tagged: np.ndarray  # rows of TRACKING and CHECKOUT events, for the answer key
    last_key: bytes
    payload: bytes


def _phase_b(args: tuple[Profile, _Plan, Path, int, int | None]) -> _Chunk:
    """Sort one bucket across every shard and worker by (createdAt, ref); cut; render."""
    with _no_cyclic_gc():
        return _sort_bucket(*args)


def _sort_bucket(profile: Profile, plan: _Plan, out: Path, k: int, keep: int | None) -> _Chunk:
    parts, extras = [], []
    base = 0
    for path in sorted(_parts_dir(out).glob(f"shard-*/w*/b{k:05d}.rows")):
        rows = np.fromfile(path, dtype=ROW_DTYPE)
        extra = path.with_suffix(".extra").read_bytes()
        rows["extra"] += base
        base += len(extra)
        parts.append(rows)
        extras.append(extra)
    rows = np.concatenate(parts) if parts else np.zeros(0, dtype=ROW_DTYPE)
    order = sort_rows(rows)
    if keep is not None:
        order = order[:keep]
    kept = rows[order]
    renderer = _renderer(profile, plan)
    payload = b"".join(render_rows(renderer, kept, b"".join(extras)))
    tagged = kept[(kept["type"] == EventType.TRACKING) | (kept["type"] == EventType.CHECKOUT)]
    last = kept[-1] if len(kept) else None
    if plan.gzip and payload:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    return _Chunk(
        index=k,
        lines=len(kept),
        counts=np.bincount(kept["type"], minlength=len(EventType)),
        tagged=tagged[["type", "guest", "flow", "variant", "goal", "created"]],
        last_key=(
            _sort_key(int(last["created"]), int(last["ref_hi"]), int(last["ref_lo"]))
            if last is not None
            else b""
        ),
        payload=payload,
    )


_renderers: dict[tuple[str, int, float, int], BlockRenderer] = {}


def _renderer(profile: Profile, plan: _Plan) -> BlockRenderer:
    """One renderer per process and plan (its pools and pieces are built once)."""
    key = (profile.sha256 or profile.name, plan.seed, plan.days, plan.guests)
    if key not in _renderers:
        _renderers.clear()
        _renderers[key] = BlockRenderer(
            World(profile, seed=plan.seed, days=plan.days, guests=plan.guests)
        )
    return _renderers[key]


def generate(req: GenerateRequest, progress: Progress | None = None) -> GenerateResult:
    """Run `cdpsim generate`: write this shard's parts, and the dataset once all parts exist."""
    out = req.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("events.jsonl", "events.jsonl.gz", "guests.jsonl", "manifest.json"):
        if (out / stale).exists():
            raise CdpsimError(
                f"{out} already holds a dataset ({stale}); choose an empty --out directory", 2
            )
    plan = _plan(req)
    shard_dir = _shard_dir(out, req.shard)
    if shard_dir.exists():
        shutil.rmtree(shard_dir)
    world = World(req.profile, seed=plan.seed, days=plan.days, guests=plan.guests)
    total_blocks = len(_blocks_of(world, req.shard, 0, 1))
    expected = max(1, total_blocks)
    workers = max(1, min(req.workers, expected))
    jobs = [(req.profile, plan, out, req.shard, w, workers) for w in range(workers)]
    if workers == 1:
        counts_per_worker = []
        for job in jobs:
            counts_per_worker.append(_run_a_with_progress(job, progress, expected))
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,)
        ) as pool:
            futures = [pool.submit(_phase_a, job) for job in jobs]
            finished = 0
            while finished < total_blocks:
                try:
                    queue.get(timeout=0.5)
                except Empty:
                    if any(f.done() and f.exception() for f in futures):
                        break  # a worker failed: its exception is raised below
                    continue
                finished += 1
                if progress:
                    progress("simulate", finished, expected)
            counts_per_worker = [f.result() for f in futures]
    bucket_counts = [sum(c[k] for c in counts_per_worker) for k in range(plan.buckets)]
    (shard_dir / "counts.json").write_bytes(
        orjson.dumps({"plan": plan.to_json(), "buckets": bucket_counts})
    )
    (shard_dir / "done").write_text("ok\n")
    n = req.shard[1]
    done = [_shard_dir(out, (i, n)) / "done" for i in range(1, n + 1)]
    if not all(d.exists() for d in done):
        missing = [str(i) for i, d in enumerate(done, 1) if not d.exists()]
        return GenerateResult(
            out,
            complete=False,
            warnings=[f"waiting for shard(s) {', '.join(missing)} of {n}; the last one merges"],
        )
    return merge_parts(req.profile, out, workers=req.workers, progress=progress)


def _run_a_with_progress(
    job: tuple[Profile, _Plan, Path, tuple[int, int], int, int],
    progress: Progress | None,
    expected: int,
) -> list[int]:
    class _Counter:
        done = 0

        def put(self, _events: int) -> None:
            self.done += 1
            if progress:
                progress("simulate", self.done, expected)

    global _progress_queue
    _progress_queue = _Counter()
    try:
        return _phase_a(job)
    finally:
        _progress_queue = None


def merge_parts(
    profile: Profile, out: Path, workers: int = 1, progress: Progress | None = None
) -> GenerateResult:
    """Phases B and C: from every shard's parts to the finished dataset in `out`."""
    parts = sorted(_parts_dir(out).glob("shard-*/counts.json"))
    if not parts:
        raise CdpsimError(f"{out}: no generated parts to merge", 2)
    metas = [orjson.loads(p.read_bytes()) for p in parts]
    plans = {orjson.dumps(m["plan"]) for m in metas}
    shard_ns = {p.parent.name.rsplit("-", 1)[1] for p in parts}
    if len(plans) != 1 or len(shard_ns) != 1 or len(parts) != int(next(iter(shard_ns))):
        raise CdpsimError(
            f"{out}: the parts come from different runs (profile, seed, size or shard count "
            "differ); remove .parts and generate again",
            2,
        )
    plan = _Plan(**metas[0]["plan"])
    bucket_counts = [sum(m["buckets"][k] for m in metas) for k in range(plan.buckets)]
    available = sum(bucket_counts)
    warnings = []
    keep: list[int | None] = [None] * plan.buckets
    active = list(range(plan.buckets))
    if plan.events is not None:
        if available < plan.events:
            warnings.append(
                f"the window holds only {available} events for {plan.guests} guests; "
                f"wrote all of them, not {plan.events} (raise --guests or --days)"
            )
        else:
            running = 0
            for k, c in enumerate(bucket_counts):
                if running + c >= plan.events:
                    keep[k] = plan.events - running
                    active = list(range(k + 1))
                    break
                running += c
    jobs = [(profile, plan, out, k, keep[k]) for k in active]
    name = "events.jsonl.gz" if plan.gzip else "events.jsonl"
    tmp = out / (name + ".partial")
    counts = np.zeros(len(EventType), dtype=np.int64)
    tagged = []
    cutoff = b""
    with open(tmp, "wb") as dst:
        if workers > 1 and len(jobs) > 1:
            pool = ProcessPoolExecutor(min(workers, len(jobs)))
            chunks: Iterable[_Chunk] = pool.map(_phase_b, jobs)
        else:
            pool = None
            chunks = map(_phase_b, jobs)
        try:
            for i, chunk in enumerate(chunks):
                dst.write(chunk.payload)
                counts += chunk.counts
                tagged.append(chunk.tagged)
                cutoff = max(cutoff, chunk.last_key)
                if progress:
                    progress("sort", i + 1, len(jobs))
        finally:
            if pool is not None:
                pool.shutdown()
    tags = AnswerTags.from_rows(np.concatenate(tagged)) if tagged else AnswerTags.empty()
    by_type = {t.name: int(counts[t]) for t in EventType}
    guests_written, customers = _join_guests(out, cutoff)
    from generator.dataset.manifest import build_manifest

    manifest = build_manifest(
        profile=profile,
        plan_seed=plan.seed,
        plan_days=plan.days,
        guests_simulated=plan.guests,
        counts=by_type,
        tags=tags,
        guests=guests_written,
        customers=customers,
        last_event_key=cutoff,
        requested_events=plan.events,
        events_file=name,
    )
    os.replace(tmp, out / name)
    (out / "manifest.json").write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    shutil.rmtree(_parts_dir(out))
    return GenerateResult(
        out,
        complete=True,
        events=int(counts.sum()),
        guests=guests_written,
        counts=by_type,
        warnings=warnings,
    )


def _guest_lines(out: Path) -> Iterator[bytes]:
    files = sorted(_parts_dir(out).glob("shard-*/w*/guests"))
    streams = [_lines_of(f) for f in files]
    yield from heapq.merge(*streams)


def _lines_of(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as fh:
        yield from fh


def _join_guests(out: Path, cutoff: bytes) -> tuple[int, int]:
    """guests.jsonl: the guests seen before the cut, CUSTOMER where they identified before it."""
    written = customers = 0
    with open(out / "guests.jsonl", "wb", buffering=1 << 20) as dst:
        for line in _guest_lines(out):
            _, first, identity, body = line.split(b"\t", 3)
            if not cutoff or first > cutoff:
                continue
            if identity <= cutoff:
                body = body.replace(b'"type":"VISITOR"', b'"type":"CUSTOMER"', 1)
                customers += 1
            dst.write(body)
            written += 1
    return written, customers
