"""Load-test parts without a network: shapes, target checks, counters, journeys, verdicts."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from generator.endpoint import Endpoint, is_loopback, parse_endpoint
from generator.errors import CdpsimError
from generator.events.history import guest_histories
from generator.events.wire import client_event
from generator.load.counters import Counters, merge_counters
from generator.load.guest_cache import GuestCache
from generator.load.guest_simulator import codec_for, simulate_packed
from generator.load.journeys import JourneyCompiler, JourneyStepKind
from generator.load.options import parse_duration
from generator.load.shapes import ShapeSpec, users_at
from generator.load.summary import Slo, build_summary, reconcile
from generator.profile import load_profile
from generator.redaction import redact

SMOKE = str(Path(__file__).resolve().parents[1] / "profiles" / "smoke.yaml")


def _spec(shape: str, **kw: float) -> ShapeSpec:
    base: dict = dict(shape=shape, users=20, spawn_rate=5.0, run_time=100.0)
    base.update(kw)
    return ShapeSpec(**base)


# Runs the real ProfileShape in a child: importing Locust monkey-patches the whole process with
# gevent, which must not happen to the test session. One child for every profile it is given
# (each starting Locust costs seconds), each with an environment and a shape of its own.
_TICKS = """
import argparse, json, random, sys
from types import SimpleNamespace
from locust.env import Environment
from generator.load.options import add_arguments
from generator.load.users import ProfileShape

class Clocked(ProfileShape):
    now = 0.0
    def get_run_time(self):
        return self.now

by_profile = {}
for path in sys.argv[1:]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    shape = Clocked()
    options = parser.parse_args(["--cdpsim-profile", path])
    shape.runner = SimpleNamespace(environment=Environment(parsed_options=options))
    times = [i * 0.7 for i in range(175)]
    rounds = []
    for seed in (1, 2):
        random.Random(seed).shuffle(times)
        ticks = {}
        for t in times:
            shape.now = t
            ticks[repr(t)] = shape.tick()
        rounds.append(ticks)
    by_profile[path] = rounds
print(json.dumps(by_profile))
"""
_KINDS = ["steady", "step", "spike", "diurnal"]


@pytest.fixture(scope="module")
def shape_ticks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list]]:
    """Per load shape: its profile and the real shape's ticks in two shuffled orders."""
    directory = tmp_path_factory.mktemp("shapes")
    paths = {}
    for kind in _KINDS:
        data = yaml.safe_load(Path(SMOKE).read_text())
        data["load"] = {"shape": kind, "users": 30, "spikeUsers": 90, "runTimeSeconds": 120}
        paths[kind] = directory / f"{kind}.yaml"
        paths[kind].write_text(yaml.safe_dump(data))
    out = subprocess.run(
        [sys.executable, "-c", _TICKS, *map(str, paths.values())],
        capture_output=True,
        check=True,
        timeout=60,
    )
    rounds = json.loads(out.stdout)
    return {kind: (path, rounds[str(path)]) for kind, path in paths.items()}


@pytest.mark.parametrize("kind", _KINDS)
def test_tick_is_a_pure_function_of_elapsed_time(
    kind: str, shape_ticks: dict[str, tuple[Path, list]]
) -> None:
    profile, (first, second) = shape_ticks[kind]
    spec = ShapeSpec.from_profile(load_profile(profile))
    assert spec.shape == kind
    assert first == second  # two shuffled orders, the same answer at every moment
    for t, tick in first.items():
        want = users_at(spec, float(t))
        assert (tuple(tick) if tick else None) == want
        if float(t) >= 120:
            assert tick is None
    levels = {tick[0] for tick in first.values() if tick is not None}
    expected = {"steady": {30}, "spike": {30, 90}, "step": {8, 15, 23, 30}}
    if kind in expected:
        assert levels == expected[kind]
    else:  # the daily curve compressed into the run: many levels, its peak at `users`
        assert len(levels) > 5 and max(levels) == 30


def test_shapes_follow_their_definitions() -> None:
    step = _spec("step", steps=4)
    assert [users_at(step, t)[0] for t in (0, 24.9, 25, 50, 75, 99.9)] == [5, 5, 10, 15, 20, 20]
    spike = _spec("spike", spike_users=80, spike_at=0.5, spike_length=0.1)
    assert [users_at(spike, t)[0] for t in (10, 49.9, 50, 59.9, 60)] == [20, 20, 80, 80, 20]
    curve = tuple([1.0] * 12 + [4.0] + [1.0] * 11)
    diurnal = _spec("diurnal", daily_curve=curve)
    assert users_at(diurnal, 50.0)[0] == 20  # hour 12 of 24 is the peak
    assert users_at(diurnal, 10.0)[0] == 5
    for spec in (step, spike, diurnal, _spec("steady")):
        assert users_at(spec, 100.0) is None
        assert users_at(spec, -1.0) is None


def test_duration_parsing() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("5s") == 5
    for bad in ("", "5x", "0s", "m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def parse_target(url: str, *, allow_remote: bool) -> Endpoint:
    return parse_endpoint(url, option="--host", allow_remote=allow_remote, why_local="load")


def test_only_loopback_targets_without_allow_remote() -> None:
    for url in (
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:9",
        "http://127.8.0.1",
    ):
        assert parse_target(url, allow_remote=False).loopback
    for url in ("http://10.0.0.5:8080", "https://api-engage-eu.sitecorecloud.io", "http://0.0.0.0"):
        with pytest.raises(CdpsimError, match="--allow-remote"):
            parse_target(url, allow_remote=False)
        assert not parse_target(url, allow_remote=True).loopback
    with pytest.raises(CdpsimError):
        parse_target("127.0.0.1:8080", allow_remote=False)
    with pytest.raises(CdpsimError, match="base URL"):
        parse_target("http://127.0.0.1:8080/v1.2/events", allow_remote=False)


def test_one_loopback_rule_for_load_replay_and_serve() -> None:
    # The same names and addresses count as local for every command (serve used to refuse
    # ip6-localhost while load took it).
    for host in ("localhost", "ip6-localhost", "127.0.0.1", "127.9.9.9", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "10.0.0.5", "example.com", "localhost.example.com", "::"):
        assert not is_loopback(host), host


def test_merged_histograms_equal_one_histogram_of_everything() -> None:
    rng = random.Random(11)
    values = [rng.lognormvariate(0, 1.2) for _ in range(5000)]
    parts = [Counters() for _ in range(3)]
    whole = Counters()
    for i, ms in enumerate(values):
        parts[i % 3].record(status=201, response_time_ms=ms, start_s=1000 + i, error=None)
        whole.record(status=201, response_time_ms=ms, start_s=1000 + i, error=None)
    merged = merge_counters([Counters.from_json(p.to_json()) for p in parts])
    assert merged.requests == whole.requests == 5000
    for p in (50, 95, 99, 99.9, 100):
        assert merged.latency_us.get_value_at_percentile(
            p
        ) == whole.latency_us.get_value_at_percentile(p)
    assert merged.first_ms == whole.first_ms and merged.last_ms == whole.last_ms
    # Sub-millisecond resolution: 0.25 ms is recorded as 250 us, not rounded to a whole ms.
    fine = Counters()
    fine.record(status=200, response_time_ms=0.25, start_s=1.0, error=None)
    assert fine.latency_us.get_value_at_percentile(50) == 250


def test_journeys_replay_the_history_with_the_browser_id_spliced_in() -> None:
    profile = load_profile(SMOKE)
    compiler = JourneyCompiler(profile, think_time_scale=0.01, max_think=5.0)
    histories = [h for h in guest_histories(profile, seed=3) if h.events][:40]
    assert histories
    for history in histories:
        journey = compiler.compile(history)
        browsers = [s for s in journey.steps if s.kind is JourneyStepKind.BROWSER]
        assert len(browsers) == len(history.browsers)
        assert all(s.kind is JourneyStepKind.BROWSER for s in journey.steps[: len(browsers)])
        sends = journey.steps[len(browsers) :]
        assert journey.events == len(sends) == len(history.events)
        assert all(0 <= s.delay <= 5.0 for s in journey.steps)
        for step, event in zip(sends, history.events, strict=True):
            body = orjson.loads(step.body("b-123"))
            if event["type"] == "TRACKING":
                assert step.kind is JourneyStepKind.FLOW and step.path == "/v2/callFlows"
                assert body["browserId"] == "b-123"
                flow = event["arbitraryData"]["flowExecution"]["flowFriendlyId"]
                assert body["friendlyId"] == flow
            else:
                assert step.kind is JourneyStepKind.EVENT
                assert body == client_event(event, "b-123").body


def test_kitchen_packing_round_trips() -> None:
    profile = load_profile(SMOKE)
    compiler = JourneyCompiler(profile, think_time_scale=0.01, max_think=5.0)
    histories = [h for h in guest_histories(profile, seed=5) if h.events][:20]
    pack, unpack = codec_for("journeys", profile, think_time_scale=0.01, max_think=5.0)
    assert [unpack(pack(h)) for h in histories] == [compiler.compile(h) for h in histories]
    pack, unpack = codec_for("lines", profile, think_time_scale=0.0, max_think=0.0)
    for h in histories:
        assert [orjson.loads(line) for line in unpack(pack(h))] == list(h.events)


def test_decks_are_repeatable_and_workers_do_not_share_guests() -> None:
    profile = load_profile(SMOKE)

    def order(seed: int, block: int) -> list[bytes]:
        return simulate_packed(profile, lambda h: h.guest_ref.encode(), seed, block)

    def cache(worker: int) -> GuestCache[str]:
        return GuestCache(order, bytes.decode, root_seed=9, worker=worker, stride=4)

    caches = {w: cache(w) for w in (0, 1)}

    def refs(worker: int, serial: int, n: int = 30) -> list[str]:
        sequence = caches[worker].sequence(serial)
        return [next(sequence) for _ in range(n)]

    assert refs(0, 1) == refs(0, 1)
    assert next(cache(0).sequence(1)) == refs(0, 1, 1)[0]
    users = [refs(w, s) for w in (0, 1) for s in range(4)]
    everyone = [r for user in users for r in user]
    assert len(set(everyone)) == len(everyone)


def test_reconciliation_and_verdicts() -> None:
    counters = Counters(events_sent=10, events_acknowledged=9)
    for i in range(10):
        counters.record(status=201, response_time_ms=2.0 + i, start_s=float(i), error=None)
    assert reconcile(counters, {"total": 9, "duplicates": 0}) == {
        "sent": 10,
        "acknowledged": 9,
        "cut_at_stop": 0,
        "stored": 9,
        "lost": 0,
        "duplicated": 0,
        "expected_duplicates": 0,
        "expected_rejections": 0,
        "unexpected_rejections": 0,
    }
    lost = reconcile(counters, {"total": 7, "duplicates": 0})
    assert lost["lost"] == 2
    assert reconcile(counters, {"total": 9, "duplicates": 2})["duplicated"] == 2
    assert reconcile(counters, {"total": 12, "duplicates": 0})["duplicated"] == 2
    run = {"scenario": "journeys"}
    held = build_summary(counters, run=run, reconciliation=None, omitted_reason="x", slo=Slo())
    assert (held["verdict"], held["exit_code"]) == ("held", 0)
    summary = build_summary(counters, run=run, reconciliation=lost, omitted_reason=None, slo=Slo())
    assert (summary["verdict"], summary["exit_code"]) == ("events_lost", 3)
    slow = build_summary(
        counters, run=run, reconciliation=None, omitted_reason="x", slo=Slo(max_p95_ms=5.0)
    )
    assert (slow["verdict"], slow["exit_code"]) == ("slo_breach", 1)
    assert slow["latency_ms"]["p95"] == pytest.approx(11.0, abs=0.02)


def test_client_keys_are_never_shown_whole() -> None:
    key = "SmokeTestKey0000000000000000000A"
    for text in (f"url=http://x/create.json?client_key={key}&m=1", f'{{"clientKey":"{key}"}}'):
        shown = redact(text)
        assert key not in shown and "Smok" in shown
