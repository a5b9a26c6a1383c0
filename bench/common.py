"""Shared benchmark plumbing: timing a child process and reading its own peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CDPSIM = [PYTHON, "-m", "generator.cli"]


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_mb: float
    returncode: int


def run(cmd: list[str], cwd: Path | None = None) -> Run:
    """Run a command to completion; its wall time and peak RSS (of it and its descendants)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        sys.stderr.write(err.decode(errors="replace"))
        raise SystemExit(f"benchmark command failed ({code}): {' '.join(cmd)}")
    return Run(seconds, usage.ru_maxrss / 1024, code)


def baseline_script() -> Path:
    """The hand-written Faker+json generator the project is measured against."""
    override = os.environ.get("CDPSIM_BASELINE")
    path = Path(override) if override else ROOT.parent / "shared/bench/naive_faker_baseline.py"
    if not path.exists():
        raise SystemExit(f"baseline not found at {path}; set CDPSIM_BASELINE to its path")
    return path
