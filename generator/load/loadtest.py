"""One `cdpsim load` run: target, Locust processes, counters, reconciliation, summary, reports."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from generator.endpoint import Endpoint, parse_endpoint
from generator.errors import CdpsimError
from generator.fault_injection import FAULTS_FILE
from generator.load.counters import Counters, merge_counters, read_counters, series_interval
from generator.load.locust_processes import LocustProcesses, locustfile_for
from generator.load.options import LoadOptions
from generator.load.shapes import ShapeSpec
from generator.load.summary import (
    build_summary,
    latency_series,
    reconcile,
    render_summary,
    verdict_html,
    write_series,
)
from generator.profile import load_profile

__all__ = ["LoadTest", "serve_stats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadTest(LoadOptions):
    """A run's options and how to run it; `run()` does it and returns the summary.

    `server_args` go to the embedded server (tests inject faults with them)."""

    server_args: tuple[str, ...] = ()

    def run(self, console: Console) -> dict[str, Any]:
        self.check()
        profile = load_profile(self.profile)
        spec = ShapeSpec.from_profile(
            profile,
            shape=self.shape,
            users=self.users,
            spawn_rate=self.spawn_rate,
            run_time=self.run_time,
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
        if self.web:
            _check_port_free(self.web_port)
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
        target: Endpoint | None,
        work: Path,
        console: Console,
    ) -> dict[str, Any]:
        from generator.server.process import EmbeddedServer

        plan = LoadOptions(
            **{
                f.name: getattr(self, f.name)
                for f in dataclasses.fields(LoadOptions)
                if f.name not in ("run_dir", "workers", "profile")
            },
            # Workers on other machines get this path from the master: keep it relative there.
            profile=self.profile if self.remote_workers else self.profile.resolve(),
            run_dir=work,
            workers=self.processes + self.remote_workers,
        )
        server = None
        before: dict[str, Any] | None = None
        url = target.url if target is not None else ""
        try:
            if target is None:
                server = EmbeddedServer(
                    profile_path=self.profile.resolve(), extra_args=self.server_args
                )
                url = server.start()
                console.print(f"embedded server on {url}", highlight=False)
            else:
                # A `cdpsim serve` answers its stats: then it is reconciled like our own,
                # from what it held before the run to what it holds after.
                before = serve_stats(url, self.timeout)
        except KeyboardInterrupt:
            # Stopped before any load was sent: still say so, in the summary too.
            if server is not None:
                server.__exit__(None, None, None)
            return self._finish(
                Counters(interval_s=series_interval(self.interval, spec.run_time)),
                [],
                spec,
                profile_seed,
                url,
                "embedded" if target is None else "given",
                None,
                "interrupted before any load was sent",
                must_reconcile=False,
                interrupted=True,
                work=work,
                console=console,
            )
        log_dir = self.report if self.report is not None else work
        processes = LocustProcesses(
            locustfile=locustfile,
            host=url,
            plan=plan,
            processes=self.processes,
            run_time=spec.run_time,
            report_dir=self.report,
            web=self.web,
            web_port=self.web_port,
            web_users=spec.peak_users,
            web_spawn_rate=spec.spawn_rate,
            log_dir=log_dir,
            remote_workers=self.remote_workers,
            master_port=self.master_port,
        )
        try:
            hint = f" (web UI on http://127.0.0.1:{self.web_port}; Ctrl+C ends)" if self.web else ""
            if self.arrivals is not None:
                load = f"{self.arrivals:g} guests/s arriving at the peak (open model)"
            else:
                load = f"{spec.peak_users} peak users"
            console.print(
                f"{self.scenario}: {spec.shape} shape, {load}, {spec.run_time:g} s, "
                f"{self.processes} process(es){hint}",
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
            if not counter_sets:
                counters.interval_s = series_interval(self.interval, spec.run_time)
            reconciliation = None
            reason = None
            if server is not None:
                try:
                    reconciliation = reconcile(counters, _ledger_stats(server))
                except (OSError, CdpsimError) as exc:  # it cannot tell: say so, do not guess
                    reason = f"the embedded server did not report its ledger ({exc})"
            elif before is not None:
                after = serve_stats(url, self.timeout)
                if after is None:
                    reason = "the cdpsim serve at --host stopped answering its stats"
                else:
                    reconciliation = reconcile(counters, after, before)
            else:
                reason = "foreign host: its ledger is not readable, so stored events are unknown"
        finally:
            if server is not None:
                server.__exit__(None, None, None)
        target_kind = "embedded" if server is not None else "given"
        if before is not None:
            target_kind = "cdpsim serve"
        return self._finish(
            counters,
            counter_sets,
            spec,
            profile_seed,
            url,
            target_kind,
            reconciliation,
            reason,
            must_reconcile=server is not None or before is not None,
            interrupted=outcome.interrupted,
            work=work,
            console=console,
        )

    def _finish(
        self,
        counters: Counters,
        counter_sets: list[Counters],
        spec: ShapeSpec,
        profile_seed: int,
        url: str,
        target_kind: str,
        reconciliation: dict[str, int] | None,
        reason: str | None,
        *,
        must_reconcile: bool,
        interrupted: bool,
        work: Path,
        console: Console,
    ) -> dict[str, Any]:
        summary = build_summary(
            counters,
            run={
                "scenario": self.scenario,
                "target": url,
                "target_kind": target_kind,
                "profile": str(self.profile),
                "seed": self.seed if self.seed is not None else profile_seed,
                "shape": spec.shape,
                "users": spec.peak_users if self.arrivals is None else None,
                "arrivals": self.arrivals,
                "processes": self.processes,
                "remote_workers": self.remote_workers,
                "run_time_s": spec.run_time,
                "rate": self.rate,
                "batch_size": self.batch_size,
                "faults": str(self.faults) if self.faults is not None else None,
                "counter_sets": len(counter_sets),
            },
            reconciliation=reconciliation,
            omitted_reason=reason,
            slo=self.slo,
            must_reconcile=must_reconcile,
            interrupted=interrupted,
        )
        if self.report is not None:
            self._write_reports(summary, counters, work)
        render_summary(summary, console)
        if self.report is not None:
            from generator.report.build import write_load_page

            write_load_page(self.report, console)
        return summary

    def _write_reports(self, summary: dict[str, Any], counters: Counters, work: Path) -> None:
        assert self.report is not None
        report = self.report
        (report / "summary.json").write_bytes(
            orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"
        )
        write_series(latency_series(counters), report)
        if self.faults is not None:
            with open(report / FAULTS_FILE, "wb") as out:
                for part in sorted(work.glob("faults-*.jsonl")):
                    out.write(part.read_bytes())
        # cdpsim's verdict and reconciliation at the top of Locust's own page too.
        page = report / "locust.html"
        if page.is_file():
            text = page.read_text(encoding="utf-8", errors="replace")
            block = verdict_html(summary)
            at = "<body>" if "<body>" in text else ""
            text = text.replace(at, at + block, 1) if at else block + text
            page.write_text(text, encoding="utf-8")


def serve_stats(url: str, timeout: float = 10.0) -> dict[str, Any] | None:
    """A `cdpsim serve`'s `/_cdpsim/stats`, or None when the target is not one (or silent)."""
    try:
        with urllib.request.urlopen(f"{url}/_cdpsim/stats", timeout=timeout) as answer:
            data = orjson.loads(answer.read())
    except (OSError, urllib.error.URLError, orjson.JSONDecodeError, ValueError):
        return None
    if isinstance(data, dict) and {"stored", "total", "duplicates"} <= set(data):
        return data
    return None


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise CdpsimError(
                f"--web-port {port}: the port is taken on 127.0.0.1 (another Locust?); "
                "pass another with --web-port",
                code=2,
            ) from None


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
