"""What a run will need, disk and memory, estimated from its plan before any work, and refused
(unless forced) when the machine cannot give it: a typo of an event count must not fill a disk.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from generator.dataset.plan import Plan
from generator.errors import CdpsimError
from generator.events.lines import ROW_DTYPE
from generator.model.world import BLOCK_GUESTS

__all__ = ["Needs", "check_room", "join_needs", "run_needs"]

# Bytes per event of the events file (measured on the bundled profiles: 580-700 as JSON lines,
# about 70 gzipped), rounded up.
LINE_BYTES = {False: 750, True: 100}
# A row filed in the parts, with its share of CONFIRM carts and exposed pairs.
PART_BYTES = ROW_DTYPE.itemsize + 24
# A guest's line in the parts and again in guests.jsonl.
GUEST_BYTES = 1_200
# Peak memory of simulating and filing one block, per event of the block (measured 450-920).
BLOCK_EVENT_BYTES = 1_000
# Room kept for everything else a process holds (interpreter, pools, one bucket being sorted).
BASE_MEMORY = 400 << 20


@dataclass(frozen=True)
class Needs:
    disk: int  # bytes written at the peak (the parts, and the dataset while they still exist)
    memory: int  # bytes of the busiest moment (every worker with a block)


def run_needs(plan: Plan, shards: int, workers: int) -> Needs:
    """One shard of a run; only a lone shard counts the dataset itself (a shard that joins
    checks again then, with `join_needs`)."""
    events = plan.expected if plan.events is None else min(plan.expected, plan.events)
    disk = (plan.expected * PART_BYTES + plan.guests * GUEST_BYTES) // shards
    if shards == 1:
        disk += events * LINE_BYTES[plan.gzip]
    per_guest = plan.expected / max(plan.guests, 1)
    block = per_guest * min(plan.guests, BLOCK_GUESTS) * BLOCK_EVENT_BYTES
    return Needs(disk=int(disk), memory=int(BASE_MEMORY + block * max(1, workers)))


def join_needs(plan: Plan, events: int) -> Needs:
    """The join: the events file and guests.jsonl, written beside the parts."""
    return Needs(disk=events * LINE_BYTES[plan.gzip] + plan.guests * GUEST_BYTES // 2, memory=0)


def check_room(needs: Needs, where: Path, *, force: bool) -> None:
    """Raise CdpsimError when `where` (or the nearest directory above it that exists) has less
    free disk, or the machine less available memory, than `needs`; `force` skips the check."""
    if force:
        return
    free = shutil.disk_usage(_existing(where)).free
    if needs.disk > free:
        raise CdpsimError(
            f"this run needs about {_size(needs.disk)} of disk and {where} has {_size(free)} "
            "free: ask for fewer events or days, or pass --force to try anyway",
            2,
        )
    available = _available_memory()
    if available is not None and needs.memory > available:
        raise CdpsimError(
            f"this run needs about {_size(needs.memory)} of memory (a block of "
            f"{BLOCK_GUESTS:,} guests over the whole window, per worker) and "
            f"{_size(available)} is available: shorten --days, use fewer --workers, or pass "
            "--force to try anyway",
            2,
        )


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _available_memory() -> int | None:
    """MemAvailable on Linux (what can be had without swapping), else None: not checked."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n: int) -> str:
    for unit, scale in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 1024:,.0f} KB"
