"""Assignment as CDP offers it: unique, universal buckets, the optimized bandit; the embedded
server's callFlows gives every guest the variant the generator gave them, in every mode."""

from __future__ import annotations

import http.client
import itertools
import urllib.parse
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import MODES, MODES_SIZE, make_dataset, modes_data

from generator.dataset.reader import open_dataset
from generator.dataset.validate import validate_dataset
from generator.events.wire import browser_create, call_flow
from generator.model.assignment import (
    MINIMUM_WEIGHT,
    BanditSchedule,
    FlowTable,
    assign,
    assign_one,
    guest_key,
    universal_bucket,
)
from generator.profile import BUCKETS, Profile, ProfileError, parse_profile
from generator.server.process import EmbeddedServer


def _keys(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)


def _flow(profile: Profile, name: str) -> int:
    return next(i for i, f in enumerate(profile.flows) if f.friendly_id == name)


# --- universal -----------------------------------------------------------------------------


def test_universal_buckets_make_disjoint_flows_exclusive_and_overlapping_ones_overlap() -> None:
    table = FlowTable(MODES)
    keys = _keys(60_000)
    bucket = universal_bucket(keys)
    assert bucket.min() == 1 and bucket.max() == BUCKETS
    # Buckets are even: each holds 1/120 of the guests, within 5 standard errors.
    per = np.bincount(bucket, minlength=BUCKETS + 1)[1:]
    assert np.all(np.abs(per - 500) < 5 * np.sqrt(500))
    low, high, mid = (
        assign(table, _flow(MODES, n), keys) for n in ("uni_low", "uni_high", "uni_mid")
    )
    # Each flow holds exactly the guests of its range, each variant those of its own range.
    assert np.array_equal(low >= 0, bucket <= 60)
    assert np.array_equal(high >= 0, bucket >= 61)
    assert np.array_equal(mid >= 0, (bucket >= 31) & (bucket <= 90))
    assert np.array_equal(low == 1, (bucket >= 31) & (bucket <= 60))
    assert np.array_equal(mid == 0, (bucket >= 31) & (bucket <= 50))
    # Disjoint ranges: no guest in both. Overlapping: exactly the shared buckets.
    assert not np.any((low >= 0) & (high >= 0))
    assert np.array_equal((low >= 0) & (mid >= 0), (bucket >= 31) & (bucket <= 60))
    assert np.array_equal((high >= 0) & (mid >= 0), (bucket >= 61) & (bucket <= 90))
    # The bucket is the guest's, not the flow's: low's variant 1 guests are mid's variant 0 or
    # 1 by bucket alone.
    assert MODES.flows[_flow(MODES, "uni_low")].traffic_allocation == 0.5
    assert MODES.flows[_flow(MODES, "uni_mid")].weights == (20 / 60, 40 / 60)


def test_universal_dataset_keeps_disjoint_flows_apart(modes_dataset: Path) -> None:
    ds = open_dataset(modes_dataset)
    owner = {b["browserRef"]: g["guestRef"] for _, g in ds.guests() for b in g["browsers"]}
    flows_of: dict[str, set[str]] = defaultdict(set)
    for _, e in ds.events():
        if e["type"] == "TRACKING":
            flows_of[owner[e["browserRef"]]].add(
                e["arbitraryData"]["flowExecution"]["flowFriendlyId"]
            )
    both = [g for g, f in flows_of.items() if {"uni_low", "uni_high"} <= f]
    shared = [g for g, f in flows_of.items() if {"uni_low", "uni_mid"} <= f]
    assert both == [] and shared, "disjoint flows never share a guest; overlapping ones do"
    bucket = universal_bucket(np.array([guest_key(g) for g in shared], dtype=np.uint64))
    assert np.all((bucket >= 31) & (bucket <= 60))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"buckets": [0, 60]}, "buckets: is [0, 60]; must be [first, last]"),
        ({"buckets": [1, 121]}, "must be [first, last] with 1 <= first <= last <= 120"),
        ({"variants.1.buckets": [31, 70]}, "[1].buckets: [31, 70] is not inside the flow's"),
        ({"variants.1.buckets": [25, 60]}, "[1].buckets: [25, 60] overlaps [0].buckets [1, 30]"),
        ({"variants.1.buckets": [31, 59]}, "ranges cover 59 of the flow's buckets [1, 60]"),
        ({"variants.1.buckets": None}, "[1].buckets: needed with universal assignment"),
        ({"variants.1.weight": 0.5}, "[1].weight: not with universal assignment"),
        ({"trafficAllocation": 0.5}, "trafficAllocation: universal assignment allocates by"),
        ({"assignment": "unique"}, "[0].weight: needed with unique assignment"),
        ({"assignment": "optimized"}, "buckets: only universal assignment"),
        ({"bandit": {"periodHours": 24}}, "bandit: only optimized assignment"),
    ],
)
def test_universal_profile_errors_are_readable(change: dict[str, Any], expected: str) -> None:
    data = modes_data()
    flow = data["flows"][0]
    for path, value in change.items():
        node, *rest = path.split(".")
        if rest:
            target = flow[node][int(rest[0])]
            if value is None:
                del target[rest[1]]
            else:
                target[rest[1]] = value
        else:
            flow[node] = value
    with pytest.raises(ProfileError) as info:
        parse_profile(data, source="x.yaml")
    assert any(expected in p for p in info.value.problems), info.value.problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"trafficAllocation": 0.5}, "trafficAllocation: optimized assignment always allocates"),
        ({"weight": 0.5}, "[0].weight: not with optimized assignment"),
        ({"bandit": {"periodHours": 0}}, "bandit.periodHours"),
    ],
)
def test_optimized_profile_errors_are_readable(change: dict[str, Any], expected: str) -> None:
    data = modes_data()
    flow = data["flows"][3]
    for key, value in change.items():
        if key == "weight":
            flow["variants"][0]["weight"] = value
        else:
            flow[key] = value
    with pytest.raises(ProfileError) as info:
        parse_profile(data, source="x.yaml")
    assert any(expected in p for p in info.value.problems), info.value.problems


# --- optimized ----------------------------------------------------------------------------


def test_bandit_weights_start_even_move_to_the_better_variant_and_keep_one_percent() -> None:
    schedule = BanditSchedule((0.02, 0.03, 0.01), impressions=3000, salt=12345)
    assert np.allclose(schedule.weights(0), 1 / 3)
    better = [float(schedule.weights(p)[1]) for p in range(15)]
    assert better[-1] > 0.9 and better[-1] > better[1] > better[0]
    assert sum(b >= a - 0.05 for a, b in itertools.pairwise(better)) >= 12
    for p in range(15):
        w = schedule.weights(p)
        assert w.min() >= MINIMUM_WEIGHT - 1e-12 and abs(w.sum() - 1) < 1e-9
    # Equal rates: no variant runs away; many variants: each still keeps its 1%.
    even = BanditSchedule((0.05, 0.05), impressions=3000, salt=7)
    assert all(abs(float(even.weights(p)[0]) - 0.5) < 0.3 for p in range(10))
    many = BanditSchedule(tuple([0.01] * 25 + [0.2]), impressions=5000, salt=9)
    assert many.weights(6).min() >= MINIMUM_WEIGHT - 1e-12
    assert float(many.weights(6)[-1]) == pytest.approx(1 - 25 * MINIMUM_WEIGHT)
    # A pure function of its inputs: the same weights whoever asks, in any order.
    again = BanditSchedule((0.02, 0.03, 0.01), impressions=3000, salt=12345)
    assert np.array_equal(again.weights(9), schedule.weights(9))


def test_bandit_dataset_moves_guests_to_the_better_variant(modes_dataset: Path) -> None:
    manifest = orjson.loads((modes_dataset / "manifest.json").read_bytes())
    bandit = manifest["flows"]["bandit"]["bandit"]
    periods = bandit["periods"]
    assert bandit["periodHours"] == 12 and len(periods) == 6
    assert periods[0]["weights"] == pytest.approx([1 / 3] * 3)
    assert periods[-1]["weights"][1] > 0.6 > periods[0]["weights"][1]
    assert all(min(p["weights"]) >= MINIMUM_WEIGHT - 1e-12 for p in periods)
    exposed = np.array([p["exposedGuests"] for p in periods])
    early, late = exposed[0], exposed[2:].sum(axis=0)
    assert late[1] / late.sum() > early[1] / early.sum()
    assert exposed.sum() == sum(v["exposedGuests"] for v in manifest["flows"]["bandit"]["variants"])


def test_every_mode_validates(modes_dataset: Path) -> None:
    """Among the checks: each guest's variant recomputed from the manifest's description of its
    flow (the hash, the buckets, the bandit's weights at the first exposure)."""
    report = validate_dataset(modes_dataset)
    assert report.ok, dict(report.examples)


def test_every_mode_splits_into_the_same_bytes(modes_dataset: Path, tmp_path: Path) -> None:
    two = make_dataset(tmp_path / "w2", MODES, **MODES_SIZE, workers=2)
    for name in ("events.jsonl", "manifest.json", "guests.jsonl"):
        assert (two / name).read_bytes() == (modes_dataset / name).read_bytes(), name


# --- the embedded server --------------------------------------------------------------------


class _Client:
    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        assert parsed.hostname == "127.0.0.1"
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        raw = None if body is None else orjson.dumps(body)
        self.conn.request(method, path, body=raw, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        assert response.status == 200, data
        return orjson.loads(data)

    def browser(self, guest_ref: str) -> str:
        created = self.call("GET", browser_create(MODES.client_key, guest_ref).path)
        assert created["customer_ref"] == guest_ref
        return str(created["ref"])


@pytest.fixture(scope="module")
def server(modes_path: Path) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(modes_path) as s:
        yield s


def test_server_gives_each_dataset_guest_the_generators_variant_in_every_mode(
    modes_dataset: Path, server: EmbeddedServer
) -> None:
    """Replay's requests (browser create with the guest hint, callFlows from each TRACKING):
    the server's variant is the dataset's, first exposure and later ones alike."""
    ds = open_dataset(modes_dataset)
    owner = {b["browserRef"]: g["guestRef"] for _, g in ds.guests() for b in g["browsers"]}
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    per_pair: dict[tuple[str, str], int] = defaultdict(int)
    for _, e in ds.events():
        if e["type"] != "TRACKING":
            continue
        guest = owner[e["browserRef"]]
        pair = (guest, e["arbitraryData"]["flowExecution"]["flowFriendlyId"])
        per_pair[pair] += 1
        if per_pair[pair] <= 3:
            runs[guest].append(e)
    client = _Client(server.url)
    checked: dict[str, int] = defaultdict(int)
    for guest in sorted(runs)[:70]:
        browser = client.browser(guest)
        for e in runs[guest]:
            request = call_flow(e, browser, "EN", "EUR")
            answer = client.call(request.method, request.path, request.body)
            fx = e["arbitraryData"]["flowExecution"]
            assert answer["variant"]["ref"] == fx["flowVariantRef"], (guest, fx["flowFriendlyId"])
            checked[fx["flowFriendlyId"]] += 1
    assert set(checked) == {f.friendly_id for f in MODES.flows}


def test_server_answers_as_assign_for_many_guest_refs(server: EmbeddedServer) -> None:
    """Guest refs of no dataset, at times across the bandit's periods: the server's variant (or
    none, outside the allocation) is the generator's `assign_one`."""
    table = FlowTable(MODES)
    rng = np.random.default_rng(5)
    client = _Client(server.url)
    start = table.start_ms
    for n in range(60):
        guest = str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | n, version=4))
        browser = client.browser(guest)
        at = start + int(rng.integers(0, 3 * 86_400_000))
        for f, flow in enumerate(MODES.flows):
            body = {
                "clientKey": MODES.client_key,
                "friendlyId": flow.friendly_id,
                "pointOfSale": MODES.points_of_sale[0].name,
                "browserId": browser,
                "params": {"cdpsim_occurred_at": at},
            }
            answer = client.call("POST", "/v2/callFlows", body)
            want = assign_one(table, f, guest, at)
            got = answer["variant"]
            assert (got and got["name"]) == (None if want < 0 else flow.variants[want].name)
    # An optimized flow keeps the first answer: later exposures in other periods change nothing.
    f = _flow(MODES, "bandit")
    kept = _run_bandit(client, browser, start + 10 * 86_400_000)
    assert kept == MODES.flows[f].variants[assign_one(table, f, guest, at)].name


def test_server_keeps_optimized_variants_across_a_restart(server: EmbeddedServer) -> None:
    """An optimized flow's kept variants come back from the ledger after a crash (SIGKILL)."""
    table = FlowTable(MODES)
    f = _flow(MODES, "bandit")
    late = table.start_ms + 5 * 86_400_000
    # Guests whose first period's variant is not the one a late period would give them.
    guests = [
        g
        for g in (str(uuid.UUID(int=(i + 1) << 70 | i, version=4)) for i in range(400))
        if assign_one(table, f, g, table.start_ms) != assign_one(table, f, g, late)
    ][:5]
    assert guests
    client = _Client(server.url)
    browsers = [client.browser(g) for g in guests]
    first = [_run_bandit(client, b, table.start_ms) for b in browsers]
    server.kill()
    server.start()
    client = _Client(server.url)
    again = [_run_bandit(client, b, late) for b in browsers]
    want = [MODES.flows[f].variants[assign_one(table, f, g, table.start_ms)].name for g in guests]
    assert again == first == want


def _run_bandit(client: _Client, browser: str, at: int) -> str:
    body = {
        "clientKey": MODES.client_key,
        "friendlyId": "bandit",
        "pointOfSale": MODES.points_of_sale[0].name,
        "browserId": browser,
        "params": {"cdpsim_occurred_at": at},
    }
    return str(client.call("POST", "/v2/callFlows", body)["variant"]["name"])
