"""The `cdpsim replay` command: parses flags, shows progress, prints the report."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import typer
from rich.console import Console

from generator.errors import CdpsimError

# Exit codes beyond 0 and 1 (bad input): the run ended but not everything arrived. A run that
# gave up on a target that kept failing exits 4 (GiveUp's code).
EXIT_FAILURES = 3
EXIT_INTERRUPTED = 130


def _check_speed(value: str) -> str:
    """Checked as the option is parsed, so the error names --speed."""
    _speed(value)
    return value


def _speed(value: str) -> float | None:
    if value.strip().lower() == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        raise typer.BadParameter(
            "a number (times faster than the dataset's own pace) or max"
        ) from None
    if speed <= 0:
        raise typer.BadParameter("must be above 0")
    return speed


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def _replay(
        dataset: Path = typer.Argument(..., help="A dataset directory made by `cdpsim generate`."),
        target: str = typer.Option(..., "--target", help="Stream API base URL."),
        rate: float = typer.Option(0.0, "--rate", min=0, help="Requests/s cap (0: no cap)."),
        speed: str = typer.Option(
            "max",
            "--speed",
            callback=_check_speed,
            help="Replay the dataset's gaps X times faster, or max.",
        ),
        concurrency: int = typer.Option(16, "--concurrency", min=1, help="Guests in flight."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint."),
        retry_failed: bool = typer.Option(
            False,
            "--retry-failed",
            help="With --resume: send the events that failed for good (kept in the checkpoint) "
            "again.",
        ),
        sessions: str = typer.Option(
            "close",
            "--sessions",
            help="How a dataset session ends at the target: close (a FORCE_CLOSE before the "
            "browser's next session, so the target keeps the dataset's sessions at any speed) "
            "or merge (nothing added; sessions closer than the timeout merge).",
        ),
        state: Path | None = typer.Option(
            None, "--state", help="Checkpoint file (default: DATASET.replay-state.json beside it)."
        ),
        allow_remote: bool = typer.Option(
            False, "--allow-remote", help="Allow a target that is not on this machine."
        ),
        timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds per request."),
        max_retries: int = typer.Option(
            10, "--max-retries", min=0, help="Retries per request before the run stops."
        ),
        report: Path | None = typer.Option(None, "--report", help="Also write the JSON here."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
        via: str = typer.Option(
            "stream", "--via", help="stream (Stream API events) or batch (Batch API files)."
        ),
        api_token: str | None = typer.Option(
            None, "--api-token", envvar="CDPSIM_API_TOKEN", help="--via batch: the API token."
        ),
        faults: str | None = typer.Option(
            None,
            "--faults",
            metavar="KIND=SHARE,...",
            help="Labelled dirty traffic (dup, dup-changed, late, out-of-order, malformed), "
            "e.g. dup=0.01,late=0.005; each fault is listed in STATE.faults.jsonl.",
        ),
    ) -> None:
        """Replay a dataset into a Stream API endpoint: paced, resumable, exactly once.

        With --via batch, upload its Batch files (guests and order history) instead.
        """
        if via == "batch":
            from generator.cli.batch_replay import replay_batch

            replay_batch(dataset, target, api_token, state, resume, allow_remote, timeout, report)
            return
        if via != "stream":
            raise CdpsimError(f"--via {via!r}: use stream or batch", code=2)
        # Imported here (gevent and the HTTP client are heavy) so other commands start fast.
        from generator.replay.report import build_report, render_report
        from generator.replay.retry import RetryPolicy
        from generator.replay.run import ReplayOptions, replay

        mix = None
        if faults is not None:
            from generator.fault_injection import FaultMix

            try:
                mix = FaultMix.parse(faults)
            except ValueError as exc:
                raise CdpsimError(f"--faults {exc}", code=2) from None
        options = ReplayOptions(
            faults=mix,
            dataset=dataset,
            target=target,
            state=state,
            rate=rate,
            speed=_speed(speed),
            concurrency=concurrency,
            resume=resume,
            retry_failed=retry_failed,
            sessions=sessions,
            allow_remote=allow_remote,
            timeout=timeout,
            retry=RetryPolicy(max_retries=max_retries),
        )
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        err = Console(stderr=True)
        bar = Progress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rps]:>7.0f} req/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
            auto_refresh=False,
            disable=not progress,
        )
        task = bar.add_task("replay", total=None, rps=0.0)
        started = False

        def on_progress(finished: int, total: int, rps: float) -> None:
            # Drawn from the first progress on: input errors come before any bar.
            nonlocal started
            if not started:
                bar.start()
                started = True
            bar.update(task, completed=finished, total=total, rps=rps)
            bar.refresh()

        try:
            result = replay(options, on_progress=on_progress)
        finally:
            if started:
                bar.stop()
        data = build_report(result)
        render_report(data, err)
        line = orjson.dumps(data)
        if report is not None:
            report.write_bytes(line + b"\n")
        sys.stdout.buffer.write(line + b"\n")
        sys.stdout.flush()
        if result.error:
            raise CdpsimError(result.error, code=result.error_code or 1)
        # Errors rather than typer.Exit: the command runs with standalone_mode off, where an
        # Exit's code would be swallowed.
        if result.status == "interrupted":
            raise CdpsimError(
                f"interrupted; the checkpoint is saved in {result.state}, continue with --resume",
                code=EXIT_INTERRUPTED,
            )
        if data["failedPermanently"]:
            raise CdpsimError(
                f"{data['failedPermanently']:,} events failed permanently (reasons above)",
                code=EXIT_FAILURES,
            )
