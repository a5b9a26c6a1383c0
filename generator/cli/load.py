"""The `cdpsim load` command: parses its flags and runs a `generator.load.LoadTest`."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console

from generator.errors import CdpsimError


def register(app: typer.Typer) -> None:
    @app.command("load")
    def _load(
        profile: Path = typer.Argument(
            ..., help="Profile YAML or bundled name (retail-ireland, smoke, multi-region)."
        ),
        host: str | None = typer.Option(
            None, "--host", help="Target base URL. Default: start the embedded server."
        ),
        scenario: str = typer.Option("journeys", "--scenario", help="journeys or ingest."),
        users: int | None = typer.Option(None, "--users", min=1, help="Peak users (profile's)."),
        spawn_rate: float | None = typer.Option(
            None, "--spawn-rate", min=0.01, help="Users started per second."
        ),
        run_time: str | None = typer.Option(None, "--run-time", help="e.g. 60s, 5m, 1h30m."),
        rate: float | None = typer.Option(
            None, "--rate", min=0.001, help="ingest: fixed arrival rate, events/s (open model)."
        ),
        processes: int = typer.Option(
            1, "--processes", min=1, help="Locust worker processes (a master and N workers)."
        ),
        report: Path | None = typer.Option(
            None, "--report", help="Write Locust's HTML and CSVs, and summary.json, here."
        ),
        web: bool = typer.Option(False, "--web", help="Open Locust's web UI instead of headless."),
        allow_remote: bool = typer.Option(
            False, "--allow-remote", help="Allow a --host that is not a loopback address."
        ),
        max_fail_ratio: float | None = typer.Option(
            None, "--max-fail-ratio", min=0, max=1, help="SLO: exit 1 above this failure ratio."
        ),
        max_p95_ms: float | None = typer.Option(
            None, "--max-p95-ms", min=0, help="SLO: exit 1 above this p95 latency."
        ),
        batch_size: int | None = typer.Option(
            None, "--batch-size", min=1, help="ingest: events per request (NDJSON when > 1)."
        ),
        seed: int | None = typer.Option(None, "--seed", min=0, help="Root seed (profile's)."),
        think_time_scale: float | None = typer.Option(
            None, "--think-time-scale", min=0, help="journeys: factor on the model's gaps."
        ),
        timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Request timeout, s."),
        remote_workers: int = typer.Option(
            0, "--remote-workers", min=0, help="Also await N workers from other machines."
        ),
        master_port: int = typer.Option(
            5557, "--master-port", min=1, max=65535, help="Master port for remote workers."
        ),
    ) -> None:
        """Drive a Stream API endpoint with Locust; summarise, reconcile, judge the SLOs.

        Exit 0 when it held, 1 on an SLO breach, 3 when events were lost or duplicated (or the
        embedded server could not account for them), 4 when the target cannot be reached, 130
        when interrupted (Ctrl-C or SIGTERM; the report and summary.json are still written).
        """
        # Imported here (Locust and the model are heavy) so other commands start fast.
        from generator.load.loadtest import LoadTest
        from generator.load.plan import SCENARIOS, parse_duration
        from generator.load.summary import Slo
        from generator.profile import resolve_profile

        if scenario not in SCENARIOS:
            raise CdpsimError(f"--scenario {scenario!r}: use one of {', '.join(SCENARIOS)}")
        try:
            seconds = parse_duration(run_time) if run_time is not None else None
        except ValueError as exc:
            raise CdpsimError(f"--run-time {exc}") from None
        test = LoadTest(
            profile=resolve_profile(profile),
            host=host,
            scenario=scenario,
            users=users,
            spawn_rate=spawn_rate,
            run_time=seconds,
            rate=rate,
            processes=processes,
            report=report,
            web=web,
            allow_remote=allow_remote,
            slo=Slo(max_fail_ratio=max_fail_ratio, max_p95_ms=max_p95_ms),
            batch_size=batch_size,
            seed=seed,
            think_time_scale=think_time_scale,
            timeout=timeout,
            remote_workers=remote_workers,
            master_port=master_port,
        )
        # SIGTERM (`kill PID`) takes Ctrl-C's path: Locust stops and reports, the embedded
        # server drains, the temp dirs go, and the summary says the run was interrupted.
        # Put back afterwards: `main()` may run inside another program (tests, a notebook).
        before = signal.signal(signal.SIGTERM, _as_interrupt)
        try:
            summary = test.run(Console())
        finally:
            signal.signal(signal.SIGTERM, before)
        if summary["verdict"] == "interrupted":
            raise typer.Exit(130)
        if summary["verdict"] == "unreconciled":
            raise CdpsimError(
                f"not reconciled: {summary['reconciliation_omitted']}", code=summary["exit_code"]
            )
        if summary["verdict"] == "events_lost":
            rec = summary["reconciliation"]
            raise CdpsimError(
                f"events lost or duplicated: {rec['lost']} acknowledged but not stored, "
                f"{rec['duplicated']} duplicated",
                code=summary["exit_code"],
            )
        if summary["exit_code"]:
            raise CdpsimError(
                "the run did not hold: " + "; ".join(summary["slo"]["breaches"]),
                code=summary["exit_code"],
            )


def _as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
