"""`cdpsim generate --format datalake`: the data lake export straight from the simulation.

Blocks of guests are grouped into parts, a fixed number from the dataset's size (never from how
the work is split); part k's files hold everything of its guests. Two passes:

1. the cut, only for `--events N`: every block's event times and refs, spooled by time bucket,
   give the exact N-th event, as the JSON-lines writer cuts. Every shard makes this pass over
   every block (simulating is a small share of the work), so shards that never meet agree.
2. the parts: each part's blocks are simulated again and their tables (`tables.py`) written
   into every snapshot folder, straight into place. A shard writes only its own parts.

Each part records its rows and its share of the manifest's figures in `<folder>/_parts/`; the
shard that finds every part recorded writes `manifest.json` from them (or `cdpsim merge`), a
sum of a few numbers per part, not a pass over the data.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import pickle
import shutil
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from generator.datalake import columns as C
from generator.datalake.folders import DAY_MS, day_of, midnight_ms, snapshot_dates
from generator.datalake.sink import ParquetSink, Sinks
from generator.datalake.tables import BlockLake, rows_batch
from generator.dataset.allocator import keep_freed_memory
from generator.dataset.answer_key import NEVER, Periods, Tally, facts_records, new_tally, tally
from generator.dataset.manifest import build_manifest
from generator.dataset.parts import no_cyclic_gc
from generator.dataset.plan import (
    Plan,
    PlanCache,
    make_plan,
    parts_dir,
    profile_digest,
    shard_dir,
    sort_key,
)
from generator.dataset.provenance import Provenance, check_parts, write_provenance
from generator.dataset.writer import (
    DATASET_FILES,
    GenerateRequest,
    GenerateResult,
    Progress,
    cut_buckets,
)
from generator.errors import CdpsimError
from generator.events.types import EventType
from generator.lifecycle import die_with_parent
from generator.model.block import BlockFacts, simulate_block
from generator.model.orders import by_status
from generator.model.world import World
from generator.profile import Profile

__all__ = ["EVENTS_PER_PART", "finish_datalake", "generate_datalake", "is_datalake_run"]

EVENTS_PER_PART = 500_000  # a part's share of the events: files of a useful size, work to share
LAKE = "datalake"
_KEY_DTYPE = np.dtype([("bucket", "<i4"), ("created", "<i8"), ("hi", "<u8"), ("lo", "<u8")])
_SPOOL_READ = 1 << 20  # records read back at a time


@dataclass(frozen=True)
class Layout:
    """What every shard and worker of one run agrees on beyond the plan."""

    parts: int
    blocks_per_part: int
    blocks: int
    folders: tuple[str, ...]
    cut: tuple[int, int, int] | None  # the last kept event; None: every event is kept
    snapshots: str

    def blocks_of(self, part: int) -> range:
        lo = part * self.blocks_per_part
        return range(lo, min(self.blocks, lo + self.blocks_per_part))

    def name(self, part: int) -> str:
        return f"part-{part:05d}-of-{self.parts:05d}"


def is_datalake_run(out: Path) -> bool:
    """Whether the shards' parts in `out` are for --format datalake."""
    for record in sorted(parts_dir(out).glob("shard-*/provenance.json")):
        with contextlib.suppress(OSError, orjson.JSONDecodeError, AttributeError):
            return str(orjson.loads(record.read_bytes()).get("output", "")).startswith(LAKE)
    return False


# The running call's cache (its renderer, built once): set for the call's length and inherited
# by the workers it forks; None between calls, so a library call leaves nothing behind.
_run_cache: PlanCache | None = None


def _cache() -> PlanCache:
    return _run_cache if _run_cache is not None else PlanCache()


def generate_datalake(
    req: GenerateRequest,
    snapshots: str = "last",
    progress: Progress | None = None,
    events_per_part: int = EVENTS_PER_PART,
) -> GenerateResult:
    """Write this shard's parts of the data lake export into OUT/datalake, and the manifest
    once every part is there."""
    global _run_cache
    _run_cache = PlanCache()
    try:
        return _generate_datalake(req, snapshots, progress, events_per_part)
    finally:
        _run_cache = None


def _generate_datalake(
    req: GenerateRequest, snapshots: str, progress: Progress | None, events_per_part: int
) -> GenerateResult:
    if req.tune_process:
        _tune()
    if snapshots not in ("last", "daily"):
        raise CdpsimError(f"--snapshots {snapshots!r}: use last or daily", 2)
    out = req.out
    profile = req.profile
    plan = make_plan(
        profile, seed=req.seed, days=req.days, guests=req.guests, events=req.events, gzip=False
    )
    world = _cache().renderer(profile, plan).world  # built before any fork: workers inherit it
    blocks = world.blocks
    events = plan.expected if plan.events is None else min(plan.events, plan.expected)
    per = math.ceil(blocks / max(1, min(blocks, math.ceil(events / events_per_part))))
    parts = math.ceil(blocks / per)
    i, n = req.shard
    own = [k for k in range(parts) if k % n == i - 1]
    if not own:
        return GenerateResult(
            out,
            complete=False,
            warnings=[f"shard {i} of {n} has no data lake part to write (this run has {parts})"],
        )
    out.mkdir(parents=True, exist_ok=True)
    for name in DATASET_FILES:
        if (out / name).exists():
            raise CdpsimError(
                f"{out} already holds a dataset ({name}); choose an empty --out directory", 2
            )
    record = Provenance.of_run(
        profile,
        seed=plan.seed,
        shard=req.shard,
        events=req.events,
        days=req.days,
        guests=req.guests,
        gzip=False,
        output=f"{LAKE}-{snapshots}",
    )
    check_parts(out, profile, this=record, complete=False)
    mine = shard_dir(out, req.shard)
    if mine.exists():
        shutil.rmtree(mine)
    write_provenance(out, record)
    own_blocks = {b for k in own for b in range(k * per, min(blocks, (k + 1) * per))}
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(_Pool(req.workers)) if req.workers > 1 else None
        cut, last, warnings = _find_cut(
            profile, plan, blocks, own_blocks, mine, pool, progress, req
        )
        layout = Layout(
            parts=parts,
            blocks_per_part=per,
            blocks=blocks,
            folders=tuple(
                snapshot_dates(
                    world.start_ms,
                    world.end_ms,
                    last[0] if last is not None else None,
                    plan.events is not None,
                    snapshots,
                )
            ),
            cut=cut,
            snapshots=snapshots,
        )
        jobs = [(profile, plan, out, req.shard, layout, k) for k in own]
        _run(jobs, pool, progress, plan.events or plan.expected, req.tune_process)
    (mine / "done").write_text("ok\n")
    missing = _missing_parts(out, layout)
    if missing:
        return GenerateResult(
            out,
            complete=False,
            warnings=[
                *warnings,
                f"{len(missing)} of {layout.parts} data lake parts still to write (other "
                f"shards); the last one writes the manifest",
            ],
        )
    result = finish_datalake(out, profile)
    result.warnings[:0] = warnings
    return result


# --- pass 1: the cut ---------------------------------------------------------------------------


def _find_cut(
    profile: Profile,
    plan: Plan,
    blocks: int,
    own_blocks: set[int],
    mine: Path,
    pool: _Pool | None,
    progress: Progress | None,
    req: GenerateRequest,
) -> tuple[tuple[int, int, int] | None, tuple[int, int, int] | None, list[str]]:
    """(the cut, the last event kept, warnings). Without --events every event is kept and
    the folders follow the window, so there is nothing to find."""
    if plan.events is None:
        return None, None, []
    spool = mine / "cut"
    spool.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(req.workers, blocks))
    all_blocks = list(range(blocks))
    facts = _facts_dir(mine)
    facts.mkdir(parents=True, exist_ok=True)
    jobs = [
        (profile, plan, spool / f"w{w}.keys", all_blocks[w::workers], own_blocks, facts)
        for w in range(workers)
    ]
    counts = np.zeros(plan.buckets, dtype=np.int64)
    tune = req.tune_process
    for c in _gather(jobs, _spool_keys, pool, progress, "simulate", plan.expected, tune):
        counts += np.asarray(c, dtype=np.int64)
    keep, warnings = cut_buckets(plan, counts.tolist(), req.allow_fewer)
    files = sorted(spool.glob("w*.keys"))
    if keep and keep[-1] is not None:
        k, n = len(keep) - 1, int(keep[-1])
        rows = _bucket_keys(files, k)
        order = np.lexsort((rows["lo"], rows["hi"], rows["created"]))
        at = rows[order[n - 1]]
        cut = (int(at["created"]), int(at["hi"]), int(at["lo"]))
        shutil.rmtree(spool)
        return cut, cut, warnings
    # Fewer events than asked for: all of them are kept; the folders end after the last.
    nonzero = np.flatnonzero(counts)
    last = None
    if len(nonzero):
        rows = _bucket_keys(files, int(nonzero[-1]))
        order = np.lexsort((rows["lo"], rows["hi"], rows["created"]))
        at = rows[order[-1]]
        last = (int(at["created"]), int(at["hi"]), int(at["lo"]))
    shutil.rmtree(spool)
    return None, last, warnings


def _spool_keys(job: tuple[Profile, Plan, Path, list[int], set[int], Path]) -> list[int]:
    """Simulate blocks; spool every event's (bucket, createdAt, ref); events per bucket. The
    facts of this shard's own blocks are kept for pass 2 (reading them back costs a fraction
    of simulating them again)."""
    profile, plan, path, blocks, own, facts_dir = job
    world = _cache().renderer(profile, plan).world
    counts = np.zeros(plan.buckets, dtype=np.int64)
    with open(path, "wb", buffering=1 << 20) as fh:
        for b in blocks:
            facts = simulate_block(world, b)
            keys = np.empty(len(facts), dtype=_KEY_DTYPE)
            keys["bucket"] = plan.bucket_of(facts.created_ms)
            keys["created"], keys["hi"], keys["lo"] = facts.created_ms, facts.ref_hi, facts.ref_lo
            fh.write(keys.tobytes())
            counts += np.bincount(keys["bucket"], minlength=plan.buckets)
            if b in own:
                part = facts_dir / f"b{b:06d}.partial"
                with open(part, "wb") as out:
                    pickle.dump(facts, out, protocol=5)
                os.replace(part, part.with_suffix(".facts"))
            _done(len(facts))
    return counts.tolist()


def _bucket_keys(files: list[Path], bucket: int) -> np.ndarray:
    found = []
    for path in files:
        with open(path, "rb") as fh:
            while len(chunk := np.fromfile(fh, dtype=_KEY_DTYPE, count=_SPOOL_READ)):
                found.append(chunk[chunk["bucket"] == bucket])
    return np.concatenate(found) if found else np.zeros(0, dtype=_KEY_DTYPE)


# --- pass 2: the parts -------------------------------------------------------------------------

PartJob = tuple[Profile, Plan, Path, tuple[int, int], Layout, int]


def _facts_dir(mine: Path) -> Path:
    return mine / "facts"


def _kept_facts(directory: Path, block: int) -> BlockFacts | None:
    """A block's facts kept by pass 1, read once and removed."""
    path = directory / f"b{block:06d}.facts"
    try:
        with open(path, "rb") as fh:
            facts: BlockFacts = pickle.load(fh)
    except FileNotFoundError:
        return None
    path.unlink()
    return facts


@dataclass
class _Versions:
    """A part's session rows, each valid from one folder (by index) until a newer one of the
    same session: a session changes between snapshots only while it is still going on."""

    batches: list[pa.RecordBatch]
    day: list[np.ndarray]  # the day (UTC, epoch days) each session started
    since: list[np.ndarray]  # the first folder (index) the row is valid in
    order: list[np.ndarray]  # the session's place in the part: (block, session index)

    def add(self, batch: pa.RecordBatch, day: np.ndarray, since: int, order: np.ndarray) -> None:
        self.batches.append(batch)
        self.day.append(day)
        self.since.append(np.full(len(day), since, dtype=np.int64))
        self.order.append(order)


def _write_part(job: PartJob) -> dict[str, Any]:
    """Everything of one part's guests, in every snapshot folder; returns its figures."""
    profile, plan, out, shard, layout, part = job
    renderer = _cache().renderer(profile, plan)
    world = renderer.world
    lake_dir = out / LAKE
    folders = layout.folders
    cutoffs = [midnight_ms(d) for d in folders]
    first_day = midnight_ms(folders[0]) // DAY_MS - 1  # the day folder 0 adds (daily)
    name = layout.name(part) + ".parquet"
    sinks = Sinks()
    versions = _Versions([], [], [], [])
    figures = _Figures.empty(profile, plan)
    daily = layout.snapshots == "daily"

    def home(day: int) -> int:
        """The first folder that holds a day's events (they are the same in every later one)."""
        return min(max(0, day - first_day), len(folders) - 1) if daily else len(folders) - 1

    kept = _facts_dir(shard_dir(out, shard))
    for b in layout.blocks_of(part):
        facts = _kept_facts(kept, b) or simulate_block(world, b)
        lake = BlockLake(renderer, facts, layout.cut)
        for day, lo, hi in lake.days(0, lake.n, DAY_MS):
            where = lake_dir / folders[home(day)] / "events" / f"meta_created_at_date={_date(day)}"
            sinks.add(where / name, "events", lake.events(lo, hi))
        before: tuple[np.ndarray, np.ndarray] | None = None
        for fi, (folder, cutoff) in enumerate(zip(folders, cutoffs, strict=True)):
            root = lake_dir / folder
            m = lake.prefix(cutoff)
            counts = lake.session_counts(m)
            closed = lake.session_status(m, cutoff, counts)
            changed = counts > 0
            if before is not None:
                changed &= (counts != before[0]) | (closed != before[1])
            before = counts, closed
            which = np.flatnonzero(changed)
            if len(which):
                batch = lake.sessions_as_of(m, cutoff, which, counts, closed)
                days = lake.created[lake.by_session[lake.session_first[which]]] // DAY_MS
                if daily:
                    versions.add(batch, days, fi, np.int64(b) * (1 << 32) + which)
                else:  # one folder: every session as it ends up, straight to its file
                    for day in np.unique(days).tolist():
                        where = root / "sessions" / f"meta_created_at_date={_date(day)}"
                        rows = pa.array(np.flatnonzero(days == day))
                        sinks.add(where / name, "sessions", batch.take(rows))
            sinks.add(root / "guests" / name, "guests", lake.guests_as_of(m, counts))
            orders, items = lake.order_rows(m)
            sinks.add(root / "orders" / name, "orders", rows_batch("orders", orders))
            sinks.add(root / "order_items" / name, "order_items", rows_batch("order_items", items))
        figures.add(world, lake, layout.cut)
        _done(lake.n)
    manifest = _flows_manifest(profile, plan)
    for folder in folders:
        root = lake_dir / folder
        for entity in ("guests", "orders", "order_items"):
            sinks.open(root / entity / name, entity)  # every part has every entity
        if part == 0:
            sinks.add(
                root / "experience_definitions" / name,
                "experience_definitions",
                rows_batch("experience_definitions", C.experience_rows(manifest, world.start_ms)),
            )
    rows = sinks.close()
    rows.update(_write_sessions(versions, lake_dir, folders, first_day, name, daily))
    # Each day's events file, written once into the first folder holding it, is the same file
    # in every later folder: linked there, not written again.
    for path, count in list(rows.items()):
        rel = path.relative_to(lake_dir)
        if rel.parts[1] != "events":
            continue
        for later in folders[folders.index(rel.parts[0]) + 1 :]:
            target = lake_dir / later / Path(*rel.parts[1:])
            _link(path, target)
            rows[target] = count
    record = figures.to_json()
    record["plan"] = plan.to_json()
    record["profile"] = profile_digest(profile)
    record["snapshots"] = layout.snapshots
    record["folders"] = list(folders)
    for folder in folders:
        counted: dict[str, int] = {}
        for path, count in rows.items():
            rel = path.relative_to(lake_dir)
            if rel.parts[0] == folder:
                counted[rel.parts[1]] = counted.get(rel.parts[1], 0) + count
        marker = lake_dir / folder / "_parts" / (layout.name(part) + ".json")
        marker.parent.mkdir(parents=True, exist_ok=True)
        body: dict[str, Any] = {
            "folder": folder,
            "part": part,
            "parts": layout.parts,
            "rows": counted,
        }
        if folder == folders[-1]:
            body["figures"] = record
        tmp = marker.with_name(marker.name + ".partial")
        tmp.write_bytes(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
        os.replace(tmp, marker)
    return record


def _write_sessions(
    versions: _Versions,
    lake_dir: Path,
    folders: tuple[str, ...],
    first_day: int,
    name: str,
    daily: bool,
) -> dict[Path, int]:
    """Each (day, folder) sessions file: every session of that day as the folder sees it.
    Where no session of the day changed since the folder before, the file is that folder's."""
    rows: dict[Path, int] = {}
    if not versions.batches:
        return rows
    table = pa.Table.from_batches(versions.batches, schema=C.SESSIONS)
    day = np.concatenate(versions.day)
    since = np.concatenate(versions.since)
    order = np.concatenate(versions.order)
    for d in np.unique(day).tolist():
        of_day = np.flatnonzero(day == d)
        start = min(max(0, d - first_day), len(folders) - 1) if daily else 0
        previous: Path | None = None
        for fi in range(start, len(folders)):
            path = lake_dir / folders[fi] / "sessions" / f"meta_created_at_date={_date(d)}" / name
            if previous is not None and not (since[of_day] == fi).any():
                _link(previous, path)
                rows[path] = rows[previous]
                previous = path
                continue
            valid = of_day[since[of_day] <= fi]
            # The latest version of each session: sorted by (session, since), last of each.
            valid = valid[np.lexsort((since[valid], order[valid]))]
            keys = order[valid]
            last = np.ones(len(valid), dtype=bool)
            last[:-1] = keys[1:] != keys[:-1]
            sink = ParquetSink(path, "sessions")
            sink.add(table.take(pa.array(valid[last])).combine_chunks().to_batches()[0])
            rows[path] = sink.close()
            previous = path
    return rows


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links: a copy holds the same bytes
        shutil.copyfile(source, target)


def _date(day: int) -> str:
    return day_of(day * DAY_MS).isoformat()


@dataclass
class _Figures:
    """A part's share of the manifest: counts, guests, and the answer key's tally."""

    counts: np.ndarray
    tally: Tally
    periods: Periods
    windows: list[int]
    seen: int
    customers: int
    last: tuple[int, int, int] | None

    @classmethod
    def empty(cls, profile: Profile, plan: Plan) -> _Figures:
        counts, periods, windows = new_tally(profile, plan.days)
        zeros = np.zeros(2 * len(EventType), dtype=np.int64)
        return cls(zeros, counts, periods, windows, 0, 0, None)

    def add(self, world: World, lake: BlockLake, cut: tuple[int, int, int] | None) -> None:
        f = lake.facts
        self.counts += lake.type_counts()
        shape = self.tally.exposures.shape
        self.tally.exposures += lake.exposures(shape[1])[: shape[0]]
        pairs, orders, sessions = facts_records(world, f)
        # Without a cut every event is kept: any real position sorts before this one.
        last = cut if cut is not None else (NEVER - 1, 0, 0)
        tally(self.tally, [pairs], [orders], [sessions], last, self.windows, self.periods)
        seen, customers = lake.seen_and_customers()
        self.seen += seen
        self.customers += customers
        key = lake.last_key()
        if key is not None and (self.last is None or key > self.last):
            self.last = key

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts.tolist(),
            "tally": self.tally.to_json(),
            "seen": self.seen,
            "customers": self.customers,
            "last": list(self.last) if self.last is not None else None,
        }


def _flows_manifest(profile: Profile, plan: Plan) -> dict[str, Any]:
    """The manifest's flows and client key (what experience_definitions is made from)."""
    return build_manifest(
        profile=profile,
        plan_seed=plan.seed,
        plan_days=plan.days,
        guests_simulated=plan.guests,
        counts={},
        tally=new_tally(profile, plan.days)[0],
        guests=0,
        customers=0,
        last_event_key=b"",
        requested_events=plan.events,
        events_file=LAKE,
    )


# --- the manifest ------------------------------------------------------------------------------


def _records(out: Path) -> tuple[list[dict[str, Any]], int]:
    """The figures every finished part recorded in the newest folder, and the part count."""
    lake_dir = out / LAKE
    folders = sorted(p for p in lake_dir.iterdir() if p.is_dir()) if lake_dir.is_dir() else []
    if not folders:
        return [], 0
    found = []
    parts = 0
    for marker in sorted((folders[-1] / "_parts").glob("part-*.json")):
        body = orjson.loads(marker.read_bytes())
        parts = int(body["parts"])
        if "figures" in body:
            found.append(body["figures"])
    return found, parts


def _missing_parts(out: Path, layout: Layout) -> list[int]:
    marker_dir = out / LAKE / layout.folders[-1] / "_parts"
    return [k for k in range(layout.parts) if not (marker_dir / f"{layout.name(k)}.json").exists()]


def finish_datalake(out: Path, profile: Profile) -> GenerateResult:
    """The manifest from every part's figures (what the last shard does, or `cdpsim merge`)."""
    records, parts = _records(out)
    if not records or len(records) != parts:
        raise CdpsimError(
            f"{out}: {len(records)} of {parts or '?'} data lake parts are written; run the "
            "other shards (`cdpsim generate ... --format datalake --shard I/N`) first",
            2,
        )
    if parts_dir(out).is_dir():
        # The shards that are there belong together; every part is written, so a shard that
        # had none (more shards than parts) is not waited for.
        check_parts(out, profile, complete=False)
    digests = {r["profile"] for r in records}
    if digests != {profile_digest(profile)}:
        raise CdpsimError(
            f"{out}: the data lake parts were made from another profile than {profile.name}", 2
        )
    if len({orjson.dumps(r["plan"]) for r in records}) != 1:
        raise CdpsimError(f"{out}: the data lake parts were made by different runs", 2)
    plan = Plan.from_json(records[0]["plan"])
    counts = np.sum([r["counts"] for r in records], axis=0)
    lasts = [tuple(r["last"]) for r in records if r["last"] is not None]
    last = max(lasts) if lasts else None
    answer = new_tally(profile, plan.days)[0]
    for r in records:
        answer.add(r["tally"])
    by_type, failed = by_status(counts)
    seen = sum(int(r["seen"]) for r in records)
    manifest = build_manifest(
        profile=profile,
        plan_seed=plan.seed,
        plan_days=plan.days,
        guests_simulated=plan.guests,
        counts=by_type,
        failed=failed,
        tally=answer,
        guests=seen,
        customers=sum(int(r["customers"]) for r in records),
        last_event_key=sort_key(*last) if last is not None else b"",
        requested_events=plan.events,
        events_file=LAKE,
    )
    manifest["datalake"] = {
        "snapshots": records[0]["snapshots"],
        "folders": records[0]["folders"],
        "parts": parts,
    }
    tmp = out / "manifest.json.partial"
    tmp.write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    os.replace(tmp, out / "manifest.json")
    shutil.rmtree(parts_dir(out), ignore_errors=True)
    return GenerateResult(out, complete=True, events=int(counts.sum()), guests=seen, counts=by_type)


# --- worker processes --------------------------------------------------------------------------

# In a worker process: the queue that carries "n more events done" to the parent.
_queue: Any = None


def _done(n: int) -> None:
    if _queue is not None:
        _queue.put(n)
    elif _local is not None:
        _local(n)


_local: Any = None  # in this process alone: the progress callback


class _Pool:
    def __init__(self, workers: int) -> None:
        ctx = mp.get_context("fork")
        self.queue: Any = ctx.Queue()
        self.executor = ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(self.queue,)
        )

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None:
            for process in list(self.executor._processes.values()):
                process.terminate()
            self.executor.shutdown(cancel_futures=True)
            return
        self.executor.shutdown()


def _tune() -> None:
    """For the CLI's process and the package's workers (never a library caller's): glibc keeps
    freed memory for reuse, and Arrow allocates from it too (its own mimalloc pool holds on to
    a part's worth of pages more: 60 MB of peak RSS at 1M events, for no speed)."""
    keep_freed_memory()
    pa.set_memory_pool(pa.system_memory_pool())


def _init_worker(queue: Any) -> None:
    global _queue
    # Ctrl-C is the parent's to handle (it ends the workers); SIGTERM ends a worker at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _tune()  # this process is the package's own: tuned whoever started the run
    parent = mp.parent_process()
    die_with_parent(parent.pid if parent is not None else None)
    _queue = queue


def _call_tuned(fn: Any, job: Any) -> Any:
    with no_cyclic_gc():
        return fn(job)


def _gather(
    jobs: list[Any],
    fn: Any,
    pool: _Pool | None,
    progress: Progress | None,
    phase: str,
    total: int,
    tune: bool,
) -> Iterator[Any]:
    """Each job's result, in job order; progress as events are done."""
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(phase, done, max(total, done))

    global _local
    if pool is None or len(jobs) < 2:
        _local = tick
        try:
            with no_cyclic_gc(tune):
                for job in jobs:
                    yield fn(job)
        finally:
            _local = None
        return
    futures: list[Future[Any]] = [pool.executor.submit(_call_tuned, fn, job) for job in jobs]
    while not all(f.done() for f in futures):
        try:
            tick(pool.queue.get(timeout=0.2))
        except Empty:
            if any(f.done() and f.exception() for f in futures):
                break
    with contextlib.suppress(Empty):
        while True:
            tick(pool.queue.get_nowait())
    for f in futures:
        yield f.result()


def _run(
    jobs: list[PartJob], pool: _Pool | None, progress: Progress | None, total: int, tune: bool
) -> list[dict[str, Any]]:
    return list(_gather(jobs, _write_part, pool, progress, "write", total, tune))
