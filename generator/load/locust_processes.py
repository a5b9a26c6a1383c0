"""Locust as child processes: one headless (or web UI) process, or a master and N workers."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from generator.endpoint import free_port
from generator.errors import CdpsimError
from generator.lifecycle import popen_child
from generator.load.options import READY_WAIT_S, LoadOptions
from generator.redaction import redact

__all__ = ["LocustProcesses", "SwarmOutcome", "locustfile_for"]

# Package data: the scenarios ship inside the wheel, so an install outside a checkout has them.
_LOCUSTFILES = Path(str(files("generator") / "locustfiles"))
# After the run time: users finish the request in flight, workers report, processes exit.
_GRACE_S = 45.0


def locustfile_for(scenario: str) -> Path:
    path = _LOCUSTFILES / f"{scenario}.py"
    if not path.is_file():
        raise CdpsimError(
            f"the {scenario} locustfile is not at {path}; reinstall cdpsim "
            "(the scenarios ship in the package as generator/locustfiles/)",
            code=2,
        )
    return path


@dataclass(slots=True)
class SwarmOutcome:
    logs: list[Path] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C (or SIGTERM, which the CLI turns into one) ended the run

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for log in self.logs:
            try:
                text = log.read_text(errors="replace").splitlines()
            except OSError:
                continue
            interesting = [t for t in text if "rror" in t or "Traceback" in t] or text
            if interesting:
                out.append(f"{log.name}:")
                out.extend("  " + redact(t) for t in interesting[-lines:])
        return "\n".join(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocustProcesses:
    """How to run Locust for one plan; `run()` blocks until every process has exited."""

    locustfile: Path
    host: str
    plan: LoadOptions
    processes: int = 1
    run_time: float = 60.0
    report_dir: Path | None = None
    web: bool = False
    web_port: int = 8089
    # --web: the user count and spawn rate the UI's form starts with (the flags' or profile's).
    web_users: int = 1
    web_spawn_rate: float = 1.0
    log_dir: Path = Path(".")
    remote_workers: int = 0  # workers on other machines, started by hand, that the master awaits
    master_port: int = 5557

    def commands(self, master_port: int) -> list[list[str]]:
        # Through the lifecycle wrapper: Locust then ends when this process does, even on SIGKILL.
        base = [
            sys.executable,
            "-m",
            "generator.lifecycle",
            "locust",
            "-f",
            str(self.locustfile),
            "--host",
            self.host,
        ]
        base += self.plan.locust_args()
        base += ["--stop-timeout", f"{self.plan.timeout + 2:g}", "--exit-code-on-error", "0"]
        lead = [*base]
        if self.web:
            lead += ["--web-host", "127.0.0.1", "--web-port", str(self.web_port)]
            lead += ["--users", str(self.web_users), "--spawn-rate", f"{self.web_spawn_rate:g}"]
        else:
            # The shape ends the run; --run-time is only a backstop.
            backstop = self.run_time + 10 + (READY_WAIT_S if self.processes > 1 else 0)
            lead += ["--headless", "--only-summary", "--run-time", f"{backstop:.0f}s"]
        if self.report_dir is not None:
            lead += [
                "--csv",
                str(self.report_dir / "locust"),
                "--html",
                str(self.report_dir / "locust.html"),
            ]
        if self.processes <= 1 and not self.remote_workers:
            return [lead]
        # Remote workers must reach the master, so then it listens on every interface.
        bind = "0.0.0.0" if self.remote_workers else "127.0.0.1"
        port = self.master_port if self.remote_workers else master_port
        lead += ["--master", "--master-bind-host", bind, "--master-bind-port", str(port)]
        expected = self.processes + self.remote_workers
        wait = 600 if self.remote_workers else 60
        lead += ["--expect-workers", str(expected), "--expect-workers-max-wait", str(wait)]
        worker = [
            *base,
            "--worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            str(port),
        ]
        return [lead] + [worker] * self.processes

    def run(self) -> SwarmOutcome:
        outcome = SwarmOutcome()
        procs: list[subprocess.Popen[bytes]] = []
        for i, command in enumerate(self.commands(free_port())):
            log = self.log_dir / ("locust.log" if i == 0 else f"locust-worker-{i}.log")
            outcome.logs.append(log)
            with open(log, "wb") as out:
                procs.append(
                    popen_child(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        # SIGINT ignored until the locustfile installs its own handler: a
                        # Ctrl-C while Locust starts would otherwise end it with no report.
                        preexec_fn=_ignore_sigint,
                    )
                )
        try:
            waiting = 600.0 if self.remote_workers else 60.0  # for the workers to connect
            waiting += READY_WAIT_S  # for their first blocks of guests
            deadline = None if self.web else time.monotonic() + self.run_time + _GRACE_S + waiting
            _wait(procs[0], deadline)
            # Workers quit when the master tells them; give them time to report, then insist.
            for proc in procs[1:]:
                _wait(proc, time.monotonic() + _GRACE_S)
        except KeyboardInterrupt:
            # Ctrl+C: let every process stop and report; the caller reconciles what was sent.
            # Sent again each second to the processes still running: one that was still
            # starting (SIGINT ignored until its handler is in place) gets a later one.
            outcome.interrupted = True
            _stop_all(procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return outcome


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT each process until it ends (Locust stops, reports, exits); a second Ctrl-C
    meanwhile does not cut the reports short. Past the grace: SIGTERM, then SIGKILL."""
    deadline = time.monotonic() + _GRACE_S
    while time.monotonic() < deadline:
        try:
            running = [p for p in procs if p.poll() is None]
            if not running:
                return
            for proc in running:
                _signal(proc, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                running[0].wait(1.0)
        except KeyboardInterrupt:
            continue
    for proc in procs:
        _wait(proc, time.monotonic())


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _wait(proc: subprocess.Popen[bytes], deadline: float | None) -> None:
    """Wait for exit; past the deadline, SIGTERM (Locust's clean shutdown), then SIGKILL."""
    try:
        proc.wait(None if deadline is None else max(0.1, deadline - time.monotonic()))
        return
    except subprocess.TimeoutExpired:
        pass
    _signal(proc, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
