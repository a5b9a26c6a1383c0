"""`generate` bounded before it starts and tidy when it stops: the profile's bounds on the flags,
disk and memory estimated and refused, fewer events than asked is an error unless allowed, and
a stopped run removes what cannot be resumed and resumes what can (issue 13, "Generate")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PROFILES

from generator.cli import main
from generator.dataset import budget
from generator.dataset.plan import PILOT_SESSIONS, PlanCache, make_plan
from generator.dataset.writer import FEWER_EXIT, GenerateRequest, generate
from generator.errors import CdpsimError
from generator.model.world import World
from generator.profile import MAX_DAYS, MAX_GUESTS, load_profile

CLI = [sys.executable, "-m", "generator.cli", "generate"]
FILES = ("events.jsonl", "guests.jsonl", "manifest.json")


@pytest.mark.parametrize(
    ("flag", "value"), [("--days", str(MAX_DAYS + 1)), ("--guests", str(MAX_GUESTS + 1))]
)
def test_flags_have_the_profiles_bounds(
    tmp_path: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "smoke", "--out", str(tmp_path / "o"), flag, value]) == 2
    assert f"'{flag}'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_event_count_no_population_can_hold_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", "retail-ireland", "--out", str(tmp_path / "o"), "--events", str(10**12)]
    assert main(args) == 2
    assert "more than a profile may have (50,000,000)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_long_window_plans_with_a_bounded_pilot(monkeypatch: pytest.MonkeyPatch) -> None:
    """smoke over a year: the pilot used to be 4,096 guests over the whole window (21M
    events, 4.6 GB); a busy population gets fewer pilot guests, scaled up (here with a bound
    ten times smaller, to be quick: a few dozen guests)."""
    from generator.dataset import plan as dataset_plan

    monkeypatch.setattr(dataset_plan, "PILOT_SESSIONS", PILOT_SESSIONS // 10)
    cache = PlanCache()
    profile = load_profile(PROFILES / "smoke.yaml")
    plan = make_plan(
        profile, seed=None, days=365, guests=None, events=None, gzip=False, cache=cache
    )
    pilot_events = sum(len(f) for f in cache._pilot.values())
    assert 0 < pilot_events < PILOT_SESSIONS // 10 * 20
    # The estimate is the population's: 60 guests seen, each with the sessions the arrival
    # model gives it over a year (active some 40 days at 14 a week), a few events each.
    sessions = World(profile, days=365).arrivals.expected_sessions(np.ones(1))
    assert 60 < sessions < 14 * 52
    assert 60 * sessions * 3 < plan.expected < 60 * sessions * 30


def _request(out: Path, **kwargs: object) -> GenerateRequest:
    profile = load_profile(PROFILES / "smoke.yaml")
    return GenerateRequest(profile=profile, out=out, **kwargs)  # type: ignore[arg-type]


def test_a_run_the_disk_cannot_hold_is_refused_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Full:
        free = 10_000

    monkeypatch.setattr(budget.shutil, "disk_usage", lambda path: Full)
    out = tmp_path / "new" / "out"
    with pytest.raises(CdpsimError, match=r"needs about .* of disk and .* has 10 KB free"):
        generate(_request(out, events=2000))
    assert not (tmp_path / "new").exists()  # refused before anything was made
    assert generate(_request(out, events=2000, force=True)).complete


def test_a_run_the_memory_cannot_hold_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget, "_available_memory", lambda: 100 << 20)
    with pytest.raises(CdpsimError, match=r"of memory .* and 100.0 MB is available"):
        generate(_request(tmp_path / "o", events=2000))
    assert not (tmp_path / "o").exists()


def test_fewer_events_than_asked_exit_3_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "few"
    short = main(["generate", "smoke", "--out", str(out), "--events", "500", "--guests", "5"])
    err = capsys.readouterr().err
    assert short == FEWER_EXIT == 3, err
    assert "not the 500 asked for" in err and "--allow-fewer" in err
    assert not any((out / name).exists() for name in FILES)
    # Allowed: written from the parts the refused run kept.
    allowed = generate(_request(out, events=500, guests=5, allow_fewer=True))
    assert allowed.complete and 0 < allowed.events < 500
    assert allowed.warnings[0].startswith("the window holds only")
    assert (out / "manifest.json").exists() and not (out / ".parts").exists()


def _stop_at(out: Path, phase: str, *args: str) -> str:
    proc = subprocess.Popen(
        [*CLI, "smoke", "--out", str(out), *args],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CDPSIM_TEST_PAUSE_AT": phase},
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.strip() == f"cdpsim-test-pause {phase}", line + proc.stderr.read()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    return err


def test_a_stopped_join_keeps_its_parts_and_resumes_from_them(
    tmp_path: Path, smoke_dataset: Path
) -> None:
    out = tmp_path / "d"
    err = _stop_at(out, "join")
    assert f"kept {out}/.parts: every shard is done" in err and "cdpsim merge" in err
    assert sorted(p.name for p in out.iterdir()) == [".parts"]  # the .partial file went
    # The same run again: no simulation, the parts are joined.
    phases: set[str] = set()
    again = generate(_request(out), progress=lambda phase, done, total: phases.add(phase))
    assert again.complete and phases == {"write"}
    for name in ("events.jsonl", "guests.jsonl"):
        assert (out / name).read_bytes() == (smoke_dataset / name).read_bytes()
