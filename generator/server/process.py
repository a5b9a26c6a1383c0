"""EmbeddedServer: `cdpsim serve` as a child process on a free loopback port, for load and tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from generator.endpoint import free_port
from generator.errors import CdpsimError
from generator.lifecycle import popen_child

__all__ = ["EmbeddedServer"]

_START_TIMEOUT_S = 30.0
_DRAIN_TIMEOUT_S = 60.0


class EmbeddedServer:
    """Starts, stops and kills one embedded server; `with EmbeddedServer() as s:` gives `s.url`.

    Without `db_path` the ledger lives in a temporary directory that `__exit__` removes; it is
    kept across `stop()`/`kill()` and `start()` so a restart finds what was stored.
    """

    def __init__(
        self,
        profile_path: Path | None = None,
        db_path: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.profile_path = profile_path
        self.host = host
        self.port = port
        self.extra_args = tuple(extra_args)
        self._own_dir: Path | None = None
        if db_path is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="cdpsim-server-"))
            db_path = self._own_dir / "ledger.sqlite3"
        self.db_path = Path(db_path)
        self.log_path = self.db_path.with_name(self.db_path.name + ".log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise CdpsimError("the embedded server has not been started", code=1)
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> str:
        """Launch the server and wait until it answers its health check; returns the base URL."""
        if self.running():
            return self.url
        fixed_port = self.port is not None
        for _ in range(1 if fixed_port else 5):
            if not fixed_port:
                self.port = free_port(self.host)
            self._launch()
            if self._wait_healthy():
                return self.url
            log = self._log_tail()
            if fixed_port or "cannot listen" not in log:
                raise CdpsimError(f"the embedded server did not start:\n{log}", code=1)
        raise CdpsimError("the embedded server found no free port", code=1)

    def _launch(self) -> None:
        args = [
            sys.executable,
            "-m",
            "generator.server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--db",
            str(self.db_path),
        ]
        if self.profile_path is not None:
            args += ["--profile", str(self.profile_path)]
        args += self.extra_args
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = popen_child(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/_cdpsim/healthz", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.kill()
        return False

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_cdpsim/stats", timeout=10) as r:
            result: dict[str, Any] = json.load(r)
            return result

    def stop(self, timeout: float = _DRAIN_TIMEOUT_S) -> int | None:
        """SIGTERM: the server stops accepting, answers what it holds, commits, exits."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise CdpsimError(
                    f"the embedded server did not drain within {timeout:g}s; killed it", code=1
                ) from None
        return self._proc.returncode

    def kill(self) -> int | None:
        """SIGKILL: no drain, as a crash would be (what the durability check does)."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        return self._proc.returncode

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.running():
                self.stop()
        finally:
            if self._own_dir is not None:
                shutil.rmtree(self._own_dir, ignore_errors=True)
