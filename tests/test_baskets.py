"""Baskets and money: prices per point of sale, quantities, order statuses, FAILED events."""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from conftest import PROFILES, make_dataset

from generator.dataset.reader import open_dataset
from generator.dataset.validate import validate_dataset
from generator.model.block import simulate_block
from generator.model.world import World
from generator.profile import ProfileError, load_profile, parse_profile
from generator.vocabulary import EventType


def _smoke(**behaviour: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((PROFILES / "smoke.yaml").read_text())
    data["behaviour"] = {**data.get("behaviour", {}), **behaviour}
    return data


def test_prices_per_point_of_sale_in_its_currency() -> None:
    """multi-region: EUR prices are the catalog's, USD at the reference rate with cents, JPY
    whole yen (ints, so that events carry no decimals), and no two currencies the same number."""
    profile = load_profile(PROFILES / "multi-region.yaml")
    world = World(profile)
    base = world.catalog.item_price
    by_currency = {p.currency: world.prices.price[i] for i, p in enumerate(profile.points_of_sale)}
    assert list(by_currency["EUR"]) == base.tolist()
    assert np.allclose(by_currency["USD"], np.round(base * 1.04, 2))
    yen = by_currency["JPY"]
    assert all(type(x) is int for x in yen)
    assert list(yen) == [max(1, round(x * 163)) for x in base.tolist()]
    assert by_currency["USD"][0] != by_currency["EUR"][0] != yen[0]
    assert orjson.dumps(yen[0]) == str(yen[0]).encode()  # `1600`, not `1600.0`


def test_price_rate_and_order_shares_are_checked() -> None:
    data = _smoke()
    data["pointsOfSale"][0]["currency"] = "XTS"
    with pytest.raises(ProfileError, match=r"pointsOfSale\[0\]\.priceRate: needed"):
        parse_profile(data)
    data["pointsOfSale"][0]["priceRate"] = 3.5
    assert World(parse_profile(data)).prices.price[0][0] == round(
        World(parse_profile(_smoke())).catalog.item_price[0] * 3.5, 2
    )
    with pytest.raises(ProfileError, match="cancelledShare"):
        parse_profile(_smoke(orders={"cancelledShare": 0.6, "refundedShare": 0.5}))
    with pytest.raises(ProfileError, match=r"basket\.quantityShares"):
        parse_profile(_smoke(basket={"quantityShares": [0.5, 0.2]}))


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """smoke with many failures and after-sale changes, soon after the sale."""
    profile = parse_profile(
        _smoke(
            orders={
                "failedShare": 0.4,
                "cancelledShare": 0.3,
                "refundedShare": 0.4,
                "cancelLagHours": {"median": 1, "sigma": 0.5},
                "refundLagHours": {"median": 6, "sigma": 0.5},
            },
            basket={"extraItems": 2},
        )
    )
    return make_dataset(tmp_path_factory.mktemp("busy"), profile, guests=300)


def _events(d: Path) -> list[dict[str, Any]]:
    return [e for _, e in open_dataset(d).events()]


def test_orders_go_pending_confirmed_then_cancelled_or_refunded_later(busy: Path) -> None:
    events = _events(busy)
    statuses: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for e in events:
        if e["type"] == "CHECKOUT":
            data = e["arbitraryData"]
            statuses[data["reference_id"]].append((data["status"], e["status"], e["sessionRef"]))
    kinds = Counter()
    for seq in statuses.values():
        first, envelope, sale_session = seq[0]
        assert first == "PAYMENT_PENDING"
        if envelope == "FAILED":
            assert len(seq) == 1
            kinds["failed"] += 1
            continue
        assert [s for s, _, _ in seq[1:2]] in ([], ["CONFIRMED"])
        for status, _, session in seq[2:]:
            assert status in ("CANCELLED", "REFUNDED") and session != sale_session
            kinds[status] += 1
    assert kinds["failed"] and kinds["CANCELLED"] and kinds["REFUNDED"]
    adds = [e["arbitraryData"]["product"] for e in events if e["type"] == "ADD"]
    assert max(p["quantity"] for p in adds) > 1 and min(p["quantity"] for p in adds) == 1


def test_failed_events_are_counted_and_the_answer_key_holds(busy: Path, tmp_path: Path) -> None:
    manifest = orjson.loads((busy / "manifest.json").read_bytes())
    failed = Counter(e["type"] for e in _events(busy) if e["status"] == "FAILED")
    assert failed["CHECKOUT"] == failed["CONFIRM"] > 0
    assert manifest["failed"]["byType"] == dict(failed)
    assert manifest["failed"]["events"] == sum(failed.values())
    assert set(manifest["failed"]["reasons"]) == {"CONFIRM", "CHECKOUT"}
    report = validate_dataset(busy)
    assert not report.problems, dict(report.problems)
    # A FAILED count the events do not have is found.
    d = tmp_path / "d"
    shutil.copytree(busy, d)
    manifest["failed"]["byType"]["CHECKOUT"] += 1
    (d / "manifest.json").write_bytes(orjson.dumps(manifest))
    assert "failed" in validate_dataset(d).problems


def test_a_shop_of_two_items_fails_orders_only_as_cdp_can(tmp_path: Path) -> None:
    # A FAILED CONFIRM lists an item its session never added: where the session added both
    # items the shop sells there is none, and the order must not fail (this hung generate).
    data = _smoke(
        addToCartRate=0.9,
        goalAddToCartRate=0.9,
        orders={"failedShare": 1.0},
        basket={"extraItems": 2},
        catalog=[
            {"type": "running_shoes", "name": "Running shoes", "items": 1, "priceRange": [60, 90]},
            {"type": "apparel", "name": "Apparel", "items": 1, "priceRange": [15, 30]},
        ],
    )
    data["flows"] = [{**data["flows"][0], "triggerPages": ["checkout"]}]
    d = make_dataset(tmp_path / "d", parse_profile(data), guests=400)
    report = validate_dataset(d)
    assert not report.problems, dict(report.problems)
    added: defaultdict[str, set[str]] = defaultdict(set)
    outcome: dict[str, str] = {}
    for e in _events(d):
        if e["type"] == "ADD":
            added[e["sessionRef"]].add(e["arbitraryData"]["product"]["item_id"])
        elif e["type"] == "CONFIRM":
            outcome[e["sessionRef"]] = e["status"]
    full = [s for s in outcome if len(added[s]) == 2]
    partial = [s for s in outcome if len(added[s]) < 2]
    assert full and partial  # both kinds of basket, so both checks below bite
    assert all(outcome[s] != "FAILED" for s in full)
    assert any(outcome[s] == "FAILED" for s in partial)


def _edit(src: Path, dst: Path, change: Any) -> Path:
    shutil.copytree(src, dst)
    path = dst / "events.jsonl"
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    change(events)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return dst


def _of(events: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return next(
        e
        for e in events
        if e["type"] == "CHECKOUT"
        and e["arbitraryData"]["status"] == status
        and e["status"] == "PROCESSED"
    )


def _refund_in_sale_session(events: list[dict[str, Any]]) -> None:
    _of(events, "CONFIRMED")["arbitraryData"]["status"] = "REFUNDED"


def _confirmed_twice(events: list[dict[str, Any]]) -> None:
    _of(events, "CANCELLED")["arbitraryData"]["status"] = "CONFIRMED"


def _unknown_status(events: list[dict[str, Any]]) -> None:
    _of(events, "CONFIRMED")["arbitraryData"]["status"] = "SHIPPED"


def _failed_checkout_processed(events: list[dict[str, Any]]) -> None:
    next(e for e in events if e["type"] == "CHECKOUT" and e["status"] == "FAILED")["status"] = (
        "PROCESSED"
    )


def _failed_payment(events: list[dict[str, Any]]) -> None:
    next(e for e in events if e["type"] == "PAYMENT")["status"] = "FAILED"


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        (_refund_in_sale_session, "order status"),
        (_confirmed_twice, "order status"),
        (_unknown_status, "order status"),
        (_failed_checkout_processed, "failed"),
        (_failed_payment, "failed"),
    ],
)
def test_bad_status_sequences_and_failed_miscounts_are_found(
    busy: Path, tmp_path: Path, damage: Any, kind: str
) -> None:
    d = _edit(busy, tmp_path / "d", damage)
    report = validate_dataset(d)
    assert kind in report.problems, dict(report.problems)


def test_a_failed_checkout_is_no_conversion() -> None:
    """FAILED CHECKOUTs carry no goal mask in the facts (the answer key's orders come from the
    sales alone); validate's recount agrees (the test above)."""
    world = World(
        parse_profile(_smoke(orders={"failedShare": 0.5}, basket={"extraItems": 1})), guests=400
    )
    facts = simulate_block(world, 0)
    checkout = facts.type == EventType.CHECKOUT
    assert (facts.failed & checkout).any()
    assert not (facts.goal_mask[facts.failed & checkout]).any()
