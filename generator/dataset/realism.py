"""How a dataset's shoppers behave, measured from its files, beside published e-commerce figures.

`measure` reads `events.jsonl` and `guests.jsonl` the way an analyst would (nothing from the
model), so the figures are what a user of the data sees. `PUBLISHED` holds each figure's
published value, its source, and the range the default profile is held to by
`tests/test_realism.py`. `bench/realism.py` prints the two side by side.

Definitions (sessions are `sessionRef`s; a session's guest is its browser's owner in
`guests.jsonl`):
- bounce: sessions with exactly one VIEW, among sessions with a VIEW;
- pages per session: VIEWs per session with a VIEW; buying sessions are those with a sale;
- time on page: the mean gap from a VIEW to the session's next VIEW (exit pages have none);
- session duration: the mean time from a session's first event to its last;
- a sale is the first CHECKOUT of a `reference_id`, stored PROCESSED; its session converts;
- returning: a session whose guest was seen before it, either by an earlier session in the
  data or by a `firstSeen` in `guests.jsonl` before the session started (guests whose history
  began before the window);
- identified guests: guests of type CUSTOMER; an anonymous session is one that ends before its
  guest's first IDENTITY (or whose guest never identifies);
- mobile: sessions on the MOBILE_WEB or MOBILE_APP channel;
- units per order: the quantities of the ADDs of the items the order's CONFIRM lists;
  lines per order: the items it lists; order value: the sum of price x quantity over them;
- cart abandonment: sessions with an ADD and no sale, among sessions with an ADD;
- cancelled or refunded: orders with a later CANCELLED or REFUNDED status, among orders.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from generator.dataset.reader import open_dataset

__all__ = ["PUBLISHED", "Published", "Realism", "measure"]

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MOBILE_CHANNELS = frozenset({"MOBILE_WEB", "MOBILE_APP"})
SALE_STATUSES = frozenset({"PURCHASED", "PAYMENT_PENDING", "CONFIRMED"})
AFTER_SALE = frozenset({"CANCELLED", "REFUNDED"})


@dataclass(frozen=True, slots=True)
class Published:
    """A published figure: what it says, where it comes from, and the range held by a test."""

    key: str
    label: str
    published: str
    source: str
    low: float | None = None
    high: float | None = None
    percent: bool = True


PUBLISHED: tuple[Published, ...] = (
    Published(
        "bounce_rate",
        "bounce rate (one-page sessions)",
        "median 47% (middle half 38-62%)",
        "Contentsquare Digital Experience Benchmark 2024",
        0.35,
        0.60,
    ),
    Published(
        "pages_per_session", "pages per session", "about 5", "Contentsquare 2022", 4.0, 6.5, False
    ),
    Published(
        "pages_per_buying_session",
        "pages per buying session",
        "about 22",
        "Contentsquare 2022",
        percent=False,
    ),
    Published(
        "time_on_page_s",
        "time on page (s)",
        "about 50-60 s",
        "Contentsquare Digital Experience Benchmark 2024",
        percent=False,
    ),
    Published(
        "session_duration_s",
        "session duration (s)",
        "about 5-6 minutes",
        "Contentsquare Digital Experience Benchmark 2024",
        percent=False,
    ),
    Published(
        "sessions_per_guest",
        "sessions per guest in the window",
        "about 1.4 a month",
        "Littledata 2022",
        percent=False,
    ),
    Published(
        "returning_share",
        "returning share of sessions",
        "about half, steady",
        "Monetate; Contentsquare",
        0.35,
        0.65,
    ),
    Published(
        "busiest_weekday",
        "busiest day of the week",
        "Monday busiest, weekend quietest",
        "SaleCycle 2020; Doofinder",
    ),
    Published(
        "units_per_order",
        "items (units) per order",
        "2.87 units per transaction",
        "Dynamic Yield",
        2.0,
        3.5,
        False,
    ),
    Published(
        "average_order_value",
        "average order value",
        "about USD 130",
        "Dynamic Yield",
        percent=False,
    ),
    Published(
        "identified_guests",
        "guests who identify",
        "95-99% of sessions anonymous",
        "Kissmetrics",
        0.0,
        0.20,
    ),
    Published(
        "anonymous_sessions",
        "anonymous share of sessions",
        "95-99%",
        "Kissmetrics",
    ),
    Published(
        "mobile_share",
        "mobile share of sessions",
        "64-78% of sessions mobile",
        "Contentsquare 2021; Salesforce Shopping Index",
        0.55,
        0.80,
    ),
    Published(
        "cancelled_or_refunded",
        "orders cancelled or refunded",
        "about 19% of online sales returned",
        "NRF 2025",
    ),
    Published(
        "cart_abandonment",
        "cart abandonment",
        "about 70%",
        "Baymard Institute",
        0.60,
        0.80,
    ),
    Published(
        "session_conversion",
        "session conversion",
        "2.6-3.2%",
        "Invesp; Dynamic Yield",
        0.015,
        0.04,
    ),
)


@dataclass(slots=True)
class _Session:
    browser: str
    channel: str
    first_ms: int
    last_ms: int = 0
    views: int = 0
    last_view_ms: int = -1
    view_gaps_ms: int = 0
    view_gap_count: int = 0
    adds: dict[str, tuple[float, float]] = field(default_factory=dict)  # item -> (qty, price)
    confirmed: list[str] = field(default_factory=list)
    sale: bool = False
    currency: str = ""


@dataclass(frozen=True, slots=True)
class Realism:
    """The measured figures (`figures`, keyed as in PUBLISHED) and the counts behind them."""

    figures: dict[str, Any]
    counts: dict[str, int]
    weekday_shares: dict[str, float]
    order_values: dict[str, float]  # currency -> average order value

    def as_dict(self) -> dict[str, Any]:
        return {
            "figures": self.figures,
            "counts": self.counts,
            "weekdayShares": self.weekday_shares,
            "averageOrderValue": self.order_values,
        }


def _ms(stamp: str) -> int:
    return int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def measure(directory: Path) -> Realism:
    """The behaviour figures of the dataset in `directory`."""
    dataset = open_dataset(directory)
    manifest = dataset.manifest()
    zones = {
        name: ZoneInfo(pos.get("timezone", "UTC"))
        for name, pos in manifest.get("pointsOfSale", {}).items()
    }
    owner: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    customers = guests = 0
    for _, line in dataset.raw_guests():
        guest = orjson.loads(line)
        guests += 1
        customers += guest.get("type") == "CUSTOMER"
        for browser in guest.get("browsers", ()):
            owner[browser["browserRef"]] = guest["guestRef"]
        if guest.get("firstSeen"):
            first_seen[guest["guestRef"]] = _ms(guest["firstSeen"])

    sessions: dict[str, _Session] = {}
    session_pos: dict[str, str] = {}
    first_identity: dict[str, int] = {}
    orders: dict[str, set[str]] = {}
    failed = 0
    for _, line in dataset.raw_events():
        event = orjson.loads(line)
        if event.get("status") == "FAILED":
            failed += 1
            continue
        ref = event.get("sessionRef")
        if not ref:
            continue
        at = _ms(event["createdAt"])
        session = sessions.get(ref)
        if session is None:
            session = sessions[ref] = _Session(event["browserRef"], event.get("channel", ""), at)
            session_pos[ref] = event.get("pointOfSale", "")
        session.last_ms = at
        kind = event["type"]
        data = event.get("arbitraryData") or {}
        if kind == "VIEW":
            session.views += 1
            if session.last_view_ms >= 0:
                session.view_gaps_ms += at - session.last_view_ms
                session.view_gap_count += 1
            session.last_view_ms = at
        elif kind == "ADD":
            product = data.get("product") or {}
            item = str(product.get("item_id"))
            quantity, _ = session.adds.get(item, (0.0, 0.0))
            session.adds[item] = (
                quantity + float(product.get("quantity", 1)),
                float(product.get("price", 0.0)),
            )
        elif kind == "CONFIRM":
            session.confirmed = [str(p.get("item_id")) for p in data.get("product") or ()]
        elif kind == "CHECKOUT":
            reference = str(data.get("reference_id"))
            status = str(data.get("status", ""))
            if reference not in orders:
                orders[reference] = set()
                if status in SALE_STATUSES:
                    session.sale = True
                    session.currency = str(data.get("currency", ""))
            orders[reference].add(status)
        elif kind == "IDENTITY":
            guest_ref = owner.get(event["browserRef"], event["browserRef"])
            first_identity.setdefault(guest_ref, at)

    return _figures(
        sessions,
        session_pos,
        zones,
        owner,
        first_seen,
        first_identity,
        orders,
        guests,
        customers,
        failed,
    )


def _figures(
    sessions: dict[str, _Session],
    session_pos: dict[str, str],
    zones: dict[str, ZoneInfo],
    owner: dict[str, str],
    first_seen: dict[str, int],
    first_identity: dict[str, int],
    orders: dict[str, set[str]],
    guests: int,
    customers: int,
    failed: int,
) -> Realism:
    viewed = [s for s in sessions.values() if s.views]
    buying = [s for s in viewed if s.sale]
    with_add = [s for s in sessions.values() if s.adds]
    sales = [s for s in sessions.values() if s.sale and s.confirmed]
    gaps = sum(s.view_gap_count for s in viewed)

    # Returning: the guest was seen before (an earlier session here, or a firstSeen before).
    returning = 0
    seen: set[str] = set()
    weekdays: Counter[str] = Counter()
    anonymous = 0
    for ref, s in sorted(sessions.items(), key=lambda kv: kv[1].first_ms):
        guest = owner.get(s.browser, s.browser)
        if guest in seen or first_seen.get(guest, s.first_ms) < s.first_ms:
            returning += 1
        seen.add(guest)
        zone = zones.get(session_pos[ref], ZoneInfo("UTC"))
        local = dt.datetime.fromtimestamp(s.first_ms / 1000, tz=zone)
        weekdays[WEEKDAYS[local.weekday()]] += 1
        if first_identity.get(guest, 1 << 62) > s.last_ms:
            anonymous += 1

    units = [sum(s.adds.get(i, (1.0, 0.0))[0] for i in s.confirmed) for s in sales]
    values: dict[str, list[float]] = {}
    for s in sales:
        lines = [s.adds.get(i, (1.0, 0.0)) for i in s.confirmed]
        value = sum(quantity * price for quantity, price in lines)
        values.setdefault(s.currency, []).append(value)
    order_values = {c: round(sum(v) / len(v), 2) for c, v in sorted(values.items())}
    total = len(sessions)
    busiest = max(WEEKDAYS, key=lambda d: (weekdays[d], -WEEKDAYS.index(d))) if total else ""

    def ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    figures: dict[str, Any] = {
        "bounce_rate": ratio(sum(s.views == 1 for s in viewed), len(viewed)),
        "pages_per_session": ratio(sum(s.views for s in viewed), len(viewed)),
        "pages_per_buying_session": ratio(sum(s.views for s in buying), len(buying)),
        "time_on_page_s": ratio(sum(s.view_gaps_ms for s in viewed), gaps) / 1000,
        "session_duration_s": ratio(sum(s.last_ms - s.first_ms for s in sessions.values()), total)
        / 1000,
        "sessions_per_guest": ratio(total, len(seen)),
        "returning_share": ratio(returning, total),
        "busiest_weekday": busiest,
        "units_per_order": ratio(sum(units), len(units)),
        "lines_per_order": ratio(sum(len(s.confirmed) for s in sales), len(sales)),
        "average_order_value": next(iter(order_values.values()), 0.0),
        "identified_guests": ratio(customers, guests),
        "anonymous_sessions": ratio(anonymous, total),
        "mobile_share": ratio(sum(s.channel in MOBILE_CHANNELS for s in sessions.values()), total),
        "cancelled_or_refunded": ratio(
            sum(bool(v & AFTER_SALE) for v in orders.values()), len(orders)
        ),
        "cart_abandonment": ratio(sum(not s.sale for s in with_add), len(with_add)),
        "session_conversion": ratio(sum(s.sale for s in sessions.values()), total),
    }
    counts = {
        "sessions": total,
        "guests": guests,
        "guestsWithSessions": len(seen),
        "orders": len(orders),
        "failedEvents": failed,
    }
    shares = {d: round(ratio(weekdays[d], total), 4) for d in WEEKDAYS}
    return Realism(figures, counts, shares, order_values)
