"""`cdpsim generate`: the dataset's shape, exact sizes, and the same bytes however it is split."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from conftest import make_dataset

from generator.dataset.reader import open_dataset
from generator.dataset.validate import validate_dataset
from generator.profile import load_profile

FILES = ("events.jsonl", "guests.jsonl", "manifest.json")


def _bytes(d: Path) -> dict[str, bytes]:
    return {name: (d / name).read_bytes() for name in FILES}


def test_dataset_shape(smoke_dataset: Path) -> None:
    assert sorted(p.name for p in smoke_dataset.iterdir()) == sorted(FILES)
    manifest = orjson.loads((smoke_dataset / "manifest.json").read_bytes())
    for key in ("profile", "seed", "generator", "start", "end", "clientKey", "pointsOfSale"):
        assert key in manifest
    assert manifest["pointsOfSale"]["smokeshop/ireland"]["sessionTimeoutMinutes"] == 20
    events = [e for _, e in open_dataset(smoke_dataset).events()]
    assert Counter(e["type"] for e in events) == {k: v for k, v in manifest["counts"].items() if v}
    keys = [(e["createdAt"], e["ref"]) for e in events]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for flow in manifest["flows"].values():
        for v in flow["variants"]:
            assert {"flowVariantRef", "name", "weight", "conversionRate"} <= v.keys()
            assert v["exposures"] >= v["exposedGuests"] >= v["convertedGuests"] >= 0


def test_all_event_types_appear(multi_dataset: Path) -> None:
    counts = orjson.loads((multi_dataset / "manifest.json").read_bytes())["counts"]
    assert all(counts[t] > 0 for t in counts), counts


def test_validate_accepts_generated(smoke_dataset: Path, multi_dataset: Path) -> None:
    for d in (smoke_dataset, multi_dataset):
        report = validate_dataset(d)
        assert report.ok, dict(report.problems)


def test_same_seed_same_bytes(tmp_path: Path, smoke_dataset: Path) -> None:
    again = make_dataset(tmp_path / "again", "smoke")
    assert _bytes(again) == _bytes(smoke_dataset)
    other = make_dataset(tmp_path / "other", "smoke", seed=8)
    assert _bytes(other)["events.jsonl"] != _bytes(smoke_dataset)["events.jsonl"]


def test_workers_and_shards_give_the_same_bytes(tmp_path: Path) -> None:
    kwargs = {"events": 30_000}
    one = make_dataset(tmp_path / "one", "multi-region", **kwargs)
    two = make_dataset(tmp_path / "two", "multi-region", workers=2, **kwargs)
    assert _bytes(two) == _bytes(one)
    profile = load_profile(Path(__file__).resolve().parents[1] / "profiles/multi-region.yaml")
    from generator.dataset.writer import GenerateRequest, generate

    sharded = tmp_path / "sharded"
    for i in (3, 1, 2):  # any order; the last to finish joins
        result = generate(GenerateRequest(profile=profile, out=sharded, shard=(i, 3), **kwargs))
        assert result.complete == (i == 2)
    assert _bytes(sharded) == _bytes(one)
    assert not (sharded / ".parts").exists()


def test_exact_event_count_and_days(tmp_path: Path) -> None:
    d = make_dataset(tmp_path / "n", "retail-ireland", events=12_345)
    manifest = orjson.loads((d / "manifest.json").read_bytes())
    assert manifest["events"] == 12_345
    assert sum(1 for _ in open_dataset(d).raw_events()) == 12_345
    assert validate_dataset(d).ok
    short = make_dataset(tmp_path / "d", "smoke", days=0.25)
    last = list(open_dataset(short).events())[-1][1]["createdAt"]
    assert last < "2025-03-03T06:00:00.000Z"


def test_gzip_holds_the_same_events(tmp_path: Path, smoke_dataset: Path) -> None:
    d = make_dataset(tmp_path / "gz", "smoke", gzip=True)
    assert (
        gzip.decompress((d / "events.jsonl.gz").read_bytes())
        == (smoke_dataset / "events.jsonl").read_bytes()
    )
    assert validate_dataset(d).ok


def test_reserved_email_domains_and_no_phones(smoke_dataset: Path) -> None:
    emails = 0
    for _, g in open_dataset(smoke_dataset).guests():
        if g["type"] == "CUSTOMER":  # an anonymous VISITOR has none
            assert g["email"].rsplit("@", 1)[1] in ("example.com", "example.net", "example.org")
            emails += 1
        assert "phone" not in g
    assert emails


def test_cli_generate_and_validate(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    env = {**os.environ, "COLUMNS": "120"}
    cmd = [sys.executable, "-m", "generator.cli"]
    gen = subprocess.run(
        [*cmd, "generate", "smoke", "--out", str(out), "--events", "500", "--format", "jsonl.gz"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert gen.returncode == 0, gen.stderr
    assert "wrote 500 events" in gen.stderr
    val = subprocess.run([*cmd, "validate", str(out)], capture_output=True, text=True, env=env)
    assert val.returncode == 0, val.stderr
    again = subprocess.run(
        [*cmd, "generate", "smoke", "--out", str(out)], capture_output=True, text=True, env=env
    )
    assert again.returncode == 2 and "already holds a dataset" in again.stderr
    bad = subprocess.run(
        [*cmd, "generate", "smoke", "--out", str(tmp_path / "x"), "--shard", "5/2"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "--shard" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("flag", ["--events", "--days"])
def test_cli_rejects_nonsense_bounds(tmp_path: Path, flag: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "generator.cli",
            "generate",
            "smoke",
            "--out",
            str(tmp_path),
            flag,
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_cli_unwritable_out_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    proc = subprocess.run(
        [sys.executable, "-m", "generator.cli", "generate", "smoke", "--out", str(blocker / "x")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Not a directory" in proc.stderr and "Traceback" not in proc.stderr


def test_shards_made_apart_join_with_cdpsim_merge(tmp_path: Path, multi_dataset: Path) -> None:
    """Shards written on different machines (here: directories), copied together, then joined
    by `cdpsim merge` with worker processes: the one-process bytes."""
    cmd = [sys.executable, "-m", "generator.cli"]
    together = tmp_path / "together"
    for i in (1, 2):
        alone = tmp_path / f"machine-{i}"
        size = ["--events", "40000", "--shard", f"{i}/2", "--workers", "2"]
        gen = subprocess.run(
            [*cmd, "generate", "multi-region", "--out", str(alone), *size],
            capture_output=True,
            text=True,
        )
        assert gen.returncode == 0, gen.stderr
        shutil.copytree(alone / ".parts", together / ".parts", dirs_exist_ok=True)
    assert not (together / "events.jsonl").exists()
    merge = subprocess.run(
        [*cmd, "merge", str(together), "--profile", "multi-region", "--workers", "2"],
        capture_output=True,
        text=True,
    )
    assert merge.returncode == 0, merge.stderr
    merged, one = _bytes(together), _bytes(multi_dataset)
    for name in ("events.jsonl", "guests.jsonl"):
        assert merged[name] == one[name]
    # The manifests differ only in where the profile was read from (bundled copy or path).
    manifests = [orjson.loads(m["manifest.json"]) for m in (merged, one)]
    for m in manifests:
        m["profile"].pop("source")
    assert manifests[0] == manifests[1]
    nothing = subprocess.run(
        [*cmd, "merge", str(tmp_path / "empty"), "--profile", "multi-region"],
        capture_output=True,
        text=True,
    )
    assert nothing.returncode == 2 and "no generated parts" in nothing.stderr


def _stop_at(out: Path, workers: str, phase: str, signum: int) -> tuple[int, str]:
    """Start a generate that waits at `phase` (the CLI's test-only CDPSIM_TEST_PAUSE_AT), send
    it `signum` there, and check that it leaves no process behind: its exit code and stderr."""
    cmd = [sys.executable, "-m", "generator.cli", "generate", "retail-ireland", "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--events", "300000", "--workers", workers],
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CDPSIM_TEST_PAUSE_AT": phase},
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # ends at the marker, or at exit if the phase never came
        seen.append(line)
        if line.strip() == f"cdpsim-test-pause {phase}":
            break
    else:
        proc.wait()
        raise AssertionError(f"never reached {phase}: {''.join(seen)}")
    family = psutil.Process(proc.pid).children(recursive=True)
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)  # what a terminal's Ctrl-C does
    else:
        os.kill(proc.pid, signum)  # `kill PID`: the parent alone
    _, err = proc.communicate(timeout=60)
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive  # no worker left behind
    assert "Traceback" not in err, err
    return proc.returncode, err


def _rerun_completes(out: Path) -> None:
    cmd = [sys.executable, "-m", "generator.cli", "generate", "retail-ireland", "--out", str(out)]
    rerun = subprocess.run([*cmd, "--events", "2000"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert orjson.loads((out / "manifest.json").read_bytes())["events"] == 2000
    assert validate_dataset(out).ok


@pytest.mark.parametrize("phase", ["simulate", "write", "join"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stops_generate_cleanly_and_a_rerun_completes(
    tmp_path: Path, workers: str, phase: str
) -> None:
    out = tmp_path / "interrupted"
    code, err = _stop_at(out, workers, phase, signal.SIGINT)
    assert code == 130, err
    assert "interrupted" in err
    # It stopped there: the run did not go on to write the dataset (exit 130 or not).
    assert not (out / "manifest.json").exists()
    # What cannot be resumed is gone, and it says what is left.
    if phase == "simulate":
        assert "nothing to resume" in err and not out.exists()  # it made out, left empty
    else:  # every part is done: kept, and the way on is named
        assert f"kept {out}/.parts: every shard is done" in err and "cdpsim merge" in err
        assert sorted(p.name for p in out.iterdir()) == [".parts"]  # no .partial
    _rerun_completes(out)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_stops_generate_saying_terminated(tmp_path: Path, workers: str) -> None:
    out = tmp_path / "terminated"
    code, err = _stop_at(out, workers, "simulate", signal.SIGTERM)
    assert code == 143, err
    assert "terminated" in err
    _rerun_completes(out)


@pytest.mark.timeout(120)
def test_a_failing_worker_stops_the_run_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunk fails in one worker while the next, rendered by the other, waits for the
    first one's size to know its place: the run fails with the first chunk's error, and nothing
    is left waiting (the timeout would catch a hang)."""
    import generator.dataset.chunks as chunks
    from generator.dataset.plan import make_plan

    profile = load_profile(Path(__file__).resolve().parents[1] / "profiles/multi-region.yaml")
    plan = make_plan(profile, seed=None, days=None, guests=None, events=300_000, gzip=False)
    assert plan.buckets >= 3
    first_bucket_end = plan.edges[1]
    sort_rows = chunks.sort_rows

    def sort_or_break(rows: Any) -> Any:
        if len(rows) and int(rows["created"].min()) < first_bucket_end:
            time.sleep(0.5)  # long enough for the second chunk to be waiting on this one
            raise ValueError("the first chunk broke")
        return sort_rows(rows)

    monkeypatch.setattr(chunks, "sort_rows", sort_or_break)  # the forked workers inherit it
    with pytest.raises(ValueError, match="the first chunk broke"):
        make_dataset(tmp_path / "broken", profile, events=300_000, workers=2)
