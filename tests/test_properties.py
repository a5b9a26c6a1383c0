"""Properties over random small profiles: any valid profile gives a dataset `validate` accepts."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from conftest import make_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.dataset.validate import validate_dataset
from generator.profile import parse_profile

ZONES = ["UTC", "Europe/Dublin", "America/Los_Angeles", "Asia/Kolkata", "Australia/Sydney"]
PAGES = ["home", "category", "product", "search", "cart", "checkout"]
TYPES = ["shoes", "hats", "bags", "socks"]


@st.composite
def profiles(draw: st.DrawFn) -> dict[str, Any]:
    n_pos = draw(st.integers(1, 3))
    pos = [
        {
            "name": f"shop/p{i}",
            "channels": draw(
                st.lists(
                    st.sampled_from(["WEB", "MOBILE_APP", "MOBILE_WEB"]),
                    min_size=1,
                    max_size=2,
                    unique=True,
                )
            ),
            "timezone": draw(st.sampled_from(ZONES)),
            "sessionTimeoutMinutes": draw(st.integers(5, 60)),
            "share": draw(st.floats(0.5, 3)),
        }
        for i in range(n_pos)
    ]
    total = sum(p["share"] for p in pos)  # shares of a whole: they sum to 1
    for p in pos:
        p["share"] /= total
    goals = draw(st.lists(st.sampled_from(TYPES[:3]), min_size=0, max_size=3, unique=True))
    flows = []
    for i, goal in enumerate(goals):
        k = draw(st.integers(1, 3))
        raw = draw(st.lists(st.integers(1, 10), min_size=k, max_size=k))
        weights = [w / sum(raw) for w in raw]
        weights[-1] = 1 - sum(weights[:-1])
        mode = draw(st.sampled_from(["unique", "universal", "optimized"]))
        variants: list[dict[str, Any]] = [
            {"name": f"v{j}", "conversionRate": draw(st.floats(0, 1))} for j in range(k)
        ]
        flow: dict[str, Any] = {
            "friendlyId": f"flow_{i}",
            "kind": draw(st.sampled_from(["experience", "experiment"])),
            "triggerPages": draw(
                st.lists(st.sampled_from(PAGES), min_size=1, max_size=3, unique=True)
            ),
            "assignment": mode,
            "goalProductType": goal,
            "attributionHours": draw(st.sampled_from([1, 3, 24, 72, 168])),
            "variants": variants,
        }
        if mode == "unique":
            flow["trafficAllocation"] = draw(st.floats(0.1, 1))
            for variant, w in zip(variants, weights, strict=True):
                variant["weight"] = w
        elif mode == "universal":
            # A range of the 120 buckets, cut into one range per variant.
            lo = draw(st.integers(1, 120 - k + 1))
            hi = draw(st.integers(lo + k - 1, 120))
            cuts: list[int] = []
            if k > 1:
                cuts = sorted(
                    draw(
                        st.lists(
                            st.integers(lo + 1, hi), min_size=k - 1, max_size=k - 1, unique=True
                        )
                    )
                )
            edges = [lo, *cuts, hi + 1]
            flow["buckets"] = [lo, hi]
            for j, variant in enumerate(variants):
                variant["buckets"] = [edges[j], edges[j + 1] - 1]
        else:
            flow["bandit"] = {
                "periodHours": draw(st.integers(1, 24)),
                "impressionsPerPeriod": draw(st.floats(1, 5000)),
            }
        flows.append(flow)
    return {
        "name": "prop",
        "seed": draw(st.integers(0, 2**32)),
        "clientKey": "PropertyTestKey00000000000000000",
        "start": draw(st.sampled_from(["2025-03-29T12:00:00Z", "2025-10-25T00:00:00Z"])),
        "days": draw(st.floats(0.1, 2)),
        "pointsOfSale": pos,
        "population": {
            "guests": draw(st.integers(1, 120)),
            "sessionsPerWeek": draw(st.floats(1, 30)),
            "activeDays": draw(st.floats(0.5, 400)),
            "identifyShare": draw(st.floats(0, 1)),
        },
        "behaviour": {
            "bounceRate": draw(st.floats(0, 1)),
            "depthSigma": draw(st.floats(0, 3)),
            "addToCartRate": draw(st.floats(0, 1)),
            "goalAddToCartRate": draw(st.floats(0, 1)),
            "organicPurchaseRate": draw(st.floats(0, 1)),
            "clearCartRate": draw(st.floats(0, 1)),
            "forceCloseRate": draw(st.floats(0, 1)),
            "catalog": [{"type": t, "name": t.title(), "items": 3} for t in TYPES],
        },
        "flows": flows,
    }


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=profiles(), events=st.one_of(st.none(), st.integers(1, 400)))
def test_any_valid_profile_gives_a_valid_dataset(data: dict[str, Any], events: int | None) -> None:
    profile = parse_profile(data, source="prop")
    with tempfile.TemporaryDirectory() as tmp:
        out = make_dataset(Path(tmp) / "d", profile, events=events)
        report = validate_dataset(out)
        assert report.ok, {k: report.examples[k] for k in report.problems}
