"""The simulated CDP tenant behind the Stream API: browsers, sessions, flows, and their ledger."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from generator.events.stored import UUID, envelope, iso_ms, parse_iso_ms, tracking_event
from generator.events.wire import OCCURRED_HINT, arbitrary_data_from_wire
from generator.model.assignment import FlowTable, assign_one
from generator.profile import Assignment, Channel, PointOfSale, Profile
from generator.redaction import json_kind, mask_key, shown
from generator.server.answers import Response, error, json_answer
from generator.server.bodies import text_field
from generator.server.ingest import check_stored, ingest_lines
from generator.server.ledger import EventRow, Job, Ledger, LedgerError, Origin
from generator.server.sessions import SessionBook
from generator.vocabulary import CLIENT_TYPES, CUSTOM_TYPE_RULE, is_custom_type

__all__ = ["Tenant", "TenantStats"]

_CHANNELS = frozenset(c.value for c in Channel)
CLIENT_TYPE_NAMES = frozenset(t.name for t in CLIENT_TYPES)
_OK_EVENT_HEAD = b'{"status":"OK","version":"1.2","ref":"'


class TenantStats:
    """What `/_cdpsim/stats` reports; `stored` is the whole ledger, the rest since start."""

    def __init__(self) -> None:
        self.stored: Counter[str] = Counter()
        self.duplicates = 0
        self.rejected: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.labelled: Counter[str] = Counter()  # labelled faults received, by kind
        self.expected_duplicates = 0  # labelled duplicates seen as repeats (also in duplicates)
        self.expected_rejections = 0  # labelled malformed bodies refused (also in rejected)

    def count_labelled(
        self, labels: dict[int, str], path: str, answer: Response, repeat: bool
    ) -> None:
        """A labelled request's faults; `/v1/ingest` counts its own lines as it checks them."""
        self.labelled.update(labels.values())
        if path == "/v1/ingest":
            return
        kind = labels.get(1)
        if kind in ("dup", "dup-changed") and repeat:
            self.expected_duplicates += 1
        elif kind == "malformed" and 400 <= answer.status < 500:
            self.expected_rejections += 1


class Tenant:
    """Answers Stream API calls for one profile; a 2xx that stores something waits for COMMIT."""

    def __init__(
        self,
        profile: Profile,
        ledger: Ledger,
        *,
        rng: random.Random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.profile = profile
        self.client_key = profile.client_key
        self.ledger = ledger
        self.stats = TenantStats()
        self.browsers: dict[str, str] = {}  # browser ref -> guest ref
        # (provider, id) -> (guest, the browser it was last seen on), from IDENTITY events.
        self.identities: dict[tuple[str, str], tuple[str, str]] = {}
        self.sessions = SessionBook(self.new_ref)
        self._rng = rng
        self._clock = clock
        self._pos: dict[str, PointOfSale] = {p.name: p for p in profile.points_of_sale}
        self._flows = FlowTable(profile)
        self._flow_index = {f.friendly_id: i for i, f in enumerate(profile.flows)}
        self._flow_refs = [str(profile.flow_ref(f)) for f in profile.flows]
        self._variant_refs = [
            [str(profile.variant_ref(f, v)) for v in f.variants] for f in profile.flows
        ]
        # Optimized flows: the variant each guest got at their first exposure, which they keep
        # (the weights of later periods would give another). Rebuilt from the ledger on restart.
        self._optimized = {
            i for i, f in enumerate(profile.flows) if f.assignment is Assignment.OPTIMIZED
        }
        self._kept: dict[tuple[str, int], int] = {}
        self._start_ms = int(profile.start.timestamp() * 1000)
        self._end_ms = int(profile.end.timestamp() * 1000)
        ledger.on_commit = self._committed
        self._ref_ms = self._ref_seq = self._iso_ms = -1
        self._iso_text = ""

    # --- start-up ---------------------------------------------------------------------------

    def restore(self) -> None:
        """Reload what the ledger holds, so a restart (even after SIGKILL) carries on."""
        self.browsers = self.ledger.browsers()
        self.stats.stored = self.ledger.counts_by_type()
        last: dict[tuple[str, str], tuple[str, int, str]] = {}
        for browser, channel, session, created_ms, type_ in self.ledger.stream_events():
            last[(browser, channel)] = (session, created_ms, type_)
        for (browser, channel), (session, created_ms, type_) in last.items():
            self.sessions.restore(browser, channel, session, created_ms, type_ == "FORCE_CLOSE")
        self.sessions.opened = self.ledger.session_count()
        for browser, body in self.ledger.identity_events():
            sent = orjson.loads(body).get("arbitraryData", {})
            for identity in identity_keys(sent):
                self.identities[identity] = (self.browsers[browser], browser)
        if self._optimized:
            self._restore_kept()

    def _restore_kept(self) -> None:
        flow_of = {ref: i for i, ref in enumerate(self._flow_refs) if i in self._optimized}
        variant_of = {
            i: {ref: v for v, ref in enumerate(self._variant_refs[i])} for i in flow_of.values()
        }
        for body in self.ledger.tracking_events():
            fx = orjson.loads(body).get("arbitraryData", {}).get("flowExecution", {})
            index = flow_of.get(fx.get("flowRef"))
            if index is None:
                continue
            variant = variant_of[index].get(fx.get("flowVariantRef"))
            if variant is not None and isinstance(fx.get("guestRef"), str):
                self._kept.setdefault((fx["guestRef"], index), variant)

    def new_ref(self) -> str:
        """A random UUID v4 (browsers, guests, sessions, flow executions)."""
        return _dashed((self._rng.getrandbits(128) & _V4_CLEAR) | _V4_SET)

    def event_ref(self, now_ms: int) -> str:
        """A stored event's ref: v4-shaped, but led by the clock like a UUIDv7.

        The ledger's unique index on refs then grows at its right edge: random refs would touch
        about one index page per event in every commit, which costs more than the rest of the
        insert. The version and variant bits stay those of v4, as CDP's refs have.
        """
        if now_ms == self._ref_ms:
            self._ref_seq = (self._ref_seq + 1) & 0xFFF
        else:
            self._ref_ms, self._ref_seq = now_ms, self._rng.getrandbits(11)
        value = (now_ms & 0xFFFF_FFFF_FFFF) << 80 | 0x4 << 76 | self._ref_seq << 64
        return _dashed(value | 0b10 << 62 | self._rng.getrandbits(62))

    def _iso(self, ms: int) -> str:
        # Requests arriving in the same millisecond share the formatted time.
        if ms != self._iso_ms:
            self._iso_ms, self._iso_text = ms, iso_ms(ms)
        return self._iso_text

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- endpoints --------------------------------------------------------------------------

    async def browser_create(
        self, client_key: str | None, key: str | None, guest_hint: str | None = None
    ) -> Response:
        """A new browser, of a new guest; or of `guest_hint` (a replayed dataset's own guest, so
        that its browsers share one guest and its flows assign as they did in the dataset)."""
        if client_key != self.client_key:
            return _bad_key(client_key)
        if not self.ledger.has_room(1):
            return _queue_full()
        browser = self.new_ref()
        guest = guest_hint if guest_hint is not None and UUID.match(guest_hint) else self.new_ref()
        body = orjson.dumps(
            {
                "status": "OK",
                "version": "1.2",
                "client_key": self.client_key,
                "ref": browser,
                "customer_ref": guest,
            }
        )
        job = Job(lambda _: (200, body), browser=(browser, guest, self._now_ms()), answer_key=key)
        return await self._commit(job)

    async def event(self, msg: dict[str, Any], key: str | None) -> Response:
        """`POST /v1.2/events` and its GET form, after the body became a JSON object."""
        type_ = text_field(msg, "type", "missing_type", "the event has no `type`")
        if not isinstance(type_, str):
            return _refused(type_)
        browser_id = text_field(
            msg, "browser_id", "missing_browser_id", "the event has no `browser_id`"
        )
        if not isinstance(browser_id, str):
            return _refused(browser_id)
        client_key = msg.get("client_key")
        if client_key != self.client_key:
            return _bad_key(client_key)
        if type_ not in CLIENT_TYPE_NAMES and not is_custom_type(type_):
            return error(
                400,
                "bad_type",
                f"`type` {shown(type_)} is neither a client event type of CDP's nor a custom "
                f"one ({CUSTOM_TYPE_RULE})",
            )
        guest = self.browsers.get(browser_id)
        if guest is None:
            return error(404, "unknown_browser", f"no browser {shown(browser_id)} on this tenant")
        pos_name = text_field(msg, "pos", "missing_pos", "the event has no `pos` (point of sale)")
        if not isinstance(pos_name, str):
            return _refused(pos_name)
        pos = self._pos.get(pos_name)
        if pos is None:
            # CDP answers 201 and silently drops an event for an unknown point of sale.
            self.stats.dropped["unknown_pos"] += 1
            return Response(201, b'{"status":"OK","version":"1.2"}')
        channel = self._channel(msg, pos)
        if isinstance(channel, Response):
            return channel
        if type_ == "IDENTITY" and not _has_identifiers(msg.get("identifiers")):
            given = msg.get("identifiers")
            if given is not None and not isinstance(given, list):
                return error(
                    400,
                    "wrong_field_type",
                    f"`identifiers` must be an array, not {json_kind(given)}",
                )
            return error(
                400, "missing_identifiers", "IDENTITY needs `identifiers: [{provider, id}]`"
            )
        if not self.ledger.has_room(1):
            return _queue_full()
        rebind, after = None, None
        if type_ == "IDENTITY":
            rebind, after = self._identify(browser_id, guest, identity_keys(msg))
        now = self._now_ms()
        session = self.sessions.touch(
            browser_id,
            channel,
            now,
            pos.session_timeout_minutes * 60_000,
            close=type_ == "FORCE_CLOSE",
        )
        ref = self.event_ref(now)
        created_at = self._iso(now)
        stored = envelope(
            ref=ref,
            client_key=self.client_key,
            created_at=created_at,
            modified_at=created_at,
            type=type_,
            channel=channel,
            point_of_sale=pos.name,
            browser_ref=browser_id,
            session_ref=session,
            arbitrary_data=arbitrary_data_from_wire(msg),
        )
        row = EventRow(
            ref, type_, browser_id, session, channel, now, Origin.STREAM, orjson.dumps(stored)
        )
        body = _OK_EVENT_HEAD + ref.encode() + b'"}'
        job = Job(lambda _: (201, body), [row], rebind=rebind, answer_key=key, after=after)
        return await self._commit(job)

    def _channel(self, msg: dict[str, Any], pos: PointOfSale) -> str | Response:
        """The request's `channel`, or the point of sale's first one when it names none."""
        channel = text_field(msg, "channel", None)
        if channel is None:
            return pos.channels[0].value
        if isinstance(channel, Response):
            return channel
        if channel not in _CHANNELS:
            return error(
                400,
                "bad_channel",
                f"`channel` {shown(channel)} is not a CDP channel (one of "
                f"{', '.join(sorted(_CHANNELS))})",
            )
        return channel

    def _identify(
        self, browser: str, guest: str, identities: list[tuple[str, str]]
    ) -> tuple[tuple[str, str] | None, Callable[[], None]]:
        """An IDENTITY naming a known guest moves this browser to that guest (as CDP merges an
        anonymous visitor into the customer), so flows stay sticky across the guest's browsers."""
        known = next((self.identities[i][0] for i in identities if i in self.identities), None)
        owner = known or guest
        rebind = (owner, browser) if owner != guest else None

        def after() -> None:
            self.browsers[browser] = owner
            for identity in identities:
                self.identities[identity] = (owner, browser)

        return rebind, after

    async def call_flows(self, msg: dict[str, Any], key: str | None) -> Response:
        """`POST /v2/callFlows`: run the flow for the browser's guest and record a TRACKING."""
        client_key = msg.get("clientKey", msg.get("client_key"))
        if client_key != self.client_key:
            return _bad_key(client_key)
        friendly_id = text_field(
            msg, "friendlyId", "missing_friendly_id", "callFlows needs `friendlyId`"
        )
        if not isinstance(friendly_id, str):
            return _refused(friendly_id)
        index = self._flow_index.get(friendly_id)
        if index is None:
            known = ", ".join(self._flow_index) or "none"
            return error(
                404,
                "unknown_flow",
                f"no flow with friendlyId {shown(friendly_id)} on this tenant (known: {known})",
            )
        browser_id = text_field(msg, "browserId", None)
        if isinstance(browser_id, Response):
            return browser_id
        if browser_id is None:
            email = text_field(msg, "email", None)
            if isinstance(email, Response):
                return email
            identities = identity_keys(msg)
            if not identities:
                return error(
                    400,
                    "missing_browser_id",
                    "callFlows needs `browserId`, `email` or `identifiers`",
                )
            hit = next((self.identities[i] for i in identities if i in self.identities), None)
            if hit is None:
                return error(
                    404, "unknown_guest", "no guest has identified with that email or identifier"
                )
            browser_id = hit[1]
        guest = self.browsers.get(browser_id)
        if guest is None:
            return error(404, "unknown_browser", f"no browser {shown(browser_id)} on this tenant")
        pos_name = text_field(msg, "pointOfSale", None)
        if isinstance(pos_name, Response):
            return pos_name
        pos = self._pos.get(pos_name) if pos_name is not None else None
        if pos is None:
            known = ", ".join(self._pos)
            return error(
                400,
                "unknown_pos",
                f"`pointOfSale` {shown(pos_name)} is not a point of sale of this "
                f"tenant (known: {known})",
            )
        channel = self._channel(msg, pos)
        if isinstance(channel, Response):
            return channel
        flow = self.profile.flows[index]
        flow_ref = self._flow_refs[index]
        variant = self._variant(index, guest, msg.get("params"))
        if variant < 0:
            # Outside the experiment's traffic allocation: nothing runs, nothing is recorded.
            return json_answer(
                200,
                {
                    "friendlyId": friendly_id,
                    "flowRef": flow_ref,
                    "variant": None,
                    "reason": "guest is outside the flow's traffic allocation",
                },
            )
        if not self.ledger.has_room(1):
            return _queue_full()
        occurred = self._now_ms()
        spread = flow.decision_time_ms
        execution_ms = max(1, round(spread.median * math.exp(spread.sigma * self._rng.gauss())))
        created = occurred + execution_ms + self._rng.randint(2, 12)
        session = self.sessions.touch(
            browser_id, channel, occurred, pos.session_timeout_minutes * 60_000
        )
        ref, execution_ref = self.event_ref(created), self.new_ref()
        variant_ref = self._variant_refs[index][variant]
        stored = tracking_event(
            ref=ref,
            client_key=self.client_key,
            created_at=iso_ms(created),
            modified_at=iso_ms(created + self._rng.randint(1, 15)),
            channel=channel,
            point_of_sale=pos.name,
            browser_ref=browser_id,
            session_ref=session,
            flow_execution_ref=execution_ref,
            occurred_ms=occurred,
            flow_ref=flow_ref,
            flow_friendly_id=friendly_id,
            flow_variant_ref=variant_ref,
            guest_ref=guest,
            execution_ms=execution_ms,
        )
        row = EventRow(
            ref,
            "TRACKING",
            browser_id,
            session,
            channel,
            created,
            Origin.STREAM,
            orjson.dumps(stored),
        )
        body = orjson.dumps(
            {
                "friendlyId": friendly_id,
                "flowRef": flow_ref,
                "flowExecutionRef": execution_ref,
                "variant": {"ref": variant_ref, "name": flow.variants[variant].name},
                "guestRef": guest,
                "browserRef": browser_id,
                "sessionRef": session,
            }
        )
        kept = (guest, index) if index in self._optimized else None

        def after() -> None:
            if kept is not None:
                self._kept.setdefault(kept, variant)

        return await self._commit(Job(lambda _: (200, body), [row], answer_key=key, after=after))

    def _variant(self, index: int, guest: str, params: object) -> int:
        """The variant the generator would give: an optimized flow's from the period of the
        guest's first exposure, which is when the dataset ran it (`params` hint) or now."""
        if index not in self._optimized:
            return assign_one(self._flows, index, guest)
        kept = self._kept.get((guest, index))
        if kept is not None:
            return kept
        hint = params.get(OCCURRED_HINT) if isinstance(params, dict) else None
        if isinstance(hint, int) and not isinstance(hint, bool):
            at = hint
        else:
            # The clock, inside the profile's window: a server started long after it would
            # otherwise be in a period whose weights take long to reach.
            at = min(max(self._now_ms(), self._start_ms), self._end_ms - 1)
        return assign_one(self._flows, index, guest, at)

    async def ingest(
        self, body: bytes, key: str | None, labels: dict[int, str] | None = None
    ) -> Response:
        """`POST /v1/ingest`: stored-form events kept as they are; a known ref is a duplicate.
        `labels` (line -> fault kind) mark lines sent malformed or repeated on purpose."""
        labels = labels or {}
        rows: list[EventRow] = []
        row_lines: list[int] = []
        rejected: list[dict[str, Any]] = []
        for line, event, unreadable in ingest_lines(body):
            reason = unreadable or check_stored(event, self.client_key) or ""
            if reason:
                rejected.append({"line": line, "reason": reason})
                self.stats.rejected["ingest_line"] += 1
                if labels.get(line) == "malformed":
                    self.stats.expected_rejections += 1
                continue
            row_lines.append(line)
            rows.append(
                EventRow(
                    event["ref"],
                    event["type"],
                    event["browserRef"],
                    event["sessionRef"],
                    event["channel"],
                    parse_iso_ms(event["createdAt"]),
                    Origin.INGEST,
                    orjson.dumps(event),
                )
            )
        if not rows:
            if not rejected:
                return error(400, "empty_body", "no events in the body (one JSON object or NDJSON)")
            answer = error(
                400,
                "no_valid_lines",
                "no line was a valid stored event",
                accepted=0,
                rejected=rejected,
            )
            return answer
        if not self.ledger.has_room(len(rows)):
            return _queue_full()

        outcome: list[bool] = []

        def render(inserted: list[bool]) -> tuple[int, bytes]:
            outcome[:] = inserted
            new = sum(inserted)
            return 200, orjson.dumps(
                {
                    "accepted": len(rows),
                    "stored": new,
                    "duplicates": len(rows) - new,
                    "rejected": rejected,
                }
            )

        answer = await self._commit(Job(render, rows, answer_key=key))
        if answer.ok and labels:
            for line, new in zip(row_lines, outcome, strict=False):
                if not new and labels.get(line) in ("dup", "dup-changed"):
                    self.stats.expected_duplicates += 1
        return answer

    # --- the ledger -------------------------------------------------------------------------

    async def _commit(self, job: Job) -> Response:
        try:
            status, body, _ = await self.ledger.submit(job)
        except LedgerError as exc:
            return error(503, "ledger_error", str(exc), retry_after=1)
        return Response(status, body)

    def _committed(self, job: Job, inserted: list[bool]) -> None:
        if job.browser is not None:
            self.browsers[job.browser[0]] = job.browser[1]
        if job.after is not None:
            job.after()
        for row, new in zip(job.events, inserted, strict=True):
            if new:
                self.stats.stored[row.type] += 1
            else:
                self.stats.duplicates += 1


_V4_CLEAR = ~(0xF << 76 | 0b11 << 62) & (1 << 128) - 1
_V4_SET = 0x4 << 76 | 0b10 << 62


def _dashed(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _refused(answer: Response | None) -> Response:
    """A required field's refusal (text_field gives None only for an optional field)."""
    assert answer is not None
    return answer


def _bad_key(client_key: object) -> Response:
    if client_key is None or client_key == "":
        return error(401, "unknown_client_key", "no client key given (`client_key`)")
    if not isinstance(client_key, str):
        return error(
            400,
            "wrong_field_type",
            f"the client key must be a string, not {json_kind(client_key)}",
        )
    return error(
        401, "unknown_client_key", f"client key {mask_key(client_key)} is not this tenant's"
    )


def _queue_full() -> Response:
    return error(503, "queue_full", "the write queue is full; retry later", retry_after=1)


def identity_keys(sent: dict[str, Any]) -> list[tuple[str, str]]:
    """(provider, id) pairs named by `identifiers` (a list, or one object) and `email`."""
    given = sent.get("identifiers")
    items = given if isinstance(given, list) else [given] if isinstance(given, dict) else []
    keys = [
        _identity(str(i["provider"]), str(i["id"]))
        for i in items
        if isinstance(i, dict) and i.get("provider") and i.get("id")
    ]
    email = sent.get("email")
    if isinstance(email, str) and email:
        keys.append(_identity("email", email))
    return keys


def _identity(provider: str, id_: str) -> tuple[str, str]:
    provider = provider.lower()
    return provider, id_.lower() if provider == "email" else id_


def _has_identifiers(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(i, dict) and i.get("id") and i.get("provider") for i in value)
    )
