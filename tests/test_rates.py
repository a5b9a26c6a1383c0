"""The configured numbers come back out: variant split, traffic allocation, conversion rates."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import PROFILES, make_dataset

from generator.dataset.reader import open_dataset
from generator.model.assignment import FlowTable, assign
from generator.profile import load_profile, parse_profile


def _within(got: float, want: float, n: int, slack: float = 0.01) -> bool:
    """Inside four binomial standard errors (plus a little slack for edge effects)."""
    return abs(got - want) <= 4 * math.sqrt(max(want * (1 - want), 1e-9) / max(n, 1)) + slack


@pytest.fixture(scope="module")
def rates_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    data = yaml.safe_load((PROFILES / "smoke.yaml").read_text())
    data["name"] = "rates"
    data["population"]["guests"] = 12_000
    data["days"] = 3
    data["flows"] = [
        {
            "friendlyId": "three_way",
            "triggerPages": ["home", "product"],
            "goalProductType": "running_shoes",
            "attributionHours": 72,
            "variants": [
                {"name": "control", "weight": 0.2, "conversionRate": 0.1},
                {"name": "b", "weight": 0.3, "conversionRate": 0.25},
                {"name": "c", "weight": 0.5, "conversionRate": 0.4},
            ],
        },
        {
            "friendlyId": "small_slice",
            "kind": "experience",
            "triggerPages": ["home"],
            "trafficAllocation": 0.25,
            "goalProductType": "accessories",
            "attributionHours": 24,
            "variants": [{"name": "default", "weight": 1.0, "conversionRate": 0.3}],
        },
    ]
    profile = parse_profile(data, source="rates")
    return make_dataset(tmp_path_factory.mktemp("rates"), profile)


def test_conversion_rates_and_split_are_recoverable(rates_dataset: Path) -> None:
    manifest = orjson.loads((rates_dataset / "manifest.json").read_bytes())
    for flow in manifest["flows"].values():
        exposed = sum(v["exposedGuests"] for v in flow["variants"])
        assert exposed > 1000
        for v in flow["variants"]:
            n = v["exposedGuests"]
            assert _within(v["convertedGuests"] / n, v["conversionRate"], n), v
            assert _within(n / exposed, v["weight"], exposed, slack=0.0), v


def test_traffic_allocation_is_recoverable(rates_dataset: Path) -> None:
    """Of the guests who viewed the home page, about a quarter were shown `small_slice`."""
    guests = {g["guestRef"]: g for _, g in open_dataset(rates_dataset).guests()}
    owner = {b["browserRef"]: ref for ref, g in guests.items() for b in g["browsers"]}
    home, shown = set(), set()
    for _, e in open_dataset(rates_dataset).events():
        if e["type"] == "VIEW" and e["arbitraryData"]["page"] == "home":
            home.add(owner[e["browserRef"]])
        elif e["type"] == "TRACKING":
            fx = e["arbitraryData"]["flowExecution"]
            if fx["flowFriendlyId"] == "small_slice":
                shown.add(fx["guestRef"])
    assert shown <= home
    assert _within(len(shown) / len(home), 0.25, len(home), slack=0.0)


def test_assignment_split_on_many_guests() -> None:
    profile = load_profile(PROFILES / "multi-region.yaml")
    table = FlowTable(profile)
    keys = np.random.default_rng(3).integers(0, 2**63, 200_000, dtype=np.uint64)
    for f, flow in enumerate(profile.flows):
        v = assign(table, f, keys)
        allocated = v >= 0
        assert _within(allocated.mean(), flow.traffic_allocation, len(keys), slack=0.0)
        counts = np.bincount(v[allocated], minlength=len(flow.variants)) / allocated.sum()
        for share, variant in zip(counts, flow.variants, strict=True):
            assert _within(float(share), variant.weight, int(allocated.sum()), slack=0.0)


def test_retail_ireland_experiment_recovers_its_rates(tmp_path: Path) -> None:
    d = make_dataset(tmp_path / "ri", "retail-ireland")
    flow = orjson.loads((d / "manifest.json").read_bytes())["flows"]["running_shoes_popup_02"]
    for v in flow["variants"]:
        n = v["exposedGuests"]
        assert _within(v["convertedGuests"] / n, v["conversionRate"], n, slack=0.005), v
