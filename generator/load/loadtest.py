"""One `cdpsim load` run: target, Locust processes, counter_sets, reconciliation and summary."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from generator.endpoint import parse_endpoint
from generator.errors import CdpsimError
from generator.load.counters import merge_counters, read_counters
from generator.load.locust_processes import LocustProcesses, locustfile_for
from generator.load.plan import LoadPlan
from generator.load.shapes import ShapeSpec
from generator.load.summary import Slo, build_summary, reconcile, render_summary
from generator.profile import load_profile

__all__ = ["LoadTest"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadTest:
    """What the command line asked for; `run()` does it and returns the summary."""

    profile: Path
    host: str | None = None
    scenario: str = "journeys"
    users: int | None = None
    spawn_rate: float | None = None
    run_time: float | None = None
    rate: float | None = None
    processes: int = 1
    report: Path | None = None
    web: bool = False
    allow_remote: bool = False
    slo: Slo = field(default_factory=Slo)
    batch_size: int | None = None
    seed: int | None = None
    think_time_scale: float | None = None
    timeout: float = 10.0
    server_args: tuple[str, ...] = ()
    remote_workers: int = 0
    master_port: int = 5557

    def run(self, console: Console) -> dict[str, Any]:
        profile = load_profile(self.profile)
        if self.rate is not None and self.scenario != "ingest":
            raise CdpsimError("--rate applies to the ingest scenario (journeys have think times)")
        if self.processes < 1:
            raise CdpsimError("--processes must be at least 1")
        if self.remote_workers and not self.host:
            raise CdpsimError(
                "--remote-workers needs --host: the embedded server listens on loopback only, "
                "so workers on other machines could not reach it"
            )
        spec = ShapeSpec.from_profile(
            profile, users=self.users, spawn_rate=self.spawn_rate, run_time=self.run_time
        )
        locustfile = locustfile_for(self.scenario)
        target = None
        if self.host:
            target = parse_endpoint(
                self.host,
                option="--host",
                allow_remote=self.allow_remote,
                why_local="a load test sends a lot of traffic",
            )
            target.check_reachable(what="; no load was sent")
        if self.report is not None:
            self.report.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="cdpsim-load-"))
        try:
            return self._run(profile.seed, spec, locustfile, target, work, console)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _run(
        self,
        profile_seed: int,
        spec: ShapeSpec,
        locustfile: Path,
        target: Any,
        work: Path,
        console: Console,
    ) -> dict[str, Any]:
        from generator.server.process import EmbeddedServer

        plan = LoadPlan(
            # Workers on other machines get this path from the master: keep it relative there.
            profile=self.profile if self.remote_workers else self.profile.resolve(),
            seed=self.seed,
            users=self.users,
            spawn_rate=self.spawn_rate,
            run_time=self.run_time,
            rate=self.rate,
            batch_size=self.batch_size,
            think_time_scale=self.think_time_scale,
            timeout=self.timeout,
            run_dir=work,
            workers=self.processes + self.remote_workers,
        )
        server = None
        if target is None:
            server = EmbeddedServer(
                profile_path=self.profile.resolve(), extra_args=self.server_args
            )
            url = server.start()
            console.print(f"embedded server on {url}", highlight=False)
        else:
            url = target.url
        log_dir = self.report if self.report is not None else work
        processes = LocustProcesses(
            locustfile=locustfile,
            host=url,
            plan=plan,
            processes=self.processes,
            run_time=spec.run_time,
            report_dir=self.report,
            web=self.web,
            log_dir=log_dir,
            remote_workers=self.remote_workers,
            master_port=self.master_port,
        )
        try:
            hint = " (web UI on http://127.0.0.1:8089; Ctrl+C ends)" if self.web else ""
            console.print(
                f"{self.scenario}: {spec.shape} shape, {spec.peak_users} peak users, "
                f"{spec.run_time:g} s, {self.processes} process(es){hint}",
                highlight=False,
            )
            if self.remote_workers:
                console.print(
                    f"waiting for {self.remote_workers} remote worker(s); on each machine, in a "
                    f"checkout with the same profile path, run:\n  locust -f "
                    f"locustfiles/{self.scenario}.py --worker --master-host THIS_HOST "
                    f"--master-port {self.master_port}",
                    highlight=False,
                )
            outcome = processes.run()
            # Remote workers leave no files here; the master merged their periodic reports.
            counter_sets = read_counters(work, "master" if self.remote_workers else "worker")
            if not counter_sets and not outcome.interrupted:
                raise CdpsimError(
                    "Locust ended without reporting any traffic; its log says:\n"
                    + (outcome.log_tail() or "(nothing)"),
                    code=1,
                )
            counters = merge_counters(counter_sets)
            reconciliation = None
            reason = None
            if server is not None:
                try:
                    reconciliation = reconcile(counters, _ledger_stats(server))
                except (OSError, CdpsimError) as exc:  # it cannot tell: say so, do not guess
                    reason = f"the embedded server did not report its ledger ({exc})"
            else:
                reason = "foreign host: its ledger is not readable, so stored events are unknown"
        finally:
            if server is not None:
                server.__exit__(None, None, None)
        summary = build_summary(
            counters,
            run={
                "scenario": self.scenario,
                "target": url,
                "target_kind": "embedded" if server is not None else "given",
                "profile": str(self.profile),
                "seed": self.seed if self.seed is not None else profile_seed,
                "shape": spec.shape,
                "users": spec.peak_users,
                "processes": self.processes,
                "remote_workers": self.remote_workers,
                "run_time_s": spec.run_time,
                "rate": self.rate,
                "batch_size": self.batch_size,
                "counter_sets": len(counter_sets),
            },
            reconciliation=reconciliation,
            omitted_reason=reason,
            slo=self.slo,
            must_reconcile=server is not None,
            interrupted=outcome.interrupted,
        )
        if self.report is not None:
            (self.report / "summary.json").write_bytes(
                orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"
            )
        render_summary(summary, console)
        if self.report is not None:
            from generator.report.build import write_load_page

            write_load_page(self.report, console)
        return summary


def _ledger_stats(server: Any) -> dict[str, Any]:
    """The embedded server's stats; Ctrl+C in a terminal stops the server too, but its ledger
    outlives it, so a server that is gone or going is let finish and started again on it."""
    try:
        stats: dict[str, Any] = server.stats()
        return stats
    except OSError:
        server.stop()
        server.start()
        stats = server.stats()
        return stats
