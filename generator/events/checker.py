"""The one check of a stored event: every problem it has, for validate, /v1/ingest and replay."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import fastjsonschema
import orjson

from generator.events.stored import ENVELOPE_FIELDS, ISO_MS, TRACKING_FIELDS, UUID, parse_iso_ms
from generator.events.types import EVENT_TYPE_NAMES
from generator.profile import Channel
from generator.redaction import json_kind, shown
from generator.vocabulary import ORDER_STATUSES, is_custom_type

__all__ = ["Problem", "StoredEventChecker", "tracking_schema"]

_CLIENT_KEY = re.compile(r"^[A-Za-z0-9]{32}$")
_CHANNELS = frozenset(c.value for c in Channel)
# createdAt follows the flow's run by a few to a few hundred ms (spec section 1); a minute is
# the bound a stored TRACKING must keep.
TRACKING_DELAY_MS = 60_000


def _real_time(text: str) -> bool:
    """ISO-8601 UTC with milliseconds, naming a real instant (no month 13, no 30 February)."""
    if not ISO_MS.match(text):
        return False
    if (
        text[:4] != "0000"
        and "01" <= text[5:7] <= "12"
        and "01" <= text[8:10] <= "28"
        and text[11:13] <= "23"
        and text[14:16] <= "59"
        and text[17:19] <= "59"
    ):
        return True  # every month has 28 days: no calendar needed (the common case, and fast)
    try:
        parse_iso_ms(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an event: `kind` groups problems in a report, `message` explains."""

    kind: str
    message: str


def tracking_schema() -> dict[str, Any]:
    """The TRACKING JSON Schema shipped with the package (a copy of the spec's)."""
    text = files("generator.events").joinpath("tracking-event.schema.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(text)
    return schema


@cache
def _compiled_schema() -> Callable[[Any], Any]:
    schema = tracking_schema()
    # fastjsonschema compiles draft-07; the schema uses nothing 2020-12 adds beyond $defs refs.
    schema = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
    return fastjsonschema.compile(schema)


@dataclass(frozen=True)
class StoredEventChecker:
    """What a stored event must be, given what the caller knows of its tenant.

    Every argument is optional: the server knows only its client key; a dataset's reader also
    knows the points of sale (name -> channels), the browsers' guests and the flows
    (friendlyId -> (flowRef, variant refs)), and checks those too.
    """

    client_key: str | None = None
    points_of_sale: Mapping[str, Collection[str]] | None = None
    browser_owner: Mapping[str, str] | None = None
    flows: Mapping[str, tuple[str, Collection[str]]] | None = None
    # The Stream API also takes custom upper-case types (spec section 6); a dataset has none.
    custom_types: bool = False
    _flow_by_ref: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for friendly, (ref, _) in (self.flows or {}).items():
            self._flow_by_ref[ref] = friendly

    @classmethod
    def for_dataset(
        cls, manifest: Mapping[str, Any], browser_owner: Mapping[str, str]
    ) -> StoredEventChecker:
        """The checker of a dataset's events: its manifest's tenant, points of sale and flows,
        and its guests' browsers (what `validate` and `replay` both check against). A manifest
        without `flows` leaves TRACKING's flow refs unchecked (a hand-made fixture may omit it)."""
        pos_table = manifest.get("pointsOfSale")
        flows = manifest.get("flows")
        key = manifest.get("clientKey")
        return cls(
            client_key=key if isinstance(key, str) else "",
            points_of_sale={
                str(name): tuple(info.get("channels", _CHANNELS))
                for name, info in (pos_table.items() if isinstance(pos_table, dict) else ())
                if isinstance(info, dict)
            },
            browser_owner=browser_owner,
            flows=None
            if flows is None
            else {
                str(name): (
                    str(f.get("flowRef")),
                    tuple(str(v.get("flowVariantRef")) for v in f.get("variants", ())),
                )
                for name, f in (flows.items() if isinstance(flows, dict) else ())
                if isinstance(f, dict)
            },
        )

    def first(self, event: Any) -> Problem | None:
        """The first problem, or None for a good event."""
        found = self.problems(event)
        return found[0] if found else None

    def problems(self, event: Any) -> list[Problem]:
        """Every problem of the event, envelope first; [] for a good event."""
        if not isinstance(event, dict):
            return [Problem("envelope", f"not a JSON object (got {json_kind(event)})")]
        out: list[Problem] = []
        add = out.append
        etype = event.get("type")
        expected = TRACKING_FIELDS if etype == "TRACKING" else ENVELOPE_FIELDS
        missing = [f for f in expected if f not in event]
        if missing:
            return [Problem("envelope", f"missing field(s): {', '.join(missing)}")]
        extra = [f for f in event if f not in expected]
        if extra:
            add(Problem("envelope", f"unexpected field(s): {', '.join(extra)}"))
        if not isinstance(etype, str) or not (
            etype in EVENT_TYPE_NAMES or (self.custom_types and is_custom_type(etype))
        ):
            add(Problem("type", f"unknown event type {shown(etype)}"))
        for name in ("ref", "browserRef", "sessionRef"):
            if not isinstance(event[name], str) or not UUID.match(event[name]):
                add(Problem("ref", f"{name} {shown(event[name])} is not a lower-case UUID"))
        key = event["clientKey"]
        if not isinstance(key, str) or not _CLIENT_KEY.match(key):
            add(Problem("clientKey", "clientKey is not 32 letters and digits"))
        elif self.client_key is not None and key != self.client_key:
            add(Problem("clientKey", "clientKey is not this tenant's client key"))
        times_ok = True
        for name in ("createdAt", "modifiedAt"):
            if not isinstance(event[name], str) or not _real_time(event[name]):
                add(
                    Problem(
                        "timestamp",
                        f"{name} is not a real time in ISO-8601 UTC with milliseconds "
                        "(2025-01-10T18:07:59.247Z)",
                    )
                )
                times_ok = False
        if times_ok and event["modifiedAt"] < event["createdAt"]:
            add(Problem("timestamp", "modifiedAt is before createdAt"))
        if event["status"] not in ("PROCESSED", "FAILED"):
            add(Problem("status", f"status {shown(event['status'])} is not PROCESSED or FAILED"))
        pos, channel = event["pointOfSale"], event["channel"]
        if not isinstance(channel, str) or channel not in _CHANNELS:
            add(Problem("channel", f"channel {shown(channel)} is not a CDP channel"))
        if not isinstance(pos, str) or not pos:
            add(Problem("pointOfSale", "pointOfSale is not a non-empty string"))
        elif self.points_of_sale is not None:
            channels = self.points_of_sale.get(pos)
            if channels is None:
                add(Problem("pointOfSale", f"unknown point of sale {shown(pos)}"))
            elif channel not in channels:
                add(Problem("channel", f"channel {shown(channel)} is not used at {pos}"))
        browser = event["browserRef"]
        if self.browser_owner is not None and browser not in self.browser_owner:
            add(Problem("browser", f"browser {browser} is in no guest of guests.jsonl"))
        if not isinstance(event["arbitraryData"], dict):
            add(Problem("arbitraryData", "arbitraryData is not an object"))
        elif etype == "TRACKING":
            out.extend(self._tracking(event, times_ok))
        elif etype == "CHECKOUT":
            status = event["arbitraryData"].get("status")
            if status not in ORDER_STATUSES:
                add(
                    Problem(
                        "order status",
                        f"CHECKOUT status {shown(status)} is not one of "
                        f"{', '.join(ORDER_STATUSES)}",
                    )
                )
        return out

    def _tracking(self, event: dict[str, Any], times_ok: bool) -> list[Problem]:
        """The schema, then the invariants of spec section 1 that a schema cannot express."""
        try:
            _compiled_schema()(event)
        except fastjsonschema.JsonSchemaException as exc:
            return [Problem("tracking schema", f"TRACKING breaks the schema: {exc}")]
        out: list[Problem] = []
        add = out.append
        data = event["arbitraryData"]
        fx = data["flowExecution"]
        v3 = data["_bx_arbitraryDataV3ga"]
        if not (event["flowExecutionRef"] == fx["ref"] == v3["bxt"]["flowExecution"]["ref"]):
            add(Problem("tracking refs", "the three flow execution refs differ"))
        if v3["bxt"]["flowExecution"] != fx:
            add(
                Problem(
                    "tracking copy",
                    "_bx_arbitraryDataV3ga.bxt.flowExecution differs from "
                    "arbitraryData.flowExecution",
                )
            )
        if v3["core"] != {"pointOfSale": event["pointOfSale"], "channel": event["channel"]}:
            add(Problem("tracking core", "core pointOfSale/channel differ from the envelope's"))
        if times_ok:
            delay = parse_iso_ms(event["createdAt"]) - fx["occurredAt"]
            if not 0 < delay < TRACKING_DELAY_MS:
                add(
                    Problem(
                        "tracking time",
                        f"createdAt is {delay} ms after occurredAt (must be 1 to "
                        f"{TRACKING_DELAY_MS - 1})",
                    )
                )
        owner = (self.browser_owner or {}).get(event["browserRef"])
        if owner is not None and fx["guestRef"] != owner:
            add(Problem("tracking guest", "guestRef is not the guest that owns browserRef"))
        if self.flows is not None:
            friendly = fx["flowFriendlyId"]
            if self._flow_by_ref.get(fx["flowRef"]) != friendly:
                add(Problem("tracking flow", "flowRef/flowFriendlyId is not a flow of the tenant"))
            elif fx["flowVariantRef"] not in self.flows[friendly][1]:
                add(Problem("tracking flow", f"flowVariantRef is not a variant of {friendly}"))
        return out
