"""The invariants `validate` holds a dataset's events to: small checks fed one event at a time.

Each check sees every event the stored-event checker vouched for, in file order, as a `Seen`:
the event with its guest (an index into the `GuestBook`) and its live `Session` as it was before
the event (the `SessionBook` applies the event after every check has seen it). A check keeps
state only per open session (`Session.notes`, dropped when the session ends) and per guest
(arrays indexed by guest), never per event, so memory stays flat however long the file; what
would grow with the events (refs that must be unique) goes to a `RepeatFinder` on disk.

Adding an invariant: subclass `Check`, implement `event` (and `session_ended`, `finish` as
needed), and add it to `default_checks`, or pass it in `validate_dataset(checks=...)`.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from generator.dataset.spill import RepeatFinder, Spill
from generator.events.stored import UUID
from generator.vocabulary import (
    AFTER_SALE_STATUSES,
    EMAIL_DOMAINS,
    FAILURE_REASONS,
    ORDER_STATUSES,
    SALE_STATUSES,
)

__all__ = [
    "AnswerKey",
    "Carts",
    "Check",
    "Failures",
    "GuestBook",
    "Guests",
    "OrderStatuses",
    "Problems",
    "Refs",
    "Seen",
    "Session",
    "SessionBook",
    "default_checks",
]

_SWEEP = 4096  # events between sweeps of the sessions past their timeout


@dataclass(frozen=True, slots=True)
class VariantOutcome:
    exposures: int
    exposed_guests: int
    converted_guests: int


_NEVER = np.iinfo(np.int64).max


class Problems(Protocol):
    """Where checks say what they found (a Report is one)."""

    def add(self, kind: str, detail: str) -> None: ...


@dataclass(slots=True, eq=False)
class Session:
    """An open session: what its events so far say, and room for checks' own notes."""

    ref: str
    browser: str
    guest: int
    pos: str
    channel: str
    timeout_ms: int
    last_ms: int
    closed: bool = False  # by FORCE_CLOSE
    cart: set[str] = field(default_factory=set)  # "item_id\x1fPRODUCT_TYPE" ADDed since a clear
    confirmed: bool = False  # a PROCESSED CONFIRM
    confirm_failed: bool = False  # a FAILED one
    checked_out: bool = False  # a PROCESSED sale CHECKOUT
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class Seen:
    """One vouched-for event: its fields, its guest, and its session before it."""

    line: int
    event: dict[str, Any]
    type: str
    created_ms: int
    guest: int
    session: Session
    opened: bool  # the first event of its session

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.event["arbitraryData"]
        return data

    @property
    def where(self) -> str:
        return f"line {self.line}"

    @property
    def failed(self) -> bool:
        """Stored FAILED: CDP did not process it, so it changes no cart and places no order."""
        return bool(self.event["status"] == "FAILED")

    @property
    def sale(self) -> bool:
        """A PROCESSED CHECKOUT whose status places an order (SALE_STATUSES)."""
        return (
            self.type == "CHECKOUT" and not self.failed and self.data.get("status") in SALE_STATUSES
        )


class Check:
    """An invariant over the events. Every method is optional."""

    def event(self, seen: Seen) -> None:
        """One event, in file order (its session as it was before it)."""

    def session_ended(self, session: Session) -> None:
        """A session is past its timeout (or the file ended): its notes go with it."""

    def finish(self, report: Problems) -> None:
        """After the last event: report what the whole file says."""


# What only an identified guest has told: an anonymous VISITOR carries none of it.
_PERSONAL = frozenset({"firstName", "lastName", "name", "email"})


class GuestBook:
    """guests.jsonl as what the checks need per guest: ref, type, point of sale, browsers."""

    def __init__(self) -> None:
        self.refs: list[str] = []
        self.customer: list[bool] = []
        self.pos: list[str | None] = []
        self.browser_guest: dict[str, int] = {}
        self.browser_owner: dict[str, str] = {}  # browserRef -> guestRef (the same strings)

    @classmethod
    def load(cls, lines: Iterator[tuple[int, dict[str, Any]]], report: Problems) -> GuestBook:
        book = cls()
        seen_refs: set[int] = set()  # hashes, for "listed twice"
        for line, guest in lines:
            where = f"guests.jsonl line {line}"
            ref = guest.get("guestRef")
            if not isinstance(ref, str) or not UUID.match(ref):
                report.add("guest ref", f"{where}: bad guestRef {ref!r}")
                continue
            if hash(ref) in seen_refs:
                report.add("guest ref", f"{where}: guest {ref} listed twice")
            seen_refs.add(hash(ref))
            index = len(book.refs)
            book.refs.append(ref)
            book.customer.append(guest.get("type") == "CUSTOMER")
            pos = guest.get("pointOfSale")
            book.pos.append(pos if isinstance(pos, str) else None)
            if guest.get("type") == "CUSTOMER":
                email = guest.get("email", "")
                if not isinstance(email, str) or email.rsplit("@", 1)[-1] not in EMAIL_DOMAINS:
                    report.add("email domain", f"{where}: {email!r} not on a reserved domain")
            elif guest.get("type") == "VISITOR":
                named = sorted(_PERSONAL & guest.keys())
                if named:
                    report.add("anonymous visitor", f"{where}: a VISITOR with {', '.join(named)}")
            else:
                report.add("guest type", f"{where}: type {guest.get('type')!r}")
            for b in guest.get("browsers", []):
                bref = b.get("browserRef") if isinstance(b, dict) else None
                if not isinstance(bref, str):
                    report.add("browser", f"{where}: a browser without browserRef")
                    continue
                if bref in book.browser_guest:
                    report.add("browser", f"{where}: browser {bref} has two guests")
                book.browser_guest[bref] = index
                book.browser_owner[bref] = ref
        return book

    def __len__(self) -> int:
        return len(self.refs)

    def ref(self, guest: int) -> str:
        return self.refs[guest]


class SessionBook:
    """The open sessions, one per browser at a time, closed by inactivity or FORCE_CLOSE; it
    reports what breaks them (identity, overlap, gap, events after FORCE_CLOSE) and forgets a
    session once it is past its timeout. A session that comes back after that is a gap too:
    found on disk at the end (`finish`)."""

    def __init__(
        self, timeouts: Mapping[str, int], checks: list[Check], spill: Spill, report: Problems
    ) -> None:
        self._timeouts = timeouts
        self._checks = checks
        self._report = report
        self._open: dict[str, Session] = {}
        self._browser_session: dict[str, str] = {}  # a browser's latest session
        self._opened = spill.finder()
        self._events = 0

    def see(self, line: int, event: dict[str, Any], created_ms: int, guest: int) -> Seen:
        self._events += 1
        if self._events % _SWEEP == 0:
            self._sweep(created_ms)
        browser, ref = event["browserRef"], event["sessionRef"]
        pos, channel = event["pointOfSale"], event["channel"]
        where = f"line {line}"
        s = self._open.get(ref)
        if s is None:
            prev_ref = self._browser_session.get(browser)
            prev = self._open.get(prev_ref) if prev_ref is not None else None
            if (
                prev is not None
                and not prev.closed
                and created_ms - prev.last_ms <= prev.timeout_ms
            ):
                self._report.add(
                    "session overlap",
                    f"{where}: session {ref} opens while {prev_ref} is still open",
                )
            s = self._open[ref] = Session(
                ref, browser, guest, pos, channel, self._timeouts[pos], created_ms
            )
            self._browser_session[browser] = ref
            self._opened.add(ref, line)
            return Seen(line, event, event["type"], created_ms, guest, s, True)
        if (s.browser, s.pos, s.channel) != (browser, pos, channel):
            self._report.add(
                "session identity", f"{where}: session {ref} changes browser/POS/channel"
            )
        if self._browser_session.get(browser) != ref:
            self._report.add("session overlap", f"{where}: session {ref} reopened")
        if s.closed:
            self._report.add("force close", f"{where}: event after FORCE_CLOSE in {ref}")
        if created_ms - s.last_ms > s.timeout_ms:
            self._report.add("session gap", f"{where}: gap over the timeout inside {ref}")
        return Seen(line, event, event["type"], created_ms, guest, s, False)

    def apply(self, seen: Seen) -> None:
        """The event's effect on its session, once every check has seen the session before."""
        s, etype = seen.session, seen.type
        s.last_ms = seen.created_ms
        if seen.failed:
            if etype == "CONFIRM":
                s.confirm_failed = True
            return
        if etype == "ADD":
            product = seen.data.get("product", {})
            s.cart.add(f"{product.get('item_id')}\x1f{product.get('type', '')}")
        elif etype == "CONFIRM":
            s.confirmed = True
        elif seen.sale:
            s.checked_out = True
            s.cart = set()
        elif etype == "CLEAR_CART":
            s.cart = set()
        elif etype == "FORCE_CLOSE":
            s.closed = True

    def _sweep(self, now_ms: int) -> None:
        ended = [s for s in self._open.values() if now_ms - s.last_ms > s.timeout_ms]
        for s in ended:
            del self._open[s.ref]
            if self._browser_session.get(s.browser) == s.ref:
                del self._browser_session[s.browser]
            for check in self._checks:
                check.session_ended(s)

    def finish(self, report: Problems) -> None:
        self._sweep(_NEVER)
        for line in self._opened.repeats():
            report.add(
                "session gap",
                f"line {line}: its session had ended (past the timeout, or FORCE_CLOSE) and "
                "comes back",
            )


class Carts(Check):
    """A PROCESSED CONFIRM lists only items ADDed in its session, a FAILED one some item never
    added (why CDP failed it); a sale's CHECKOUT follows a PROCESSED CONFIRM, a FAILED CHECKOUT
    a FAILED CONFIRM; PAYMENT follows a sale's CHECKOUT. Only CONFIRM and CHECKOUT are ever
    stored FAILED."""

    def __init__(self, report: Problems) -> None:
        self._report = report

    def event(self, seen: Seen) -> None:
        s, where, add = seen.session, seen.where, self._report.add
        if seen.failed and seen.type not in FAILURE_REASONS:
            add("failed", f"{where}: a {seen.type} stored FAILED (only CONFIRM and CHECKOUT fail)")
        if seen.type == "CONFIRM":
            items = {str(p.get("item_id")) for p in seen.data.get("product", [])}
            added = {c.split("\x1f")[0] for c in s.cart}
            if seen.failed and items <= added:
                add("failed", f"{where}: FAILED CONFIRM lists only items ADDed in its session")
            elif not seen.failed and not items <= added:
                add("cart", f"{where}: CONFIRM lists items never ADDed in its session")
        elif seen.type == "CHECKOUT" and seen.failed:
            if not s.confirm_failed:
                add("failed", f"{where}: FAILED CHECKOUT without a FAILED CONFIRM before it")
        elif seen.sale and not s.confirmed:
            add("cart", f"{where}: CHECKOUT without a CONFIRM before it in the session")
        elif seen.type == "PAYMENT" and not s.checked_out:
            add("cart", f"{where}: PAYMENT without a CHECKOUT before it in the session")


class Failures(Check):
    """The manifest's `failed` counts (by type) are the events stored FAILED."""

    def __init__(self, manifest: Mapping[str, Any], report: Problems) -> None:
        failed = manifest.get("failed", {})
        self._want = dict(failed.get("byType", {})) if isinstance(failed, dict) else {}
        self._total = failed.get("events", 0) if isinstance(failed, dict) else 0
        self._report = report
        self._got: Counter[str] = Counter()

    def event(self, seen: Seen) -> None:
        if seen.failed:
            self._got[seen.type] += 1

    def finish(self, report: Problems) -> None:
        got = {t: n for t, n in sorted(self._got.items())}
        if got != self._want or sum(got.values()) != self._total:
            report.add(
                "failed",
                f"manifest counts {self._total} FAILED events {self._want}, the events "
                f"have {sum(got.values())} {got}",
            )


_SALE, _CONFIRMED, _AFTER = 1, 2, 3  # an order's state, as OrderStatuses follows it


class OrderStatuses(Check):
    """Every CHECKOUT's status is one of CDP's, and each order's statuses come in order: its
    sale first (PURCHASED or PAYMENT_PENDING, once), CONFIRMED only in the sale's session after
    a PAYMENT, CANCELLED or REFUNDED at most once, after the sale and in a later session, and
    nothing after that. One small state per order placed (orders are a small share of events)."""

    def __init__(self, report: Problems) -> None:
        self._report = report
        self._orders: dict[str, tuple[int, str]] = {}  # reference_id -> (state, sale session)

    def event(self, seen: Seen) -> None:
        if seen.type != "CHECKOUT" or seen.failed:
            return
        where, add = seen.where, self._report.add
        status = seen.data.get("status")
        ref = str(seen.data.get("reference_id"))
        if status not in ORDER_STATUSES:
            add("order status", f"{where}: CHECKOUT status {status!r} is not one of CDP's")
            return
        state, session = self._orders.get(ref, (0, ""))
        if status in SALE_STATUSES:
            if state:
                add("order status", f"{where}: order {ref} is placed a second time")
            self._orders[ref] = (_SALE, seen.session.ref)
        elif status == "CONFIRMED":
            if state != _SALE or session != seen.session.ref:
                add(
                    "order status",
                    f"{where}: order {ref} CONFIRMED but not just placed in this session",
                )
            elif not seen.session.notes.get("orders.paid"):
                add("order status", f"{where}: order {ref} CONFIRMED before its PAYMENT")
            self._orders[ref] = (_CONFIRMED, session)
        elif status in AFTER_SALE_STATUSES:
            if state not in (_SALE, _CONFIRMED):
                add(
                    "order status",
                    f"{where}: order {ref} {status} without a sale before it"
                    if not state
                    else f"{where}: order {ref} {status} after it was already cancelled or "
                    "refunded",
                )
            elif session == seen.session.ref:
                add("order status", f"{where}: order {ref} {status} in the sale's own session")
            self._orders[ref] = (_AFTER, session)

    def session_ended(self, session: Session) -> None:
        return None


class _Paid(Check):
    """Notes a session's PAYMENT for OrderStatuses (under its own key: checks share notes)."""

    def event(self, seen: Seen) -> None:
        if seen.type == "PAYMENT":
            seen.session.notes["orders.paid"] = True


class Refs(Check):
    """Events in (createdAt, ref) order, every ref once (the refs go to disk)."""

    def __init__(self, spill: Spill, report: Problems) -> None:
        self._report = report
        self._last: tuple[str, str] = ("", "")
        self._refs: RepeatFinder = spill.finder()

    def event(self, seen: Seen) -> None:
        key = (seen.event["createdAt"], seen.event["ref"])
        if key <= self._last:
            self._report.add(
                "order", f"{seen.where}: not after the previous event by (createdAt, ref)"
            )
        self._last = key
        self._refs.add(key[1], seen.line)

    def finish(self, report: Problems) -> None:
        lines = list(self._refs.repeats())
        if lines:
            report.add(
                "ref",
                f"{len(lines)} event refs appear more than once (again at line "
                f"{', '.join(map(str, sorted(lines)[:5]))})",
            )


class Guests(Check):
    """Every guest listed has an event; CUSTOMER exactly when identified; its point of sale that
    of its sessions; IDENTITY emails on reserved domains."""

    def __init__(self, guests: GuestBook, report: Problems) -> None:
        self._guests = guests
        self._report = report
        self.seen = np.zeros(len(guests), dtype=bool)
        self._identified = np.zeros(len(guests), dtype=bool)
        self._elsewhere: dict[int, Counter[str]] = defaultdict(Counter)  # guest -> other POS

    def event(self, seen: Seen) -> None:
        g = seen.guest
        self.seen[g] = True
        if seen.opened and seen.session.pos != self._guests.pos[g]:
            self._elsewhere[g][seen.session.pos] += 1
        if seen.type == "IDENTITY":
            self._identified[g] = True
            email = str(seen.data.get("email", ""))
            if email.rsplit("@", 1)[-1] not in EMAIL_DOMAINS:
                self._report.add(
                    "email domain", f"{seen.where}: {email!r} not on a reserved domain"
                )

    def finish(self, report: Problems) -> None:
        book = self._guests
        for g in np.flatnonzero(~self.seen).tolist():
            report.add("guest", f"guest {book.ref(g)} is listed but has no event")
        wrong = np.flatnonzero(self._identified != np.array(book.customer, dtype=bool))
        for g in wrong.tolist():
            is_, wants = ("CUSTOMER", "VISITOR") if book.customer[g] else ("VISITOR", "CUSTOMER")
            report.add("guest type", f"guest {book.ref(g)} is {is_}, should be {wants}")
        for g, by_pos in self._elsewhere.items():
            report.add(
                "guest pointOfSale",
                f"guest {book.ref(g)}: guests.jsonl says point of sale {book.pos[g]!r}, "
                f"{sum(by_pos.values())} of its sessions are at "
                f"{', '.join(map(repr, sorted(by_pos)))}",
            )


class AnswerKey(Check):
    """One variant per guest and flow (sticky), and the answer key recomputed as the events go:
    per flow and guest, the first exposure's time and variant, and whether an order holding
    the flow's goal followed within the attribution window (the definition in answer_key)."""

    def __init__(self, manifest: Mapping[str, Any], guests: int, report: Problems) -> None:
        flows: dict[str, Any] = manifest.get("flows", {})
        self._report = report
        self._flows = flows
        self._flow = {name: i for i, name in enumerate(flows)}
        self._variant = [
            {str(v["flowVariantRef"]): i for i, v in enumerate(f["variants"])}
            for f in flows.values()
        ]
        self._window = [int(f["attributionHours"]) * 3_600_000 for f in flows.values()]
        self._goal: dict[str, int] = defaultdict(int)  # PRODUCT_TYPE -> mask of flows
        for i, f in enumerate(flows.values()):
            # Goals as the manifest spells them, which is how ADD `product.type` spells them.
            self._goal[str(f.get("goalProductType", ""))] |= 1 << i
        n = len(flows)
        most = max((len(v) for v in self._variant), default=1)
        self._exposures = np.zeros((n, most), dtype=np.int64)
        self._first_ms = np.full((n, guests), _NEVER, dtype=np.int64)
        self._first_variant = np.full((n, guests), -1, dtype=np.int16)
        self._converted = np.zeros((n, guests), dtype=bool)
        # Each guest's last completed order: an order at the very ms of a first exposure that
        # sorts before it (by ref) still converts it.
        self._order_ms = np.full(guests, -1, dtype=np.int64)
        self._order_mask = np.zeros(guests, dtype=np.int64)

    def event(self, seen: Seen) -> None:
        g, ms = seen.guest, seen.created_ms
        if seen.type == "TRACKING":
            fx = seen.data["flowExecution"]
            f = self._flow.get(fx["flowFriendlyId"])
            v = self._variant[f].get(str(fx.get("flowVariantRef"))) if f is not None else None
            if f is None or v is None:
                return
            self._exposures[f, v] += 1
            first = int(self._first_variant[f, g])
            if first == -1:
                self._first_variant[f, g], self._first_ms[f, g] = v, ms
                if self._order_ms[g] == ms and (int(self._order_mask[g]) >> f) & 1:
                    self._converted[f, g] = True
            elif first != v:
                self._report.add(
                    "sticky",
                    f"{seen.where}: guest {fx['guestRef']} sees a second variant of "
                    f"{fx['flowFriendlyId']}",
                )
        elif seen.sale:
            mask = 0
            for c in seen.session.cart:
                mask |= self._goal.get(c.split("\x1f")[1], 0)
            if self._order_ms[g] != ms:
                self._order_ms[g], self._order_mask[g] = ms, 0
            self._order_mask[g] |= mask
            f = 0
            while mask:
                if mask & 1 and 0 <= ms - int(self._first_ms[f, g]) <= self._window[f]:
                    self._converted[f, g] = True
                mask >>= 1
                f += 1

    def outcomes(self) -> list[list[VariantOutcome]]:
        out = []
        for f, variants in enumerate(self._variant):
            n = len(variants)
            first = self._first_variant[f]
            exposed = first >= 0
            by_variant = np.bincount(first[exposed], minlength=n)
            converted = np.bincount(first[exposed & self._converted[f]], minlength=n)
            out.append(
                [
                    VariantOutcome(
                        int(self._exposures[f, i]), int(by_variant[i]), int(converted[i])
                    )
                    for i in range(n)
                ]
            )
        return out

    def finish(self, report: Problems) -> None:
        for (name, flow), per_variant in zip(self._flows.items(), self.outcomes(), strict=True):
            for variant, got in zip(flow["variants"], per_variant, strict=True):
                for field_name, value in (
                    ("exposures", got.exposures),
                    ("exposedGuests", got.exposed_guests),
                    ("convertedGuests", got.converted_guests),
                ):
                    if variant.get(field_name) != value:
                        report.add(
                            "answer key",
                            f"{name}/{variant['name']}: manifest {field_name} "
                            f"{variant.get(field_name)}, events give {value}",
                        )


# A flow runs for a page view once the view is stored: its TRACKING's occurredAt follows the
# session's latest VIEW by at most this, and that view's page is one of the flow's trigger pages.
TRIGGER_WINDOW_MS = 1_000


class Triggers(Check):
    """A TRACKING comes after the view that ran its flow: the session's latest VIEW stored at or
    before its occurredAt, at most TRIGGER_WINDOW_MS before, of a page that triggers the flow.
    The session's last few views are its notes (under its own key: checks share the notes)."""

    def __init__(self, manifest: Mapping[str, Any], report: Problems) -> None:
        flows: Mapping[str, Any] = manifest.get("flows", {})
        self._pages = {
            name: frozenset(f["triggerPages"]) for name, f in flows.items() if "triggerPages" in f
        }
        self._report = report

    def event(self, seen: Seen) -> None:
        if seen.type == "VIEW":
            views = seen.session.notes.setdefault("triggers.views", deque(maxlen=4))
            views.append((seen.created_ms, str(seen.data.get("page")).split("/", 1)[0]))
        elif seen.type == "TRACKING":
            fx = seen.data["flowExecution"]
            occurred = int(fx["occurredAt"])
            views = seen.session.notes.get("triggers.views", ())
            view = next((v for v in reversed(views) if v[0] <= occurred), None)
            pages = self._pages.get(fx["flowFriendlyId"])
            if view is None or occurred - view[0] > TRIGGER_WINDOW_MS:
                self._report.add(
                    "tracking trigger",
                    f"{seen.where}: TRACKING of {fx['flowFriendlyId']} with no page view of its "
                    f"session stored in the {TRIGGER_WINDOW_MS} ms before its occurredAt",
                )
            elif pages is not None and view[1] not in pages:
                self._report.add(
                    "tracking trigger",
                    f"{seen.where}: TRACKING of {fx['flowFriendlyId']} after a view of "
                    f"{view[1]!r}, not one of its trigger pages ({', '.join(sorted(pages))})",
                )


def default_checks(
    manifest: Mapping[str, Any], guests: GuestBook, spill: Spill, report: Problems
) -> list[Check]:
    """The invariants `validate` holds every dataset to (besides the per-event checker's and
    the sessions' own)."""
    # Here, not at the top: the analysis check (recount.py) is built on this module's Check.
    from generator.dataset.recount import Analysis

    return [
        Refs(spill, report),
        Carts(report),
        _Paid(),
        OrderStatuses(report),
        Failures(manifest, report),
        Triggers(manifest, report),
        Guests(guests, report),
        AnswerKey(manifest, len(guests), report),
        Analysis(manifest, guests, report),
    ]
