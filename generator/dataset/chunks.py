"""Phase B of writing a dataset: one time bucket sorted by (createdAt, ref), cut, and rendered."""

from __future__ import annotations

import contextlib
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from generator.dataset.parts import no_cyclic_gc
from generator.dataset.plan import Plan, parts_dir, renderer_for, sort_key
from generator.dataset.spooler import Spooler
from generator.events.lines import ROW_DTYPE, render_rows, sort_rows
from generator.events.types import EventType
from generator.profile import Profile

__all__ = ["Chunk", "ChunkJob", "append_chunk", "write_chunk"]

RENDER_SLICE = 20_000  # rows rendered at a time: bounds the memory of the text
# What the answer key needs of TRACKING and CHECKOUT rows, kept for the whole run.
TAG_DTYPE = np.dtype(
    [
        ("created", "<i8"),
        ("goal", "<i8"),
        ("guest", "<i4"),
        ("type", "<i1"),
        ("flow", "<i1"),
        ("variant", "<i1"),
    ]
)

# (profile, plan, out, bucket, keep: how many of its events to keep, or all)
ChunkJob = tuple[Profile, Plan, Path, int, int | None]


@dataclass
class Chunk:
    index: int
    lines: int
    counts: np.ndarray  # events by type code
    tagged: np.ndarray  # rows of TRACKING and CHECKOUT events, for the answer key
    last_key: bytes
    path: Path | None  # the chunk file, or None when it went straight into the output


def write_chunk(
    job: ChunkJob, sink: IO[bytes] | None = None, spooler: Spooler | None = None
) -> Chunk:
    """Sort one bucket across every shard and worker; cut; render it into `sink` (the output,
    when this process writes it) or into a chunk file (a worker's, for the parent to append).
    The writes go through `spooler` (the caller drains it before it reads `sink`), or through
    one of the chunk's own, drained before returning."""
    with no_cyclic_gc():
        if spooler is not None:
            return _write_chunk(*job, sink=sink, spooler=spooler)
        with Spooler() as own:
            return _write_chunk(*job, sink=sink, spooler=own)


def _write_chunk(
    profile: Profile,
    plan: Plan,
    out: Path,
    k: int,
    keep: int | None,
    sink: IO[bytes] | None,
    spooler: Spooler,
) -> Chunk:
    parts, extras = [], []
    base = 0
    for rows_path in sorted(parts_dir(out).glob(f"shard-*/w*/b{k:05d}.rows")):
        rows = np.fromfile(rows_path, dtype=ROW_DTYPE)
        extra = rows_path.with_suffix(".extra").read_bytes()
        rows["extra"] += base
        base += len(extra)
        parts.append(rows)
        extras.append(extra)
    rows = np.concatenate(parts) if parts else np.zeros(0, dtype=ROW_DTYPE)
    del parts
    order = sort_rows(rows)
    if keep is not None:
        order = order[:keep]
    kept = rows[order]
    del rows, order
    renderer = renderer_for(profile, plan)
    blob = b"".join(extras)
    # Each chunk of a .gz file is a whole gzip member; members concatenate into one valid file.
    packer = zlib.compressobj(6, zlib.DEFLATED, 31) if plan.gzip else None
    path: Path | None = None
    with contextlib.ExitStack() as stack:
        if sink is None:
            path = parts_dir(out) / "chunks" / f"c{k:05d}"
            path.parent.mkdir(parents=True, exist_ok=True)
            sink = stack.enter_context(open(path, "wb"))
            # Drained before the file closes (exit order is the reverse of entry).
            stack.callback(spooler.drain)
        for lo in range(0, len(kept), RENDER_SLICE):
            text = b"".join(render_rows(renderer, kept[lo : lo + RENDER_SLICE], blob))
            # Compression, like the write, runs on the spooler's thread (zlib releases the GIL).
            spooler.submit(_put, sink, packer, text)
        if packer and len(kept):
            spooler.submit(_put_end, sink, packer)
    wanted = kept[(kept["type"] == EventType.TRACKING) | (kept["type"] == EventType.CHECKOUT)]
    # A compact copy: a multi-field view of the rows would keep their whole 176-byte width.
    tagged = np.empty(len(wanted), dtype=TAG_DTYPE)
    for name in TAG_DTYPE.names or ():
        tagged[name] = wanted[name]
    last = kept[-1] if len(kept) else None
    return Chunk(
        index=k,
        lines=len(kept),
        counts=np.bincount(kept["type"], minlength=len(EventType)),
        tagged=tagged,
        last_key=(
            sort_key(int(last["created"]), int(last["ref_hi"]), int(last["ref_lo"]))
            if last is not None
            else b""
        ),
        path=path,
    )


def _put(sink: IO[bytes], packer: Any, text: bytes) -> None:
    sink.write(packer.compress(text) if packer is not None else text)


def _put_end(sink: IO[bytes], packer: Any) -> None:
    sink.write(packer.flush())


def append_chunk(dst: IO[bytes], path: Path) -> None:
    """Append a chunk file to the open output (copied by the kernel where it can), then drop it."""
    dst.flush()
    start = os.lseek(dst.fileno(), 0, os.SEEK_CUR)
    with open(path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
                if n == 0:
                    break
                copied += n
        except OSError:  # no in-kernel copy here: start this chunk again the plain way
            copied = 0
            os.ftruncate(dst.fileno(), start)
            os.lseek(dst.fileno(), start, os.SEEK_SET)
        if copied < size:
            src.seek(copied)
            shutil.copyfileobj(src, dst, 1 << 22)
    os.unlink(path)
