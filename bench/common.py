"""Shared benchmark plumbing: timing a child process and reading its own peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CDPSIM = [PYTHON, "-m", "generator.cli"]


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_mb: float
    returncode: int


def run(cmd: list[str], cwd: Path | None = None) -> Run:
    """Run a command to completion: its wall time, and the peak of the summed RSS of it and its
    descendants (sampled every 20 ms; rusage's maxrss for children is not per child)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    peak = 0
    watched = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    assert proc.stderr is not None
    err = proc.stderr.read()
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}")
    return Run(seconds, peak / 2**20, proc.returncode)


def baseline_script() -> Path:
    """The hand-written Faker+json generator the project is measured against."""
    override = os.environ.get("CDPSIM_BASELINE")
    path = Path(override) if override else ROOT.parent / "shared/bench/naive_faker_baseline.py"
    if not path.exists():
        raise SystemExit(f"baseline not found at {path}; set CDPSIM_BASELINE to its path")
    return path
