"""`cdpsim replay --via batch`: a dataset's Batch files uploaded one at a time, with a report."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
from rich.console import Console

from generator.errors import CdpsimError

__all__ = ["replay_batch"]

EXIT_FAILURES = 3


def replay_batch(
    dataset: Path,
    target: str,
    token: str | None,
    state: Path | None,
    resume: bool,
    allow_remote: bool,
    timeout: float,
    report: Path | None,
) -> None:
    from generator.batch.upload import upload_dataset

    if not token:
        raise CdpsimError("--via batch needs --api-token (or CDPSIM_API_TOKEN)", code=2)
    err = Console(stderr=True)
    result = upload_dataset(
        dataset,
        target,
        token,
        state=state,
        resume=resume,
        allow_remote=allow_remote,
        timeout=max(timeout, 30.0),
        on_file=lambda name, status: err.print(f"  {name}: {status}", highlight=False),
    )
    data = result.to_json()
    err.print(
        f"batch: {result.files} file(s), {result.records:,} records, {len(result.failed):,} failed",
        highlight=False,
    )
    for failure in result.failed[:10]:
        err.print(
            f"  failed {failure.get('ref')}: {failure.get('code')} {failure.get('message')}",
            highlight=False,
            markup=False,
        )
    line = orjson.dumps(data)
    if report is not None:
        report.write_bytes(line + b"\n")
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.flush()
    if result.failed:
        raise CdpsimError(
            f"{len(result.failed):,} records failed (see the log above)", code=EXIT_FAILURES
        )
