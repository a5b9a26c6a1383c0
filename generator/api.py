"""The public Python API: generate a dataset to a directory, or iterate over its events."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from generator.dataset.writer import GenerateRequest, GenerateResult
from generator.dataset.writer import generate as _write
from generator.errors import CdpsimError
from generator.profile import Profile, load_profile, resolve_profile

__all__ = ["generate", "iter_events"]


def _profile(profile: Profile | str | Path) -> Profile:
    if isinstance(profile, Profile):
        return profile
    return load_profile(resolve_profile(profile))


def generate(
    profile: Profile | str | Path,
    out: str | Path,
    *,
    events: int | None = None,
    days: float | None = None,
    guests: int | None = None,
    seed: int | None = None,
    format: str = "jsonl",
    workers: int = 1,
    snapshots: str = "last",
) -> GenerateResult:
    """Write a dataset into `out`, the same bytes as `cdpsim generate` with the same options.

    `profile` is a Profile, a YAML path or a bundled profile's name. `format="datalake"` writes
    the data lake export instead of JSON lines (`snapshots`: last or daily). Nothing process-wide is
    changed (the CLI alone tunes the allocator and the garbage collector of its own process).
    """
    if format not in ("jsonl", "jsonl.gz", "datalake"):
        raise CdpsimError(f"format {format!r}: use jsonl, jsonl.gz or datalake", 2)
    if events is not None and days is not None:
        raise CdpsimError("give events or days, not both", 2)
    request = GenerateRequest(
        profile=_profile(profile),
        out=Path(out),
        seed=seed,
        events=events,
        days=days,
        guests=guests,
        gzip=format == "jsonl.gz",
        workers=workers,
    )
    if format == "datalake":
        from generator.datalake.generate import generate_datalake

        return generate_datalake(request, snapshots)
    return _write(request)


def iter_events(
    profile: Profile | str | Path,
    *,
    seed: int | None = None,
    days: float | None = None,
    guests: int | None = None,
    events: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Exactly the stored-form events `cdpsim generate` writes, as dicts, in the same order.

    It generates the dataset into a temporary directory and streams its events file back one
    line at a time (memory stays flat); the directory is removed when the iterator is exhausted,
    closed or garbage-collected. Arguments are checked before the first event is asked for.
    """
    prof = _profile(profile)
    if events is not None and days is not None:
        raise CdpsimError("give events or days, not both", 2)
    return _stream(prof, seed=seed, days=days, guests=guests, events=events)


def _stream(
    profile: Profile,
    *,
    seed: int | None,
    days: float | None,
    guests: int | None,
    events: int | None,
) -> Iterator[dict[str, Any]]:
    tmp = tempfile.TemporaryDirectory(prefix="cdpsim-events-")
    try:
        out = Path(tmp.name)
        generate(profile, out, seed=seed, days=days, guests=guests, events=events)
        with open(out / "events.jsonl", "rb") as fh:
            for line in fh:
                yield orjson.loads(line)
    finally:
        tmp.cleanup()
