"""Sessions, orders and guests as entities, derived once from a dataset's ordered stored events.

The data lake export and the Batch files both read a dataset through `Entities`: it walks the
events in file order ((createdAt, ref)), keeps state only for sessions still open and one small
record per guest, and hands out each event, each order (placed by its sale's CHECKOUT: its
items are the ADDs of the session before it) and each session once it is over. Stop it at a
cutoff (a snapshot's midnight) and the sessions still open are handed out as OPEN. An order is
handed out with its status as of the cutoff: CONFIRMED later in its session, or CANCELLED or
REFUNDED after the sale (found by a first pass over the CHECKOUT lines alone: those changes are
few). FAILED events are handed out as events and change nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from generator.dataset.reader import Dataset
from generator.events.stored import parse_iso_ms
from generator.vocabulary import AFTER_SALE_STATUSES, SALE_STATUSES

__all__ = [
    "Entities",
    "GuestState",
    "Order",
    "OrderItem",
    "SessionEntity",
    "StoredEvent",
    "cart_type",
    "duration_minutes_seconds",
    "ms_of",
]

# How often (in events) sessions past their timeout are handed out: often enough that the
# open set stays small, rarely enough that the sweep costs nothing.
_SWEEP_EVERY = 4096


@dataclass(slots=True)
class StoredEvent:
    """One stored event with what the entities need of it already pulled out."""

    line: int
    created_ms: int
    body: dict[str, Any]
    guest_ref: str


@dataclass(slots=True)
class OrderItem:
    ref: str  # the ADD event's ref: one item per ADD
    created_ms: int
    item_id: str
    product_id: str
    name: str
    type: str
    quantity: int
    price: float
    currency: str


@dataclass(slots=True)
class Order:
    ref: str  # the order's reference id, as the events carry it
    guest_ref: str
    session_ref: str
    checkout_ref: str
    ordered_ms: int
    currency: str
    point_of_sale: str
    channel: str
    status: str
    items: list[OrderItem]
    pay_type: str | None = None  # from the session's PAYMENT, if one came before the cut
    modified_ms: int = 0  # its latest status change (its sale's, or a later one) before the cut

    @property
    def price(self) -> float:
        return round(sum(i.price * i.quantity for i in self.items), 2)


@dataclass(slots=True)
class SessionEntity:
    ref: str
    guest_ref: str
    browser_ref: str
    channel: str
    point_of_sale: str
    currency: str
    language: str
    started_ms: int
    ended_ms: int
    status: str = "OPEN"  # OPEN or CLOSED
    counts: dict[str, int] = field(default_factory=dict)  # events by type
    cart: dict[str, OrderItem] = field(default_factory=dict)  # ADD ref -> item, this order
    orders: list[Order] = field(default_factory=list)
    value: float | None = None
    flows: list[str] = field(default_factory=list)  # flow refs run in the session, first seen

    @property
    def cart_type(self) -> str:
        return cart_type(self.counts, len(self.orders))


@dataclass(slots=True)
class GuestState:
    """What the stream says of one guest up to the cut (the rest comes from guests.jsonl)."""

    first_ms: int
    last_ms: int
    identified_ms: int | None = None
    sessions: int = 0
    orders: int = 0
    last_point_of_sale: str = ""


def cart_type(counts: dict[str, int], orders: int) -> str:
    """CDP's cart type: CONVERTED (an order placed), ABANDONED (an ADD, no order), BROWSED."""
    if orders:
        return "CONVERTED"
    if counts.get("ADD"):
        return "ABANDONED"
    return "BROWSED"


def duration_minutes_seconds(ms: int) -> float:
    """A duration as CDP's minutes.seconds (44 min 55 s is 44.55), seconds truncated."""
    seconds = max(0, ms) // 1000
    return float(f"{seconds // 60}.{seconds % 60:02d}")


class Entities:
    """One pass over a dataset's events up to `cutoff_ms` (exclusive; None for all of them).

    `keep(guest_ref)` picks the guests this pass is for (a part of the export); the others'
    events are read and skipped. Callbacks get every kept event, order and finished session.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        cutoff_ms: int | None = None,
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self.dataset = dataset
        self.cutoff_ms = cutoff_ms
        self.keep = keep
        manifest = dataset.manifest()
        self.client_key: str = manifest["clientKey"]
        self.timeout_ms = {
            name: int(p["sessionTimeoutMinutes"]) * 60_000
            for name, p in manifest["pointsOfSale"].items()
        }
        self.guest_of_browser: dict[str, str] = {}
        self.guest_records: list[tuple[str, bytes]] = []
        for _, record in dataset.guests():
            ref = record["guestRef"]
            raw = orjson.dumps(record)
            if keep is not None and not keep(ref):
                continue
            self.guest_records.append((ref, raw))
            for b in record["browsers"]:
                self.guest_of_browser[b["browserRef"]] = ref
        self.guests: dict[str, GuestState] = {}
        self.identity: dict[str, dict[str, Any]] = {}  # guest -> IDENTITY's arbitraryData
        self.events_read = 0
        self._after_sale: dict[str, tuple[str, int]] | None = None

    def run(
        self,
        on_event: Callable[[StoredEvent], None],
        on_order: Callable[[Order], None],
        on_session: Callable[[SessionEntity], None],
    ) -> None:
        open_sessions: dict[str, SessionEntity] = {}
        now = 0
        for n, event in enumerate(self._events()):
            now = event.created_ms
            if n % _SWEEP_EVERY == 0:
                self._sweep(open_sessions, now, on_order, on_session)
            self._one(event, open_sessions, on_event, on_order, on_session)
        end = self.cutoff_ms if self.cutoff_ms is not None else None
        for s in list(open_sessions.values()):
            over = end is None or s.ended_ms + self.timeout_ms.get(s.point_of_sale, 0) <= end
            if over:
                s.status = "CLOSED"
            self._finish(s, on_order, on_session)
        open_sessions.clear()

    def after_sale(self) -> dict[str, tuple[str, int]]:
        """reference_id -> (CANCELLED or REFUNDED, when) for the changes before the cutoff:
        a pass over the CHECKOUT lines alone."""
        if self._after_sale is None:
            found: dict[str, tuple[str, int]] = {}
            for _, raw in self.dataset.raw_events():
                if b'"type":"CHECKOUT"' not in raw or not (
                    b'"status":"CANCELLED"' in raw or b'"status":"REFUNDED"' in raw
                ):
                    continue
                at = raw.index(b'"createdAt":"') + 13
                created = ms_of(raw[at : at + 24])
                if self.cutoff_ms is not None and created >= self.cutoff_ms:
                    break
                body = _loads(raw)
                data = body.get("arbitraryData") or {}
                if body.get("status") == "PROCESSED" and data.get("status") in AFTER_SALE_STATUSES:
                    found.setdefault(str(data.get("reference_id")), (data["status"], created))
            self._after_sale = found
        return self._after_sale

    def _finish(
        self,
        s: SessionEntity,
        on_order: Callable[[Order], None],
        on_session: Callable[[SessionEntity], None],
    ) -> None:
        """A session is handed out with its orders (held until then: a PAYMENT after the
        CHECKOUT still tells the order's payment type), each with its status as of the cut."""
        changes = self.after_sale() if s.orders else {}
        for order in s.orders:
            change = changes.get(order.ref)
            if change is not None:
                order.status, order.modified_ms = change
            on_order(order)
        on_session(s)

    def _events(self) -> Iterator[StoredEvent]:
        cutoff = self.cutoff_ms
        keep = self.keep
        guest_of = self.guest_of_browser
        for line, raw in self.dataset.raw_events():
            # createdAt sits at a fixed place in every stored line: compare it before parsing.
            at = raw.index(b'"createdAt":"') + 13
            created = ms_of(raw[at : at + 24])
            if cutoff is not None and created >= cutoff:
                return
            self.events_read += 1
            body = _loads(raw)
            guest = guest_of.get(body["browserRef"])
            if guest is None:
                if keep is not None:
                    continue  # another part's guest
                guest = ""
            yield StoredEvent(line, created, body, guest)

    def _sweep(
        self,
        open_sessions: dict[str, SessionEntity],
        now: int,
        on_order: Callable[[Order], None],
        on_session: Callable[[SessionEntity], None],
    ) -> None:
        done = [
            ref
            for ref, s in open_sessions.items()
            if s.ended_ms + self.timeout_ms.get(s.point_of_sale, 0) < now
        ]
        for ref in done:
            s = open_sessions.pop(ref)
            s.status = "CLOSED"
            self._finish(s, on_order, on_session)

    def _one(
        self,
        event: StoredEvent,
        open_sessions: dict[str, SessionEntity],
        on_event: Callable[[StoredEvent], None],
        on_order: Callable[[Order], None],
        on_session: Callable[[SessionEntity], None],
    ) -> None:
        body = event.body
        kind = body["type"]
        data = body.get("arbitraryData") or {}
        sref = body["sessionRef"]
        s = open_sessions.get(sref)
        if s is None:
            s = open_sessions[sref] = SessionEntity(
                ref=sref,
                guest_ref=event.guest_ref,
                browser_ref=body["browserRef"],
                channel=body["channel"],
                point_of_sale=body["pointOfSale"],
                currency=data.get("currency", ""),
                language=data.get("language", ""),
                started_ms=event.created_ms,
                ended_ms=event.created_ms,
            )
        s.ended_ms = event.created_ms
        s.counts[kind] = s.counts.get(kind, 0) + 1
        if not s.currency and "currency" in data:
            s.currency, s.language = data["currency"], data.get("language", "")
        g = self.guests.get(event.guest_ref)
        if g is None:
            g = self.guests[event.guest_ref] = GuestState(event.created_ms, event.created_ms)
        g.last_ms = event.created_ms
        g.last_point_of_sale = s.point_of_sale
        if s.counts[kind] == 1 and len(s.counts) == 1:
            g.sessions += 1
        on_event(event)
        if body.get("status") == "FAILED":
            pass  # CDP did not process it: no cart, no order
        elif kind == "ADD":
            p = data["product"]
            s.cart[body["ref"]] = OrderItem(
                ref=body["ref"],
                created_ms=event.created_ms,
                item_id=p["item_id"],
                product_id=p.get("productId", p["item_id"]),
                name=p.get("name", ""),
                type=p.get("type", ""),
                quantity=int(p.get("quantity", 1)),
                price=float(p.get("price", 0.0)),
                currency=p.get("currency", s.currency),
            )
        elif kind == "CLEAR_CART":
            s.cart.clear()
        elif kind == "CHECKOUT" and data.get("status") not in SALE_STATUSES:
            # A later status of an order: CONFIRMED in its session (CANCELLED or REFUNDED,
            # in a later one, come from after_sale when the order is handed out).
            if s.orders and s.orders[-1].ref == data.get("reference_id"):
                s.orders[-1].status = data["status"]
                s.orders[-1].modified_ms = event.created_ms
        elif kind == "CHECKOUT":
            order = Order(
                ref=data["reference_id"],
                guest_ref=event.guest_ref,
                session_ref=sref,
                checkout_ref=body["ref"],
                ordered_ms=event.created_ms,
                currency=s.currency,
                point_of_sale=s.point_of_sale,
                channel=s.channel,
                status=data.get("status", "PURCHASED"),
                items=list(s.cart.values()),
                modified_ms=event.created_ms,
            )
            s.cart = {}
            s.orders.append(order)
            s.value = round((s.value or 0.0) + order.price, 2)
            g.orders += 1
        elif kind == "PAYMENT":
            if s.orders:
                s.orders[-1].pay_type = data.get("pay_type")
        elif kind == "IDENTITY":
            if g.identified_ms is None:
                g.identified_ms = event.created_ms
            self.identity[event.guest_ref] = data
        elif kind == "TRACKING":
            flow = data["flowExecution"]["flowRef"]
            if flow not in s.flows:
                s.flows.append(flow)
        if kind == "FORCE_CLOSE":
            s.status = "CLOSED"
            self._finish(open_sessions.pop(sref), on_order, on_session)


_DAYS: dict[bytes, int] = {}


def ms_of(text: bytes) -> int:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` as epoch ms (parse_iso_ms, with the day's start cached)."""
    day = _DAYS.get(text[:10])
    if day is None:
        day = _DAYS[text[:10]] = parse_iso_ms(text[:10].decode() + "T00:00:00.000Z")
    return day + (
        (int(text[11:13]) * 60 + int(text[14:16])) * 60_000
        + int(text[17:19]) * 1000
        + int(text[20:23])
    )


def _loads(raw: bytes) -> dict[str, Any]:
    value = orjson.loads(raw)
    assert isinstance(value, dict)
    return value
