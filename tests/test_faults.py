"""Labelled dirty traffic: each fault kind at its share, recorded, and reconciled exactly."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import make_dataset
from rich.console import Console

from generator.events.checker import StoredEventChecker
from generator.fault_injection import (
    KINDS,
    LATE_AFTER,
    MALFORMED,
    FaultInjector,
    FaultMix,
    parse_labels,
    render_label,
    write_dirty_copy,
)
from generator.load.loadtest import LoadTest
from generator.server.process import EmbeddedServer

SMOKE = Path(__file__).resolve().parents[1] / "profiles" / "smoke.yaml"
SHARE = 0.02
MIX = FaultMix.parse(",".join(f"{k}={SHARE}" for k in KINDS))


def _near(count: int, n: int, share: float) -> bool:
    """Within four binomial standard errors of n * share."""
    return abs(count - n * share) <= 4 * math.sqrt(n * share * (1 - share)) + 1


def test_mix_parses_and_refuses_what_it_does_not_know() -> None:
    mix = FaultMix.parse("dup=0.01,late=0.005,malformed=0.001,out-of-order=0.01")
    assert FaultMix.parse(str(mix)) == mix and mix.share("late") == 0.005
    for bad in ("dupe=0.1", "dup=2", "dup", ""):
        with pytest.raises(ValueError):
            FaultMix.parse(bad)
    assert parse_labels(render_label([(1, "dup"), (7, "malformed")])) == {1: "dup", 7: "malformed"}


def test_every_kind_at_its_share_and_the_clean_stream_all_there() -> None:
    n, groups = 30_000, 20
    injector: FaultInjector[int] = FaultInjector(MIX, np.random.default_rng(5), late_after=50)
    out = []
    for i in range(n):
        out += injector.push(i, i % groups, f"r{i}")
    out += injector.drain()
    faults = injector.take_faults()
    kinds = Counter(f.kind for f in faults)
    for kind in KINDS:
        assert _near(kinds[kind], n, SHARE), (kind, kinds[kind])
    # Every clean item goes out exactly once (in its place, late or out of order) ...
    firsts = [d.item for d in out if not d.extra]
    assert sorted(firsts) == list(range(n))
    position = {d.item: p for p, d in enumerate(out) if not d.extra}
    moved = {d.item for d in out if d.kind in ("late", "out-of-order")}
    # ... a copy after its original, a late one well after, out of order after the next.
    for p, d in enumerate(out):
        if d.kind in ("dup", "dup-changed"):
            assert p > position[d.item]
        elif d.kind == "late":
            assert p >= d.item + 40  # 50 deliveries later, a few of them copies
        elif d.kind == "out-of-order" and d.item + groups not in moved:
            assert position[d.item + groups] < p  # the guest's next event went first
    assert {f.detail for f in faults if f.kind == "malformed"} == set(MALFORMED)
    # Recorded with kind, ref and place in the dirty stream.
    for fault in faults:
        assert out[fault.seq - 1].kind == fault.kind and out[fault.seq - 1].ref == fault.ref


def test_generate_writes_a_labelled_dirty_copy_beside_the_clean_dataset(
    smoke_dataset: Path, tmp_path: Path
) -> None:
    for name in ("events.jsonl", "guests.jsonl", "manifest.json"):
        shutil.copy(smoke_dataset / name, tmp_path / name)
    clean = (tmp_path / "events.jsonl").read_bytes()
    events, listed, count = write_dirty_copy(tmp_path, MIX, seed=3)
    assert (tmp_path / "events.jsonl").read_bytes() == clean  # untouched
    lines = events.read_bytes().splitlines()
    faults = [orjson.loads(x) for x in listed.read_bytes().splitlines()]
    assert len(faults) == count
    clean_lines = clean.splitlines()
    kinds = Counter(f["kind"] for f in faults)
    browsers = [orjson.loads(x)["browserRef"] for x in clean_lines]
    # Out of order applies to an event with a later one of its guest (here: of its browser).
    followed = len(browsers) - len(set(browsers))
    for kind in KINDS:
        n = followed if kind == "out-of-order" else len(clean_lines)
        assert _near(kinds[kind], n, SHARE), (kind, kinds[kind])
    # Each labelled line is what its label says; the unlabelled lines are the clean events.
    labelled = {f["seq"]: f for f in faults}
    checker = StoredEventChecker(client_key=orjson.loads(clean_lines[0])["clientKey"])
    rest = []
    for seq, line in enumerate(lines, start=1):
        fault = labelled.get(seq)
        kind = fault["kind"] if fault else None
        if kind == "malformed":
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            assert checker.first(event) is not None, fault
        elif kind in ("dup", "dup-changed"):
            event = orjson.loads(line)
            assert event["ref"] == fault["ref"] and checker.first(event) is None
            assert (line in clean_lines) == (kind == "dup")
        else:
            rest.append(line)
    assert sorted(rest) == sorted(clean_lines)


def test_ingest_faults_are_counted_apart_and_reconcile_exactly(tmp_path: Path) -> None:
    summary = LoadTest(
        profile=SMOKE,
        scenario="ingest",
        run_time=2,
        users=1,
        batch_size=20,
        faults=MIX,
        report=tmp_path,
    ).run(Console(quiet=True))
    faults = [orjson.loads(x) for x in (tmp_path / "faults.jsonl").read_bytes().splitlines()]
    kinds = Counter(f["kind"] for f in faults)
    assert summary["faults_sent"] == dict(sorted(kinds.items()))
    for kind in KINDS:
        n = summary["events_sent"]
        if kind == "late":  # the last LATE_AFTER of each user's stream were still held back
            n -= LATE_AFTER
        assert _near(kinds[kind], n, SHARE), (kind, kinds[kind])
    rec = summary["reconciliation"]
    # The server told labelled repeats and refusals apart from unexpected ones, exactly.
    assert rec["expected_duplicates"] == kinds["dup"] + kinds["dup-changed"]
    assert rec["expected_rejections"] == kinds["malformed"]
    assert rec["unexpected_rejections"] == 0 and rec["duplicated"] == 0 and rec["lost"] == 0
    assert rec["acknowledged"] <= rec["stored"] <= rec["acknowledged"] + rec["cut_at_stop"]
    assert summary["failures"] == 0 and summary["verdict"] == "held"


@pytest.mark.slow
def test_replay_faults_are_labelled_and_the_server_keeps_the_clean_events(
    tmp_path: Path,
) -> None:
    dataset = make_dataset(tmp_path / "ds", "smoke", events=1500)
    state = tmp_path / "state.json"
    mix = ",".join(f"{k}=0.03" for k in KINDS)
    with EmbeddedServer(profile_path=SMOKE) as server:
        args = [str(dataset), "--target", server.url, "--state", str(state), "--faults", mix]
        proc = subprocess.run(
            [sys.executable, "-m", "generator.cli", "replay", *args, "--no-progress"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        stats = server.stats()
    assert proc.returncode == 0, proc.stderr
    report = orjson.loads(proc.stdout.strip().splitlines()[-1])
    assert report["acknowledged"] >= 1500 and report["failedPermanently"] == 0
    faults = [
        orjson.loads(x)
        for x in state.with_name("state.json.faults.jsonl").read_bytes().splitlines()
    ]
    kinds = Counter(f["kind"] for f in faults)
    assert set(kinds) == set(KINDS)
    assert stats["total"] == 1500  # every clean event stored once, whatever came with it
    assert stats["faults"]["expectedDuplicates"] == kinds["dup"] + kinds["dup-changed"]
    assert stats["faults"]["expectedRejections"] == kinds["malformed"]
    assert stats["duplicates"] == stats["faults"]["expectedDuplicates"]
