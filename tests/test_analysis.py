"""The manifest's analysis: textbook statistics, the two implementations (the writer's and
validate's) agreeing, every figure recomputed from the events, damage found."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import MODES, make_dataset
from hypothesis import given
from hypothesis import strategies as st

from generator.dataset.analysis import flow_analysis, sample_size, z_test
from generator.dataset.answer_key import WINDOW_HOURS, Tally, order_values
from generator.dataset.recount import _equal, _sample_size, _window
from generator.dataset.validate import validate_dataset
from generator.events.types import EventType
from generator.profile import parse_profile


def test_z_test_matches_the_textbook() -> None:
    # 45/100 against 30/100: pooled p 0.375, z = 0.15 / 0.0685 = 2.191, two-sided p = 0.0285.
    test = z_test(45, 100, 30, 100)
    assert test is not None
    assert test.z == pytest.approx(2.19089, abs=1e-5)
    assert test.p_value == pytest.approx(0.02846, abs=1e-5)
    assert test.confidence == pytest.approx(1 - 0.02846, abs=1e-5)
    flipped = z_test(30, 100, 45, 100)
    assert flipped is not None and flipped.z == pytest.approx(-test.z)
    assert flipped.p_value == pytest.approx(test.p_value)
    assert z_test(0, 100, 0, 100) == z_test(0, 10, 0, 20)  # no variance: z 0, p 1
    assert z_test(1, 0, 1, 10) is None


def test_sample_size_matches_the_textbook_and_sitecores_defaults() -> None:
    # 10% against 15%, two-sided 5%, power 80%: 686 per group (Fleiss, without correction).
    assert sample_size(0.10, 0.5, 0.95, 0.80) == 686
    # Sitecore's defaults: 2% base rate, 20% minimum detectable difference, 95% confidence.
    assert sample_size() == 21_109
    # validate finds the same numbers another way (bisection on the power curve).
    for args in ((0.10, 0.5, 0.95, 0.80), (0.02, 0.2, 0.95, 0.80), (0.3, 0.05, 0.99, 0.9)):
        assert _sample_size(*args) == sample_size(*args)
    assert sample_size(0.02, 0.2, 0.99) > sample_size() > sample_size(0.02, 0.5)


def _tally(rng: np.random.Generator, exposed: int, control_rate: float, lift: float) -> Tally:
    t = Tally.empty([2], 2)
    sessions = rng.integers(exposed, 3 * exposed + 1, 2)
    t.exposed_guests[0] = exposed
    t.exposed_sessions[0] = sessions
    for v, rate in enumerate((control_rate, control_rate * (1 + lift))):
        converted = np.sort(rng.binomial(exposed, rate * np.linspace(0.3, 1, len(WINDOW_HOURS))))
        t.converted_guests[0, v] = converted
        for w, c in enumerate(converted.tolist()):
            orders = rng.multinomial(c + int(rng.integers(0, c + 1)), [0.7, 0.3])
            t.orders[0, v, w] = orders
            t.revenue_milli[0, v, w] = orders * rng.integers(5_000, 200_000, 2)
    return t


@given(
    st.integers(0, 40_000),
    st.floats(0.0, 0.3),
    st.floats(-0.5, 1.0),
    st.integers(0, 2**32),
)
def test_the_writers_analysis_and_validates_agree_on_any_counts(
    exposed: int, rate: float, lift: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    t = _tally(rng, exposed, rate, lift)
    currencies = ("EUR", "USD")
    _, rows = flow_analysis(["control", "b"], "x", 24, currencies, t, 0)
    ex = t.exposed_guests[0].tolist()
    ss = t.exposed_sessions[0].tolist()
    conv = t.converted_guests[0].tolist()
    orders = [
        [dict(zip(currencies, o, strict=True)) for o in t.orders[0, v].tolist()] for v in (0, 1)
    ]
    cents = [
        [dict(zip(currencies, c, strict=True)) for c in t.revenue_milli[0, v].tolist()]
        for v in (0, 1)
    ]
    for v in (0, 1):
        for w, hours in enumerate(WINDOW_HOURS):
            label = f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"
            theirs = _window(ex, ss, conv, orders, cents, list(currencies), v, w, 0, sample_size())
            assert _equal(rows[v]["windows"][label], theirs), (v, label)


def test_winner_needs_the_sample_size_the_difference_and_the_confidence() -> None:
    def verdict(exposed: int, control: int, variant: int) -> dict[str, object]:
        t = Tally.empty([2], 1)
        t.exposed_guests[0] = exposed
        t.exposed_sessions[0] = exposed
        t.converted_guests[0, 0] = control
        t.converted_guests[0, 1] = variant
        flow, _ = flow_analysis(["control", "b"], "x", 24, ("EUR",), t, 0)
        return flow["verdict"]

    assert verdict(30_000, 600, 900)["result"] == "Winner"
    assert verdict(30_000, 600, 900)["variant"] == "b"
    assert verdict(20_000, 400, 600)["result"] == "Inconclusive"  # under the sample size
    assert verdict(30_000, 600, 690)["result"] == "Inconclusive"  # 15% < the 20% difference
    assert verdict(30_000, 900, 600)["result"] == "Inconclusive"  # a loser is no winner
    single = Tally.empty([1], 1)
    assert flow_analysis(["only"], "x", 24, ("EUR",), single, 0)[0]["verdict"] is None


def test_order_values_are_the_carts_since_the_last_order_or_clear() -> None:
    E = EventType
    session = np.array([0, 0, 1, 0, 0, 1, 1, 0, 0, 0])
    kind = np.array(
        [E.ADD, E.ADD, E.ADD, E.CHECKOUT, E.ADD, E.CLEAR_CART, E.ADD, E.ADD, E.VIEW, E.CHECKOUT]
    )
    value = np.array([100, 250, 999, 0, 40, 0, 7, 3, 0, 0])
    assert order_values(session, kind, value).tolist() == [0, 0, 0, 350, 0, 0, 0, 0, 0, 43]


def test_order_values_of_later_statuses_and_uncounted_rows() -> None:
    """A CHECKOUT that places no order (a later status of the same order) carries the value of
    the order placed last; rows outside `counts` (stored FAILED) change nothing."""
    E = EventType
    rows = [  # (session, type, value, places an order, counts)
        (0, E.ADD, 100, False, True),
        (0, E.ADD, 250, False, True),
        (1, E.ADD, 999, False, True),
        (0, E.CHECKOUT, 0, True, False),  # not counted: no order, no reset
        (0, E.CHECKOUT, 0, True, True),  # 350
        (0, E.ADD, 40, False, True),
        (1, E.CLEAR_CART, 0, False, True),
        (1, E.ADD, 7, False, True),
        (0, E.ADD, 3, False, False),  # not counted: not in the cart
        (0, E.CHECKOUT, 0, True, True),  # 40
        (1, E.CHECKOUT, 0, True, True),  # 7
        (0, E.CHECKOUT, 0, False, True),  # a later status of the 40 order
        (1, E.CHECKOUT, 0, False, True),  # and of the 7 one
    ]
    session, kind, value, places, counts = (np.array(c) for c in zip(*rows, strict=True))
    got = order_values(session, kind, value, places, counts)
    assert got.tolist() == [0, 0, 0, 0, 350, 0, 0, 0, 0, 40, 7, 40, 7]


def test_validate_recomputes_every_figure_and_names_the_wrong_ones(
    modes_dataset: Path, tmp_path: Path
) -> None:
    manifest = orjson.loads((modes_dataset / "manifest.json").read_bytes())
    flow = manifest["flows"]["uniq"]
    assert flow["attributionWindows"] == ["1h", "3h", "1d", "3d", "7d"]
    assert flow["goals"]["primary"]["goalProductType"] == "HATS"  # as ADD spells it
    assert flow["sampleSize"]["guestsPerVariant"] == 21_109
    assert flow["verdict"]["result"] == "Inconclusive"
    for v in flow["variants"]:
        one_day = v["windows"]["1d"]
        assert one_day["convertedGuests"] == v["convertedGuests"]  # the flow's own window
        assert [v["windows"][w]["convertedGuests"] for w in flow["attributionWindows"]] == sorted(
            v["windows"][w]["convertedGuests"] for w in flow["attributionWindows"]
        )
        assert v["exposedSessions"] >= v["exposedGuests"]
    damaged = tmp_path / "damaged"
    shutil.copytree(modes_dataset, damaged)
    b = flow["variants"][1]
    b["windows"]["3h"]["conversions"] += 1
    b["windows"]["7d"]["vsControl"]["confidence"] = 0.5
    flow["variants"][0]["windows"]["1d"]["revenue"]["EUR"] += 0.01
    flow["variants"][0]["exposedSessions"] += 1
    manifest["flows"]["bandit"]["bandit"]["periods"][1]["exposedGuests"][0] += 1
    (damaged / "manifest.json").write_bytes(orjson.dumps(manifest))
    report = validate_dataset(damaged)
    found = " | ".join(x for examples in report.examples.values() for x in examples)
    for where in (
        "uniq: b: windows.3h.conversions",
        "uniq: b: windows.7d.vsControl.confidence",
        "uniq: control: windows.1d.revenue.EUR",
        "uniq: control: exposedSessions",
        "bandit: period 1",
    ):
        assert where in found, found


@pytest.mark.slow
def test_a_clear_winner_is_declared_at_a_large_population(tmp_path: Path) -> None:
    data = MODES.model_dump(by_alias=True, exclude_none=True, mode="json")
    # Short visits, about two a day: 45,000 guests exposed in a day, in few events.
    data["population"] = {"guests": 52_000, "sessionsPerWeek": 14, "activitySigma": 0}
    data["behaviour"]["maxPages"] = 3
    data["days"] = 1
    data["flows"] = [
        {
            "friendlyId": "big_test",
            "triggerPages": ["home", "product", "category", "search"],
            "goalProductType": "hats",
            "attributionHours": 72,
            "variants": [
                {"name": "control", "weight": 0.5, "conversionRate": 0.04},
                {"name": "b", "weight": 0.5, "conversionRate": 0.08},
            ],
        }
    ]
    profile = parse_profile(data, source="big.yaml")
    out = make_dataset(tmp_path / "big", profile)
    flow = orjson.loads((out / "manifest.json").read_bytes())["flows"]["big_test"]
    assert min(v["exposedGuests"] for v in flow["variants"]) >= 21_109
    assert flow["verdict"]["result"] == "Winner" and flow["verdict"]["variant"] == "b"
    assert validate_dataset(out).ok
