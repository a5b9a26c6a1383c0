"""The behaviour figures: measured right on a hand-made dataset, and the default profile's inside
the published ranges."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from generator.dataset.realism import PUBLISHED, measure

T0 = "2025-01-06T10:00:00.000Z"  # a Monday


def _at(seconds: int) -> str:
    minutes, sec = divmod(seconds, 60)
    return f"2025-01-06T10:{minutes:02d}:{sec:02d}.000Z"


def _event(kind: str, session: str, browser: str, t: int, **data: object) -> dict[str, object]:
    return {
        "ref": f"{session}-{t}-{kind}",
        "createdAt": _at(t),
        "type": kind,
        "status": "PROCESSED",
        "channel": "MOBILE_WEB" if browser == "b2" else "WEB",
        "pointOfSale": "shop/ie",
        "browserRef": browser,
        "sessionRef": session,
        "arbitraryData": {"currency": "EUR", **data},
    }


def _write(directory: Path) -> Path:
    product = {"item_id": "A", "quantity": 2, "price": 10.0}
    events = [
        # s1 (guest g1, WEB): a bounce.
        _event("VIEW", "s1", "b1", 0),
        # s2 (guest g2, MOBILE_WEB): three views 30 s apart, two items, a sale, identified.
        _event("VIEW", "s2", "b2", 100),
        _event("VIEW", "s2", "b2", 130),
        _event("ADD", "s2", "b2", 131, product=product),
        _event("ADD", "s2", "b2", 132, product={"item_id": "B", "quantity": 1, "price": 5.0}),
        _event("VIEW", "s2", "b2", 160),
        _event("IDENTITY", "s2", "b2", 161),
        _event("CONFIRM", "s2", "b2", 162, product=[{"item_id": "A"}, {"item_id": "B"}]),
        _event("CHECKOUT", "s2", "b2", 163, reference_id="o1", status="PAYMENT_PENDING"),
        # s3 (guest g1 again, WEB): an abandoned cart, and the sale's refund.
        _event("VIEW", "s3", "b1", 300),
        _event("VIEW", "s3", "b1", 320),
        _event("ADD", "s3", "b1", 321, product=product),
        _event("CHECKOUT", "s3", "b2", 330, reference_id="o1", status="REFUNDED"),
    ]
    events[-1]["sessionRef"] = "s4"  # the refund: its own session, on g2's browser
    failed = _event("CHECKOUT", "s3", "b1", 340, reference_id="o2", status="PURCHASED")
    failed["status"] = "FAILED"
    events.append(failed)
    events.sort(key=lambda e: str(e["createdAt"]))
    guests = [
        {"guestRef": "g1", "type": "VISITOR", "browsers": [{"browserRef": "b1"}]},
        {
            "guestRef": "g2",
            "type": "CUSTOMER",
            "firstSeen": "2025-01-01T00:00:00.000Z",
            "browsers": [{"browserRef": "b2"}],
        },
    ]
    manifest = {"pointsOfSale": {"shop/ie": {"timezone": "Europe/Dublin"}}}
    (directory / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    (directory / "guests.jsonl").write_bytes(b"".join(orjson.dumps(g) + b"\n" for g in guests))
    (directory / "manifest.json").write_bytes(orjson.dumps(manifest))
    return directory


def test_measure_counts_a_hand_made_dataset_right(tmp_path: Path) -> None:
    r = measure(_write(tmp_path))
    f = r.figures
    assert r.counts == {
        "sessions": 4,
        "guests": 2,
        "guestsWithSessions": 2,
        "orders": 1,
        "failedEvents": 1,
    }
    assert f["bounce_rate"] == pytest.approx(1 / 3)  # s1 of the three sessions with a view
    assert f["pages_per_session"] == pytest.approx(6 / 3)
    assert f["pages_per_buying_session"] == 3
    assert f["time_on_page_s"] == pytest.approx((30 + 30 + 20) / 3)
    assert f["session_duration_s"] == pytest.approx((0 + 63 + 21 + 0) / 4)
    # s2 (g2 first seen before the window), s3 (g1's second), s4 (g2 again) are returning.
    assert f["returning_share"] == pytest.approx(3 / 4)
    assert f["sessions_per_guest"] == 2
    assert f["busiest_weekday"] == "Monday"
    assert f["units_per_order"] == 3
    assert f["lines_per_order"] == 2
    assert r.order_values == {"EUR": 25.0}
    assert f["identified_guests"] == pytest.approx(1 / 2)
    assert f["anonymous_sessions"] == pytest.approx(2 / 4)  # s1 and s3: g1 never identifies
    assert f["mobile_share"] == pytest.approx(2 / 4)  # s2 and the refund's s4
    assert f["cancelled_or_refunded"] == 1
    assert f["cart_abandonment"] == pytest.approx(1 / 2)  # s3 of s2 and s3
    assert f["session_conversion"] == pytest.approx(1 / 4)


def test_every_published_figure_names_its_source_and_is_measured(tmp_path: Path) -> None:
    figures = measure(_write(tmp_path)).figures
    for p in PUBLISHED:
        assert p.source and p.published
        assert p.key in figures
        if p.low is not None:
            assert p.high is not None and p.low < p.high


def test_the_default_profile_falls_inside_the_published_ranges(tmp_path: Path) -> None:
    from conftest import make_dataset

    figures = measure(make_dataset(tmp_path / "d", "retail-ireland")).figures
    outside = {
        p.key: figures[p.key]
        for p in PUBLISHED
        if p.low is not None and p.high is not None and not p.low <= figures[p.key] <= p.high
    }
    assert not outside, f"outside the published ranges: {outside}"
    assert figures["busiest_weekday"] == "Monday"
