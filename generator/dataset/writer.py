"""Writing a dataset: blocks simulated into time buckets, buckets sorted, then joined in order.

Three phases, so memory stays flat however many events there are, and the bytes do not depend on
how the work is split:

A. parts (`parts.py`): each shard (or worker) simulates its blocks and files every event's row
   under the time bucket of its createdAt, in `DIR/.parts/shard-I-of-N/`; beside them its
   guests, and its guests' exposed (guest, flow) pairs for the answer key.
B. chunks (`chunks.py`): each bucket's rows from every shard are sorted by (createdAt, ref), cut
   to the requested event count, and rendered as JSON lines in order into `events.jsonl[.gz]`
   (by this process, or by workers writing each chunk into its place).
C. finish (here): guests and the answer key are counted against the last event written, and the
   manifest follows.
"""

from __future__ import annotations

import contextlib
import heapq
import multiprocessing as mp
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import orjson

from generator.dataset.allocator import keep_freed_memory
from generator.dataset.answer_key import (
    ORDER_DTYPE,
    PAIR_DTYPE,
    SESSION_DTYPE,
    Tally,
    new_tally,
    tally,
)
from generator.dataset.budget import check_room, join_needs, run_needs
from generator.dataset.chunks import Chunk, write_chunk
from generator.dataset.chunks import init_worker as init_chunk_worker
from generator.dataset.manifest import build_manifest
from generator.dataset.parts import PartsJob, write_parts
from generator.dataset.parts import init_worker as init_parts_worker
from generator.dataset.placement import Placement
from generator.dataset.plan import (
    Plan,
    PlanCache,
    blocks_of,
    make_plan,
    parts_dir,
    shard_dir,
    sort_position,
)
from generator.dataset.provenance import (
    Provenance,
    check_parts,
    read_provenance,
    write_provenance,
)
from generator.errors import CdpsimError
from generator.events.lines import anonymous
from generator.events.types import EventType
from generator.lifecycle import die_with_parent
from generator.model.orders import by_status
from generator.profile import Profile

__all__ = [
    "DATASET_FILES",
    "FEWER_EXIT",
    "GenerateRequest",
    "GenerateResult",
    "Progress",
    "cut_buckets",
    "generate",
    "leftovers",
    "merge_parts",
]

Progress = Callable[[str, int, int], None]  # (phase, done, total)
DATASET_FILES = ("events.jsonl", "events.jsonl.gz", "guests.jsonl", "manifest.json")
PARTIAL_FILES = ("events.jsonl.partial", "events.jsonl.gz.partial")
# Exit code of a run whose window cannot hold the events asked for (unless allow_fewer).
FEWER_EXIT = 3


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
    # Tune this process for the run (glibc malloc thresholds, kept for good; the cyclic
    # collector off during the hot phases): the CLI's choice. A library caller's process is
    # left as it was; the package's own worker processes are always tuned.
    tune_process: bool = False
    # Go on even when the disk or memory looks too small for the run (`budget`).
    force: bool = False
    # Write what the window holds when it holds fewer events than asked (else: an error).
    allow_fewer: bool = False


@dataclass
class GenerateResult:
    directory: Path
    complete: bool
    events: int = 0
    guests: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def generate(req: GenerateRequest, progress: Progress | None = None) -> GenerateResult:
    """Run `cdpsim generate`: write this shard's parts, and the dataset once all parts exist.

    Refused before any work when the machine cannot hold the run (`budget`, unless
    `req.force`). A shard whose parts are already whole (a run stopped in its join) is not
    simulated again. On any failure or stop, what cannot be resumed goes: the events file
    being written, this shard's unfinished parts, and `out` if this run made it and it is
    empty; finished parts stay (`leftovers` says what is left and how to go on)."""
    if req.tune_process:
        keep_freed_memory()
    out = req.out
    for name in DATASET_FILES:
        if (out / name).exists():
            raise CdpsimError(
                f"{out} already holds a dataset ({name}); choose an empty --out directory", 2
            )
    # This run's pilot blocks and renderer: held here, handed to the workers, gone after.
    cache = PlanCache()
    plan = make_plan(
        req.profile,
        seed=req.seed,
        days=req.days,
        guests=req.guests,
        events=req.events,
        gzip=req.gzip,
        cache=cache,
    )
    record = Provenance.of_run(
        req.profile,
        seed=plan.seed,
        shard=req.shard,
        events=req.events,
        days=req.days,
        guests=req.guests,
        gzip=req.gzip,
    )
    # Before any work: other shards' parts already here must belong to this same run.
    check_parts(out, req.profile, this=record, complete=False)
    mine = shard_dir(out, req.shard)
    whole = (mine / "done").exists() and read_provenance(mine) == record.to_json()
    # Built once here: forked workers inherit it instead of each building its own.
    world = cache.renderer(req.profile, plan).world
    blocks = len(blocks_of(world, req.shard, 0, 1))
    workers = max(1, min(req.workers, blocks))
    if not whole:
        check_room(run_needs(plan, req.shard[1], workers), out, force=req.force)
    made_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _generate(req, plan, cache, record, workers, blocks, whole, progress)
    except BaseException:
        _tidy(out, req.shard, made_out)
        raise


def _generate(
    req: GenerateRequest,
    plan: Plan,
    cache: PlanCache,
    record: Provenance,
    workers: int,
    blocks: int,
    whole: bool,
    progress: Progress | None,
) -> GenerateResult:
    out, mine = req.out, shard_dir(req.out, req.shard)
    jobs: list[PartsJob] = [(req.profile, plan, out, req.shard, w, workers) for w in range(workers)]
    with contextlib.ExitStack() as stack:
        # One set of worker processes for both phases: forked once, and warm for the second.
        pool = (
            stack.enter_context(_Pool(workers, _partial(out, plan), plan.buckets, cache))
            if workers > 1
            else None
        )
        if not whole:
            if mine.exists():
                shutil.rmtree(mine)
            write_provenance(out, record)
            counts = _run_parts(
                jobs, blocks, plan.expected // req.shard[1], progress, pool, req.tune_process, cache
            )
            bucket_counts = [sum(c[k] for c in counts) for k in range(plan.buckets)]
            (mine / "counts.json").write_bytes(
                orjson.dumps({"plan": plan.to_json(), "buckets": bucket_counts})
            )
            (mine / "done").write_text("ok\n")
        n = req.shard[1]
        missing = [
            str(i) for i in range(1, n + 1) if not (shard_dir(out, (i, n)) / "done").exists()
        ]
        if missing:
            return GenerateResult(
                out,
                complete=False,
                warnings=[f"waiting for shard(s) {', '.join(missing)} of {n}; the last one merges"],
            )
        return merge_parts(
            req.profile,
            out,
            workers=req.workers,
            progress=progress,
            pool=pool,
            tune_process=req.tune_process,
            cache=cache,
            force=req.force,
            allow_fewer=req.allow_fewer,
        )


def _tidy(out: Path, shard: tuple[int, int], made_out: bool) -> None:
    """After a failure or a stop: remove what cannot be resumed (see `generate`)."""
    for name in PARTIAL_FILES:
        (out / name).unlink(missing_ok=True)
    mine = shard_dir(out, shard)
    if mine.is_dir() and not (mine / "done").exists():
        shutil.rmtree(mine, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: other shards' parts stay
        parts_dir(out).rmdir()
    if made_out:
        with contextlib.suppress(OSError):
            out.rmdir()


def leftovers(out: Path, profile: str) -> str:
    """What a stopped or failed run left in `out`, and how to go on from it, in a sentence."""
    parts = parts_dir(out)
    if not parts.is_dir():
        return "nothing to resume: the unfinished parts were removed"
    shards = {}
    for d in parts.glob("shard-*-of-*"):
        try:
            _, i, _, n = d.name.split("-")
            shards[(int(i), int(n))] = (d / "done").exists()
        except ValueError:
            continue
    counts = {n for _, n in shards}
    done = sorted(i for (i, _), ok in shards.items() if ok)
    if len(counts) == 1 and len(done) == (total := counts.pop()):
        return (
            f"kept {parts}: every shard is done; the same generate again (or `cdpsim merge "
            f"{out} --profile {profile}`) writes the dataset from them; `rm -r {parts}` to "
            "start over"
        )
    held = ", ".join(map(str, done)) or "none"
    of = f" of {total}" if len(counts) == 1 else ""
    return (
        f"kept {parts}: shard(s) {held}{of} done (unfinished ones were removed); run the "
        f"missing shards to finish, or `rm -r {parts}` to start over"
    )


def _partial(out: Path, plan: Plan) -> Path:
    """Where the events file is written until it is complete."""
    return out / ("events.jsonl.gz.partial" if plan.gzip else "events.jsonl.partial")


class _Pool:
    """Worker processes with what both phases hand them: the queue that reports finished blocks
    (phase A) and the shared sizes that place chunks in the output (phase B)."""

    def __init__(self, workers: int, partial: Path, chunks: int, cache: PlanCache) -> None:
        ctx = mp.get_context("fork")
        self.queue: Any = ctx.Queue()
        # Forked, not spawned: the workers get the cache (and its renderer) as it is, unpickled.
        self.executor = ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self.queue, Placement(ctx, partial, chunks), cache),
        )

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None:
            # Interrupted (Ctrl-C) or failed: the workers' tasks are abandoned, not awaited
            # (a phase A task is a worker's whole share of the run).
            for process in list(self.executor._processes.values()):
                process.terminate()
            self.executor.shutdown(cancel_futures=True)
            return
        self.executor.shutdown()


def _init_worker(queue: Any, placement: Placement, cache: PlanCache) -> None:
    # Ctrl-C is the parent's to handle (it ends the workers): interrupted mid-way through a
    # queue or lock of multiprocessing, a worker could hang its own exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler, inherited by the fork
    keep_freed_memory()  # this process is the package's own: tuned whoever started the run
    # A parent that ends without ending us (SIGKILL) must not leave us asleep on the queue.
    parent = mp.parent_process()
    die_with_parent(parent.pid if parent is not None else None)
    init_parts_worker(queue, cache)
    init_chunk_worker(placement, cache)


def _run_parts(
    jobs: list[PartsJob],
    blocks: int,
    expected: int,
    progress: Progress | None,
    pool: _Pool | None,
    tune_process: bool,
    cache: PlanCache,
) -> list[list[int]]:
    """Phase A, in this process or in one worker process per job."""
    finished = events = 0

    def one_more(n: int) -> None:
        nonlocal finished, events
        finished += 1
        events += n
        if progress:
            progress("simulate", events, max(expected, events))

    if pool is None:
        return [
            write_parts(job, on_block=one_more, tune_gc=tune_process, cache=cache) for job in jobs
        ]
    futures: list[Future[list[int]]] = [pool.executor.submit(write_parts, job) for job in jobs]
    while finished < blocks:
        try:
            n = pool.queue.get(timeout=0.5)
        except Empty:
            if any(f.done() and f.exception() for f in futures):
                break  # a worker failed: f.result() below raises its exception
            continue
        one_more(n)
    return [f.result() for f in futures]


def merge_parts(
    profile: Profile,
    out: Path,
    workers: int = 1,
    progress: Progress | None = None,
    pool: _Pool | None = None,
    tune_process: bool = False,
    cache: PlanCache | None = None,
    force: bool = False,
    allow_fewer: bool = False,
) -> GenerateResult:
    """Phases B and C: from every shard's parts to the finished dataset in `out`. The parts
    stay until the dataset is whole: a failed or stopped join loses only its events file."""
    try:
        return _merge_parts(
            profile,
            out,
            workers,
            progress,
            pool,
            tune_process,
            cache or PlanCache(),
            force,
            allow_fewer,
        )
    except BaseException:
        for name in PARTIAL_FILES:
            (out / name).unlink(missing_ok=True)
        raise


def _merge_parts(
    profile: Profile,
    out: Path,
    workers: int,
    progress: Progress | None,
    pool: _Pool | None,
    tune_process: bool,
    cache: PlanCache,
    force: bool,
    allow_fewer: bool,
) -> GenerateResult:
    if tune_process:
        keep_freed_memory()
    # Names what is wrong (another profile, seed, size or shard count; a missing shard).
    records = check_parts(out, profile, complete=True)
    metas = [orjson.loads((shard_dir(out, r.shard) / "counts.json").read_bytes()) for r in records]
    if len({orjson.dumps(m["plan"]) for m in metas}) != 1:
        # Same request, other plans: made by cdpsim versions that size a run differently.
        raise CdpsimError(
            f"{out}: the shards planned the run differently (made by cdpsim "
            f"{', '.join(sorted({r.generator for r in records}))}); remove .parts and generate "
            "again",
            2,
        )
    plan = Plan.from_json(metas[0]["plan"])
    bucket_counts = [sum(m["buckets"][k] for m in metas) for k in range(plan.buckets)]
    keep, warnings = cut_buckets(plan, bucket_counts, allow_fewer)
    jobs = [(profile, plan, out, k, keep[k]) for k in range(len(keep))]
    partial = _partial(out, plan)
    name = partial.name.removesuffix(".partial")
    counts = np.zeros(2 * len(EventType), dtype=np.int64)
    total = sum(bucket_counts[k] if n is None else n for k, n in enumerate(keep))
    check_room(join_needs(plan, total), out, force=force)
    cutoff = b""
    variants = [len(f.variants) for f in profile.flows]
    exposures = np.zeros((len(variants), max(variants, default=1)), dtype=np.int64)
    cache.renderer(profile, plan)  # built before any fork, as above
    with contextlib.ExitStack() as stack:
        dst = stack.enter_context(open(partial, "wb"))
        if pool is None and workers > 1 and len(jobs) > 1:
            pool = stack.enter_context(_Pool(min(workers, len(jobs)), partial, len(jobs), cache))
        # Workers write their chunks into place in the output; alone, this process renders
        # straight in.
        chunks: Iterable[Chunk] = (
            pool.executor.map(write_chunk, jobs)
            if pool is not None and len(jobs) > 1
            else (write_chunk(job, dst, tune_gc=tune_process, cache=cache) for job in jobs)
        )
        if progress:  # the write phase begins (a single chunk would report only its end)
            progress("write", 0, total)
        for chunk in chunks:
            counts += chunk.counts
            exposures += chunk.exposures
            cutoff = max(cutoff, chunk.last_key)
            if progress:
                progress("write", int(counts.sum()), total)
    by_type, failed = by_status(counts)
    guests_written, customers = _join_guests(out, cutoff)
    if progress:
        # Once more before the dataset is committed: a caller's callback may stop the run here.
        progress("write", int(counts.sum()), total)
    manifest = build_manifest(
        profile=profile,
        plan_seed=plan.seed,
        plan_days=plan.days,
        guests_simulated=plan.guests,
        counts=by_type,
        failed=failed,
        tally=_answer_key(out, profile, plan, exposures, cutoff),
        guests=guests_written,
        customers=customers,
        last_event_key=cutoff,
        requested_events=plan.events,
        events_file=name,
    )
    os.replace(partial, out / name)
    (out / "manifest.json").write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    shutil.rmtree(parts_dir(out))
    return GenerateResult(
        out,
        complete=True,
        events=int(counts.sum()),
        guests=guests_written,
        counts=by_type,
        warnings=warnings,
    )


def _answer_key(
    out: Path, profile: Profile, plan: Plan, exposures: np.ndarray, cutoff: bytes
) -> Tally:
    """The answer key of the written dataset: every shard's records, streamed a batch at a
    time and counted against the dataset's last event."""
    counts, periods, windows = new_tally(profile, plan.days)
    counts.exposures[...] = exposures
    if not cutoff:  # no event was written: nobody was exposed
        return tally(counts, [], [], [], (0, 0, 0), windows, periods)
    workers = sorted(parts_dir(out).glob("shard-*/w*"))
    return tally(
        counts,
        _batches([w / "pairs" for w in workers], PAIR_DTYPE),
        _batches([w / "orders" for w in workers], ORDER_DTYPE),
        _batches([w / "sessions" for w in workers], SESSION_DTYPE),
        sort_position(cutoff),
        windows,
        periods,
    )


def _batches(paths: list[Path], dtype: np.dtype, size: int = 1 << 16) -> Iterator[np.ndarray]:
    for path in paths:
        with open(path, "rb") as fh:
            while len(batch := np.fromfile(fh, dtype=dtype, count=size)):
                yield batch


def cut_buckets(
    plan: Plan, bucket_counts: list[int], allow_fewer: bool = False
) -> tuple[list[int | None], list[str]]:
    """How many events of each bucket to keep (None: all) so the dataset holds plan.events, and
    the warning when it holds fewer (allowed only with allow_fewer; else FEWER_EXIT)."""
    keep: list[int | None] = [None] * plan.buckets
    warnings = []
    if plan.events is not None and (available := sum(bucket_counts)) < plan.events:
        short = (
            f"the window holds only {available:,} events for {plan.guests:,} guests, not the "
            f"{plan.events:,} asked for"
        )
        if not allow_fewer:
            raise CdpsimError(
                f"{short}: raise --guests or --days, or pass --allow-fewer to write those",
                FEWER_EXIT,
            )
        warnings.append(f"{short}; wrote all {available:,} (--allow-fewer)")
    if plan.events is None:
        return keep, warnings
    running = 0
    for k, count in enumerate(bucket_counts):
        if running + count >= plan.events:
            keep[k] = plan.events - running
            return keep[: k + 1], warnings
        running += count
    return keep, warnings


def _guest_lines(out: Path) -> Iterator[bytes]:
    """Every shard's guest lines, merged by global guest index."""
    files = sorted(parts_dir(out).glob("shard-*/w*/guests"))
    yield from heapq.merge(*(_lines_of(f) for f in files))


def _lines_of(path: Path) -> Iterator[bytes]:
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
                customers += 1
            else:  # identified after the cut, or never
                body = anonymous(body)
            dst.write(body)
            written += 1
    return written, customers
