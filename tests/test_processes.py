"""No child outlives its parent: SIGKILL, SIGTERM and SIGINT of `load` and `generate`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil
import pytest

from generator.profile import resolve_profile

SMOKE = resolve_profile(Path("smoke"))
CLI = [sys.executable, "-m", "generator.cli"]


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmdlines(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out.append(" ".join(p.cmdline()))
    return out


def _wait_for_tree(proc: subprocess.Popen[bytes], wanted: list[str], timeout: float) -> None:
    """Poll until every `wanted` fragment names a live descendant (the run is under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the command ended before its children started"
        lines = _cmdlines(_tree(proc.pid))
        if all(any(w in line for line in lines) for w in wanted):
            return
        time.sleep(0.1)
    raise AssertionError(f"children {wanted} did not appear; saw {_cmdlines(_tree(proc.pid))}")


def _left_alive(family: list[psutil.Process], timeout: float = 10.0) -> list[str]:
    """Descendants still running after `timeout` s (zombies awaiting their reaper count as gone)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in family:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return _cmdlines(alive)
        time.sleep(0.1)


def _reap(family: list[psutil.Process]) -> None:
    # Whatever failed, a test leaves nothing behind.
    for p in family:
        with contextlib.suppress(psutil.Error):
            p.kill()


def _load(tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return subprocess.Popen(
        [*CLI, "load", str(SMOKE), "--run-time", "30s", "--users", "4", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


# The embedded server, Locust, and the guest simulator Locust starts once users run.
_LOAD_CHILDREN = ["generator.server", "locust", "generator.load.guest_simulator"]


def _kill_parent_and_expect_no_survivor(
    proc: subprocess.Popen[bytes], family: list[psutil.Process]
) -> None:
    proc.kill()
    proc.wait(10)
    alive = _left_alive(family)
    assert not alive, f"left running after SIGKILL of their parent: {alive}"


@pytest.mark.timeout(120)
def test_sigkill_of_load_leaves_no_process_of_its_tree(tmp_path: Path) -> None:
    proc = _load(tmp_path)
    family: list[psutil.Process] = []
    try:
        _wait_for_tree(proc, _LOAD_CHILDREN, timeout=60)
        family = _tree(proc.pid)
        _kill_parent_and_expect_no_survivor(proc, family)
    finally:
        _reap(family + _tree(proc.pid))
        proc.kill()
        proc.communicate()


@pytest.mark.timeout(120)
def test_sigkill_of_generate_leaves_no_worker(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "generate",
        "retail-ireland",
        "--out",
        str(out),
        "--events",
        "3000000",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while len(_tree(proc.pid)) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.05)
        family = _tree(proc.pid)
        assert len(family) >= 2, "the workers did not start"
        _kill_parent_and_expect_no_survivor(proc, family)
    finally:
        _reap(family + _tree(proc.pid))
        proc.kill()


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("sig", "processes"),
    [
        (signal.SIGTERM, "1"),
        (signal.SIGINT, "1"),
        pytest.param(signal.SIGTERM, "2", marks=pytest.mark.slow),
        pytest.param(signal.SIGINT, "2", marks=pytest.mark.slow),
    ],
    ids=["SIGTERM", "SIGINT", "SIGTERM-2-processes", "SIGINT-2-processes"],
)
def test_signalled_load_says_interrupted_and_writes_its_report(
    tmp_path: Path, sig: signal.Signals, processes: str
) -> None:
    report = tmp_path / "report"
    proc = _load(tmp_path, "--report", str(report), "--processes", processes)
    family: list[psutil.Process] = []
    try:
        _wait_for_tree(proc, _LOAD_CHILDREN, timeout=60)
        # Locust is running users once it writes its stats history (header, then a row a second).
        history = report / "locust_stats_history.csv"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None
            if history.is_file() and len(history.read_bytes().splitlines()) >= 3:
                break
            time.sleep(0.1)
        family = _tree(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        alive = _left_alive(family)
        _reap(family)
    text = err.decode(errors="replace")
    assert proc.returncode == 130, text
    assert "interrupted" in text and "Traceback" not in text
    summary = orjson.loads((report / "summary.json").read_bytes())
    assert summary["interrupted"] is True and summary["verdict"] == "interrupted"
    # Locust writes its HTML and CSVs as it stops: they are there.
    assert (report / "locust.html").is_file()
    assert (report / "locust_stats.csv").is_file()
    assert not alive, f"left running: {alive}"
    assert not list((tmp_path / "tmp").iterdir()), "temp dirs were left behind"


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_signal_during_warm_up_ends_the_run_cleanly_with_its_reports(tmp_path: Path) -> None:
    # As soon as Locust runs, while its first block of guests is still being made (or its
    # locustfile still imported): no traceback, exit 130, the reports written.
    report = tmp_path / "report"
    proc = _load(tmp_path, "--report", str(report))
    family: list[psutil.Process] = []
    try:
        _wait_for_tree(proc, ["locust"], timeout=60)
        family = _tree(proc.pid)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        alive = _left_alive(family + _tree(proc.pid))
        _reap(family)
    text = err.decode(errors="replace")
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    summary = orjson.loads((report / "summary.json").read_bytes())
    assert summary["interrupted"] is True and summary["verdict"] == "interrupted"
    assert (report / "locust.html").is_file()
    assert "Traceback" not in (report / "locust.log").read_text()
    assert not alive, f"left running: {alive}"
