"""Shared benchmark plumbing: timing a child process and reading its own peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
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
    processes' own peaks: exact for one process, an upper bound for several).

    The end is taken by a thread blocked in wait(), so the time is exact, not rounded up to
    the next sample; the peaks are read every 0.2 s meanwhile, which costs the measured
    command next to nothing (VmHWM is a high-water mark, so sparse reads lose nothing)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    ended: list[float] = []
    exited = threading.Event()

    def wait_for_exit() -> None:
        proc.wait()
        ended.append(time.perf_counter())
        exited.set()

    threading.Thread(target=wait_for_exit, daemon=True).start()
    peaks: dict[int, int] = {}
    watched = psutil.Process(proc.pid)
    while True:
        try:
            for p in (watched, *watched.children(recursive=True)):
                peaks[p.pid] = max(peaks.get(p.pid, 0), _high_water_kb(p.pid))
        except psutil.Error:
            pass
        if exited.wait(0.2):
            break
    seconds = ended[0] - started
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
