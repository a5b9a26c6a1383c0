"""Checking a dataset against every invariant, and its manifest against what the file holds.

Checked per event (envelope, TRACKING schema and section-1 invariants, order by (createdAt, ref),
unique refs), per session (one browser, point of sale and channel; no gap over the timeout; nothing
after FORCE_CLOSE; a browser's sessions never overlap; carts: CONFIRM only items ADDed, CHECKOUT
after CONFIRM, PAYMENT after CHECKOUT; each TRACKING after the page view that ran its flow),
per guest and flow (browsers belong to their guest; one
variant per guest and flow; CUSTOMER exactly when identified; emails on reserved domains; the
guest's point of sale that of its events), and the manifest (counts by type, guests, and the
answer key recomputed from the events).
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from generator.dataset.answer_key import AnswerTags, outcomes
from generator.dataset.reader import Dataset, DatasetError, open_dataset
from generator.events.checker import StoredEventChecker, tracking_schema
from generator.events.stored import UUID, parse_iso_ms
from generator.events.types import EventType
from generator.vocabulary import EMAIL_DOMAINS

__all__ = ["Report", "tracking_schema", "validate_dataset"]

_EXAMPLES = 5
# A flow runs for a page view once the view is stored: its TRACKING's occurredAt follows the
# session's latest VIEW by at most this, and that view's page is one of the flow's trigger pages.
TRIGGER_WINDOW_MS = 1_000


@dataclass
class Report:
    """Problems by kind, with a few examples each (line numbers of events.jsonl)."""

    events: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, detail: str) -> None:
        self.problems[kind] += 1
        if len(self.examples[kind]) < _EXAMPLES:
            self.examples[kind].append(detail)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Session:
    browser: str
    pos: str
    channel: str
    last_ms: int
    closed: bool = False
    cart: set[str] = field(default_factory=set)
    confirmed: bool = False
    checked_out: bool = False
    # The latest page views, (createdAt ms, page kind), for finding a TRACKING's trigger.
    views: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=4))


def validate_dataset(
    directory: str | Path, progress: Callable[[int, int], None] | None = None
) -> Report:
    """Check a dataset; a missing or unreadable file raises DatasetError."""
    ds = open_dataset(directory)
    manifest = ds.manifest()
    report = Report()
    guests, browser_owner = _load_guests(ds, report)
    _check_events(ds, manifest, guests, browser_owner, report, progress)
    return report


def _load_guests(ds: Dataset, report: Report) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    guests: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    for line, guest in ds.guests():
        ref = guest.get("guestRef")
        if not isinstance(ref, str) or not UUID.match(ref):
            report.add("guest ref", f"guests.jsonl line {line}: bad guestRef {ref!r}")
            continue
        if ref in guests:
            report.add("guest ref", f"guests.jsonl line {line}: guest {ref} listed twice")
        guests[ref] = guest
        email = guest.get("email", "")
        if not isinstance(email, str) or email.rsplit("@", 1)[-1] not in EMAIL_DOMAINS:
            report.add(
                "email domain", f"guests.jsonl line {line}: {email!r} not on a reserved domain"
            )
        if guest.get("type") not in ("VISITOR", "CUSTOMER"):
            report.add("guest type", f"guests.jsonl line {line}: type {guest.get('type')!r}")
        for b in guest.get("browsers", []):
            bref = b.get("browserRef") if isinstance(b, dict) else None
            if not isinstance(bref, str):
                report.add("browser", f"guests.jsonl line {line}: a browser without browserRef")
                continue
            if bref in owner:
                report.add("browser", f"guests.jsonl line {line}: browser {bref} has two guests")
            owner[bref] = ref
    return guests, owner


def _check_events(
    ds: Dataset,
    manifest: dict[str, Any],
    guests: dict[str, dict[str, Any]],
    browser_owner: dict[str, str],
    report: Report,
    progress: Callable[[int, int], None] | None,
) -> None:
    pos_table: dict[str, Any] = manifest.get("pointsOfSale", {})
    flows: dict[str, Any] = manifest.get("flows", {})
    flow_index = {name: i for i, name in enumerate(flows)}
    variant_index = {
        name: {v["flowVariantRef"]: i for i, v in enumerate(f["variants"])}
        for name, f in flows.items()
    }
    # Goals as the manifest spells them, which is how ADD `product.type` spells them: literal.
    goal_flows: dict[str, list[int]] = defaultdict(list)
    for name, f in flows.items():
        goal_flows[str(f.get("goalProductType", ""))].append(flow_index[name])
    trigger_pages = {
        name: frozenset(f["triggerPages"]) for name, f in flows.items() if "triggerPages" in f
    }
    checker = StoredEventChecker.for_dataset(manifest, browser_owner)
    guest_index = {ref: i for i, ref in enumerate(guests)}

    counts: Counter[str] = Counter()
    sessions: dict[str, _Session] = {}
    browser_session: dict[str, str] = {}
    assigned: dict[tuple[str, str], str] = {}
    identified: set[str] = set()
    seen_guests: set[str] = set()
    ref_hashes: list[int] = []
    t_rows: list[tuple[int, int, int, int]] = []
    o_rows: list[tuple[int, int, int]] = []
    last_key: tuple[str, str] = ("", "")
    size = ds.events_path.stat().st_size
    for line, raw in ds.raw_events():
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DatasetError(f"{ds.events_path}: line {line}: not valid JSON ({exc})") from None
        report.events += 1
        if progress and line % 50_000 == 0:
            progress(line, size)
        where = f"line {line}"
        problems = checker.problems(event)
        for problem in problems:
            report.add(problem.kind, f"{where}: {problem.message}")
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            counts[event["type"]] += 1
        if problems:
            # The session, guest and answer-key checks below read what the checker vouched for.
            continue
        etype = event["type"]
        ref, created = event["ref"], event["createdAt"]
        ref_hashes.append(hash(ref))
        key = (created, ref)
        if key <= last_key:
            report.add("order", f"{where}: not after the previous event by (createdAt, ref)")
        last_key = key
        created_ms = parse_iso_ms(created)
        pos, channel = event["pointOfSale"], event["channel"]
        pos_info = pos_table[pos]
        browser, session_ref = event["browserRef"], event["sessionRef"]
        guest = browser_owner[browser]
        seen_guests.add(guest)
        timeout_ms = int(pos_info["sessionTimeoutMinutes"]) * 60_000

        # Sessions: one per browser at a time, closed by inactivity or FORCE_CLOSE.
        s = sessions.get(session_ref)
        if s is None:
            prev_ref = browser_session.get(browser)
            if prev_ref is not None:
                prev = sessions[prev_ref]
                if not prev.closed and created_ms - prev.last_ms <= timeout_ms:
                    report.add(
                        "session overlap",
                        f"{where}: session {session_ref} opens while {prev_ref} is still open",
                    )
            s = sessions[session_ref] = _Session(browser, pos, channel, created_ms)
            browser_session[browser] = session_ref
        else:
            if (s.browser, s.pos, s.channel) != (browser, pos, channel):
                report.add(
                    "session identity",
                    f"{where}: session {session_ref} changes browser/POS/channel",
                )
            if browser_session.get(browser) != session_ref:
                report.add("session overlap", f"{where}: session {session_ref} reopened")
            if s.closed:
                report.add("force close", f"{where}: event after FORCE_CLOSE in {session_ref}")
            if created_ms - s.last_ms > timeout_ms:
                report.add("session gap", f"{where}: gap over the timeout inside {session_ref}")
            s.last_ms = created_ms

        data = event["arbitraryData"]
        if etype == "VIEW":
            s.views.append((created_ms, _page_kind(data.get("page"))))
        elif etype == "TRACKING":
            fx = data["flowExecution"]
            _check_trigger(s, fx, trigger_pages.get(fx["flowFriendlyId"]), where, report)
            if fx["flowFriendlyId"] in flows:
                friendly = fx["flowFriendlyId"]
                vref = fx.get("flowVariantRef")
                before = assigned.setdefault((guest, friendly), str(vref))
                if before != vref:
                    report.add(
                        "sticky", f"{where}: guest {guest} sees a second variant of {friendly}"
                    )
                v = variant_index[friendly].get(str(vref))
                if v is not None:
                    t_rows.append((guest_index[guest], flow_index[friendly], v, created_ms))
        elif etype == "FORCE_CLOSE":
            s.closed = True
        elif etype == "ADD":
            product = data.get("product", {})
            s.cart.add(f"{product.get('item_id')}\x1f{product.get('type', '')}")
        elif etype == "CONFIRM":
            items = {str(p.get("item_id")) for p in data.get("product", [])}
            added = {c.split("\x1f")[0] for c in s.cart}
            if not items <= added:
                report.add("cart", f"{where}: CONFIRM lists items never ADDed in its session")
            s.confirmed = True
        elif etype == "CHECKOUT":
            if not s.confirmed:
                report.add("cart", f"{where}: CHECKOUT without a CONFIRM before it in the session")
            s.checked_out = True
            if data.get("status") == "PURCHASED":
                mask = 0
                for c in s.cart:
                    for f in goal_flows.get(c.split("\x1f")[1], ()):
                        mask |= 1 << f
                o_rows.append((guest_index[guest], mask, created_ms))
            s.cart = set()
        elif etype == "PAYMENT":
            if not s.checked_out:
                report.add("cart", f"{where}: PAYMENT without a CHECKOUT before it in the session")
        elif etype == "CLEAR_CART":
            s.cart = set()
        elif etype == "IDENTITY":
            identified.add(guest)
            email = str(data.get("email", ""))
            if email.rsplit("@", 1)[-1] not in EMAIL_DOMAINS:
                report.add("email domain", f"{where}: {email!r} not on a reserved domain")

    hashes = np.array(ref_hashes, dtype=np.int64)
    hashes.sort()
    dupes = int((hashes[1:] == hashes[:-1]).sum()) if len(hashes) > 1 else 0
    if dupes:
        report.add("ref", f"{dupes} event refs appear more than once")
    for ref, record in guests.items():
        if ref not in seen_guests:
            report.add("guest", f"guest {ref} is listed but has no event")
        wants = "CUSTOMER" if ref in identified else "VISITOR"
        if record.get("type") != wants:
            report.add("guest type", f"guest {ref} is {record.get('type')}, should be {wants}")
    _check_guest_points_of_sale(guests, browser_owner, sessions, report)
    _check_manifest(manifest, counts, report, guests, seen_guests, t_rows, o_rows)


def _page_kind(page: object) -> str:
    """`product/SNEAKERS-0001` -> `product`, `category/socks` -> `category`, `cart` -> `cart`."""
    return str(page).split("/", 1)[0]


def _check_trigger(
    s: _Session,
    fx: dict[str, Any],
    pages: frozenset[str] | None,
    where: str,
    report: Report,
) -> None:
    """A TRACKING comes after the view that ran its flow: the session's latest VIEW stored at
    or before its occurredAt, at most TRIGGER_WINDOW_MS before, of a page that triggers it."""
    occurred = int(fx["occurredAt"])
    view = next((v for v in reversed(s.views) if v[0] <= occurred), None)
    if view is None or occurred - view[0] > TRIGGER_WINDOW_MS:
        report.add(
            "tracking trigger",
            f"{where}: TRACKING of {fx['flowFriendlyId']} with no page view of its session "
            f"stored in the {TRIGGER_WINDOW_MS} ms before its occurredAt",
        )
    elif pages is not None and view[1] not in pages:
        report.add(
            "tracking trigger",
            f"{where}: TRACKING of {fx['flowFriendlyId']} after a view of {view[1]!r}, "
            f"not one of its trigger pages ({', '.join(sorted(pages))})",
        )


def _check_guest_points_of_sale(
    guests: dict[str, dict[str, Any]],
    browser_owner: dict[str, str],
    sessions: dict[str, _Session],
    report: Report,
) -> None:
    """Each guest's pointOfSale is the one of all its events. A session holds one point of sale
    (checked per event), so its guest's sessions say what its events say."""
    said: dict[str, Counter[str]] = defaultdict(Counter)
    for s in sessions.values():
        said[browser_owner[s.browser]][s.pos] += 1
    for ref, by_pos in said.items():
        pos = guests[ref].get("pointOfSale")
        other = sorted(p for p in by_pos if p != pos)
        if other:
            report.add(
                "guest pointOfSale",
                f"guest {ref}: guests.jsonl says point of sale {pos!r}, "
                f"{sum(by_pos[p] for p in other)} of its sessions are at "
                f"{', '.join(map(repr, other))}",
            )


def _check_manifest(
    manifest: dict[str, Any],
    counts: Counter[str],
    report: Report,
    guests: dict[str, dict[str, Any]],
    seen_guests: set[str],
    t_rows: list[tuple[int, int, int, int]],
    o_rows: list[tuple[int, int, int]],
) -> None:
    want = manifest.get("counts", {})
    for name in EventType.__members__:
        if int(want.get(name, 0)) != counts.get(name, 0):
            report.add(
                "manifest counts",
                f"{name}: manifest says {want.get(name, 0)}, file holds {counts.get(name, 0)}",
            )
    if manifest.get("events") != sum(counts.values()):
        report.add("manifest counts", "events total differs from the file")
    seen = manifest.get("guests", {}).get("seen")
    if seen is not None and seen != len(guests):
        report.add(
            "manifest guests", f"manifest says {seen} guests, guests.jsonl has {len(guests)}"
        )
    flows = manifest.get("flows", {})
    t = np.array(t_rows, dtype=np.int64).reshape(-1, 4)
    o = np.array(o_rows, dtype=np.int64).reshape(-1, 3)
    tags = AnswerTags(t[:, 0], t[:, 1], t[:, 2], t[:, 3], o[:, 0], o[:, 1], o[:, 2])
    results = outcomes(
        tags,
        [len(f["variants"]) for f in flows.values()],
        [int(f["attributionHours"]) * 3_600_000 for f in flows.values()],
    )
    for (name, flow), per_variant in zip(flows.items(), results, strict=True):
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
