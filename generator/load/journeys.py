"""A guest's history compiled into the wire requests a Locust user sends, with think times.

Bodies are serialised here, once, outside the request path; only the browser id (which the
target hands out at browser create) is spliced in when the request is made.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from generator.events.wire import browser_create, call_flow, client_event
from generator.model.history import GuestHistory
from generator.profile import Profile

__all__ = ["Journey", "JourneyCompiler", "JourneyStep", "JourneyStepKind"]

# Stands in for the browser id in a pre-rendered body; split on, never sent.
_BROWSER_SLOT = "\x1fcdpsim-browser\x1f"
_SLOT_BYTES = orjson.dumps(_BROWSER_SLOT)[1:-1]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


class JourneyStepKind(IntEnum):
    BROWSER = 0  # GET browser/create.json: yields a browser id, stores no event
    EVENT = 1  # POST /v1.2/events: stores the event
    FLOW = 2  # POST /v2/callFlows: the server stores a TRACKING event


_KINDS = tuple(JourneyStepKind)


@dataclass(frozen=True, slots=True)
class JourneyStep:
    """One request: wait `delay` seconds, then send; `head + browser id + tail` is the body."""

    delay: float
    kind: JourneyStepKind
    browser: int
    path: str
    name: str
    head: bytes = b""
    tail: bytes = b""

    def body(self, browser_id: str) -> bytes:
        return self.head + browser_id.encode() + self.tail


@dataclass(frozen=True, slots=True)
class Journey:
    guest_ref: str
    steps: tuple[JourneyStep, ...]
    events: int  # steps that store an event (EVENT and FLOW)

    def pack(self) -> bytes:
        """Compact JSON for the trip from the simulator; bodies are JSON text, so UTF-8 safe."""
        rows = [
            [s.delay, s.kind, s.browser, s.path, s.name, s.head.decode(), s.tail.decode()]
            for s in self.steps
        ]
        return orjson.dumps([self.guest_ref, self.events, rows])

    @classmethod
    def unpack(cls, packed: bytes) -> Journey:
        guest_ref, events, rows = orjson.loads(packed)
        steps = tuple(
            JourneyStep(delay, _KINDS[kind], browser, path, name, head.encode(), tail.encode())
            for delay, kind, browser, path, name, head, tail in rows
        )
        return cls(guest_ref, steps, events)


class JourneyCompiler:
    """Turns guest histories into journeys: browsers first, then every event in time order."""

    def __init__(self, profile: Profile, *, think_time_scale: float, max_think: float) -> None:
        self.profile = profile
        self.scale = think_time_scale
        self.max_think = max_think
        self.pos = {p.name: (p.language, p.currency) for p in profile.points_of_sale}
        # Between sessions a guest is away for hours or days; a load test cannot wait that
        # long, so the pause is the inactivity that closes a session, scaled like any gap.
        self.inactivity = {
            p.name: min(max_think, p.session_timeout_minutes * 60 * think_time_scale)
            for p in profile.points_of_sale
        }

    def compile(self, history: GuestHistory) -> Journey:
        browsers = {ref: i for i, ref in enumerate(history.browsers)}
        # The guest hint keeps the model's guest at the embedded server (so flows assign as the
        # model assigned them); any other target ignores the extra query parameter.
        create = browser_create(self.profile.client_key, history.guest_ref)
        steps = [
            JourneyStep(0.0, JourneyStepKind.BROWSER, i, create.path, create.name)
            for i in range(len(history.browsers))
        ]
        previous: int | None = None
        session = None
        timed = self.scale > 0  # with no think time, the clock need not be read at all
        for event in history.events:
            when = _sent_at(event) if timed else 0
            if previous is None or not timed:
                delay = 0.0
            elif event["sessionRef"] != session:
                delay = self.inactivity.get(event["pointOfSale"], 0.0)
            else:
                delay = min(self.max_think, (when - previous) / 1000 * self.scale)
            previous, session = when, event["sessionRef"]
            browser = browsers.get(event["browserRef"], 0)
            if event["type"] == "TRACKING":
                language, currency = self.pos.get(event["pointOfSale"], ("EN", "EUR"))
                request = call_flow(event, _BROWSER_SLOT, language, currency)
                kind = JourneyStepKind.FLOW
            else:
                request = client_event(event, _BROWSER_SLOT)
                kind = JourneyStepKind.EVENT
            head, tail = _split(request.body or {})
            steps.append(
                JourneyStep(max(0.0, delay), kind, browser, request.path, request.name, head, tail)
            )
        return Journey(history.guest_ref, tuple(steps), len(steps) - len(history.browsers))


def _sent_at(event: dict[str, Any]) -> int:
    """When the client made the request: a flow runs at `occurredAt`, other events are stored
    as they arrive."""
    if event["type"] == "TRACKING":
        return int(event["arbitraryData"]["flowExecution"]["occurredAt"])
    # fromisoformat is some 30 times faster than the strptime in stored.parse_iso_ms.
    return (dt.datetime.fromisoformat(event["createdAt"]) - _EPOCH) // _MS


def _split(body: dict[str, Any]) -> tuple[bytes, bytes]:
    head, tail = orjson.dumps(body).split(_SLOT_BYTES, 1)
    return head, tail
