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


def _high_water_kb(pid: int) -> int:
    """The kernel's record of a process's peak RSS (VmHWM): exact, however rarely it is read."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run(cmd: list[str], cwd: Path | None = None) -> Run:
    """Run a command to completion: its wall time, and its peak RSS (the sum of each of its
    processes' own peaks: exact for one process, an upper bound for several). Reading the
    peaks every 0.2 s costs the measured command next to nothing."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    peaks: dict[int, int] = {}
    watched = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for p in (watched, *watched.children(recursive=True)):
                peaks[p.pid] = max(peaks.get(p.pid, 0), _high_water_kb(p.pid))
        except psutil.Error:
            pass
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    assert proc.stderr is not None
    err = proc.stderr.read()
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}")
    return Run(seconds, sum(peaks.values()) / 1024, proc.returncode)


def baseline_script() -> Path:
    """The hand-written Faker+json generator the project is measured against."""
    override = os.environ.get("CDPSIM_BASELINE")
    path = Path(override) if override else ROOT.parent / "shared/bench/naive_faker_baseline.py"
    if not path.exists():
        raise SystemExit(f"baseline not found at {path}; set CDPSIM_BASELINE to its path")
    return path
