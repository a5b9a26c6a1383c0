"""Phase B of writing a dataset: one time bucket sorted by (createdAt, ref), cut, and rendered."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from generator.dataset.parts import no_cyclic_gc
from generator.dataset.placement import Placement
from generator.dataset.plan import Plan, PlanCache, parts_dir, sort_key
from generator.errors import CdpsimError
from generator.events.lines import ROW_DTYPE, render_rows, sort_rows
from generator.events.render import BlockRenderer
from generator.events.types import EventType
from generator.model.orders import status_counts
from generator.profile import Profile

__all__ = ["Chunk", "ChunkJob", "init_worker", "write_chunk"]

# Rows rendered at a time. Small, so the same few megabytes of text and matrices are reused
# slice after slice: first touching fresh memory (on a VM above all) costs more than the extra
# calls (5,000 rather than 20,000: 0.97 s rather than 1.1 s, 112 MB rather than 145 MB peak).
RENDER_SLICE = 5_000

# (profile, plan, out, bucket, keep: how many of its events to keep, or all)
ChunkJob = tuple[Profile, Plan, Path, int, int | None]


@dataclass
class Chunk:
    counts: np.ndarray  # events by type code, then FAILED events by type code (statuses.py)
    exposures: np.ndarray  # TRACKING events by [flow, variant], for the answer key
    last_key: bytes


# In a worker process of a parallel run: where its chunks go, and the parent's PlanCache.
_placement: Placement | None = None
_worker_cache: PlanCache | None = None


def init_worker(placement: Placement, cache: PlanCache) -> None:
    global _placement, _worker_cache
    _placement = placement
    _worker_cache = cache


def write_chunk(
    job: ChunkJob,
    sink: IO[bytes] | None = None,
    tune_gc: bool = True,
    cache: PlanCache | None = None,
) -> Chunk:
    """Sort one bucket across every shard and worker; cut; render it. This process, alone,
    streams the text into `sink`; a worker process holds its chunk's text until the chunk's
    place in the output is known, then writes it there. `tune_gc`: as for `write_parts`."""
    cache = cache or _worker_cache or PlanCache()
    with no_cyclic_gc(tune_gc):
        if sink is not None:
            return _write_chunk(*job, cache=cache, sink=sink)
        if _placement is None:
            raise RuntimeError("write_chunk: no sink, and not in a worker of a parallel run")
        try:
            return _write_chunk(*job, cache=cache, sink=None)
        except BaseException:
            _placement.fail(job[3])
            raise


def _write_chunk(
    profile: Profile,
    plan: Plan,
    out: Path,
    k: int,
    keep: int | None,
    cache: PlanCache,
    sink: IO[bytes] | None,
) -> Chunk:
    rows, blob = _read_bucket(out, k)
    order = sort_rows(rows)
    if keep is not None:
        order = order[:keep]
    slices = _slices(cache.renderer(profile, plan), rows, order, blob)
    # For .gz output each chunk is one whole gzip member: members concatenate into one file.
    packer = zlib.compressobj(6, zlib.DEFLATED, 31) if plan.gzip and len(order) else None
    if sink is not None:
        for text in slices:
            sink.write(packer.compress(text) if packer is not None else text)
        if packer is not None:
            sink.write(packer.flush())
    else:
        assert _placement is not None
        texts = [packer.compress(t) for t in slices] if packer is not None else list(slices)
        if packer is not None:
            texts.append(packer.flush())
        _placement.write(texts, _placement.claim(k, sum(len(t) for t in texts)))
    variants = [len(f.variants) for f in profile.flows]
    exposures = np.zeros((len(variants), max(variants, default=1)), dtype=np.int64)
    types = rows["type"][order]
    tracking = order[types == EventType.TRACKING]
    np.add.at(exposures, (rows["flow"][tracking], rows["variant"][tracking]), 1)
    last = rows[order[-1]] if len(order) else None
    return Chunk(
        counts=status_counts(types, rows["failed"][order]),
        exposures=exposures,
        last_key=(
            sort_key(int(last["created"]), int(last["ref_hi"]), int(last["ref_lo"]))
            if last is not None
            else b""
        ),
    )


def _read_bucket(out: Path, k: int) -> tuple[np.ndarray, bytes]:
    """One bucket's rows from every shard and worker, read straight into one array (no
    per-file arrays to concatenate: a whole copy less at the chunk's peak), each CONFIRM's
    cart offset moved to its place in the joined side blob."""
    paths = sorted(parts_dir(out).glob(f"shard-*/w*/b{k:05d}.rows"))
    sizes = [path.stat().st_size // ROW_DTYPE.itemsize for path in paths]
    rows = np.empty(sum(sizes), dtype=ROW_DTYPE)
    extras = []
    lo = base = 0
    for path, n in zip(paths, sizes, strict=True):
        with open(path, "rb") as fh:
            if fh.readinto(rows[lo : lo + n].view(np.uint8).data) != n * ROW_DTYPE.itemsize:
                raise CdpsimError(f"{path}: shorter than when it was written", 2)
        extra = path.with_suffix(".extra").read_bytes()
        rows["extra"][lo : lo + n] += base
        base += len(extra)
        extras.append(extra)
        lo += n
    return rows, b"".join(extras)


def _slices(
    renderer: BlockRenderer, rows: np.ndarray, order: np.ndarray, blob: bytes
) -> Iterator[bytes]:
    """The chunk's lines as text, in `order`, a slice at a time: each slice gathered as it is
    rendered, so the sorted chunk never exists whole beside the read one."""
    for lo in range(0, len(order), RENDER_SLICE):
        yield b"".join(render_rows(renderer, rows[order[lo : lo + RENDER_SLICE]], blob))
