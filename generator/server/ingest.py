"""Checks for `/v1/ingest`: stored-form events, one JSON object or NDJSON, checked line by line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

from generator.events.stored import ENVELOPE_FIELDS, ISO_MS, UUID
from generator.profile import Channel

__all__ = ["check_stored", "ingest_lines"]

_TYPE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_FRIENDLY_ID = re.compile(r"^[a-z0-9_]+$")
_CHANNELS = frozenset(c.value for c in Channel)
_EXECUTION = (
    "ref",
    "occurredAt",
    "flowRef",
    "flowFriendlyId",
    "flowVariantRef",
    "guestRef",
    "flowExecutionTimeMs",
    "status",
)


def ingest_lines(body: bytes) -> Iterator[tuple[int, Any]]:
    """(line number from 1, parsed value or the JSONDecodeError) for each non-blank line.

    A body that parses whole as one object is one event, even when pretty-printed over lines.
    """
    try:
        whole = orjson.loads(body)
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        yield 1, whole
        return
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, exc


def check_stored(event: Any, client_key: str) -> str | None:
    """Why this is not a stored-form event of this tenant, or None if it is one."""
    if not isinstance(event, dict):
        return f"not a JSON object (got {type(event).__name__})"
    missing = [f for f in ENVELOPE_FIELDS if f not in event]
    if event.get("type") == "TRACKING" and "flowExecutionRef" not in event:
        missing.append("flowExecutionRef")
    if missing:
        return f"missing field(s): {', '.join(missing)}"
    for name in ("ref", "browserRef", "sessionRef"):
        if not isinstance(event[name], str) or not UUID.match(event[name]):
            return f"{name} is not a lower-case UUID"
    if event["clientKey"] != client_key:
        return "clientKey is not this tenant's client key"
    for name in ("createdAt", "modifiedAt"):
        if not isinstance(event[name], str) or not ISO_MS.match(event[name]):
            return f"{name} is not ISO-8601 UTC with milliseconds (2025-01-10T18:07:59.247Z)"
    if event["modifiedAt"] < event["createdAt"]:
        return "modifiedAt is before createdAt"
    if not isinstance(event["type"], str) or not _TYPE.match(event["type"]):
        return "type is not an upper-case event type"
    if not isinstance(event["status"], str) or event["status"] not in ("PROCESSED", "FAILED"):
        return "status is not PROCESSED or FAILED"
    if not isinstance(event["channel"], str) or event["channel"] not in _CHANNELS:
        return f"channel {event['channel']!r} is not a CDP channel"
    if not isinstance(event["pointOfSale"], str) or not event["pointOfSale"]:
        return "pointOfSale is empty"
    if not isinstance(event["arbitraryData"], dict):
        return "arbitraryData is not an object"
    if event["type"] == "TRACKING":
        return _check_tracking(event)
    return None


def _check_tracking(event: dict[str, Any]) -> str | None:
    """The TRACKING invariants of spec section 1 that a schema cannot express."""
    if event["status"] != "PROCESSED":
        return "TRACKING status must be PROCESSED"
    data = event["arbitraryData"]
    execution = data.get("flowExecution")
    if not isinstance(execution, dict):
        return "arbitraryData.flowExecution is missing"
    missing = [f for f in _EXECUTION if f not in execution]
    if missing:
        return f"arbitraryData.flowExecution lacks {', '.join(missing)}"
    if execution["ref"] != event["flowExecutionRef"]:
        return "flowExecutionRef differs from arbitraryData.flowExecution.ref"
    for name in ("ref", "flowRef", "flowVariantRef", "guestRef"):
        if not isinstance(execution[name], str) or not UUID.match(execution[name]):
            return f"arbitraryData.flowExecution.{name} is not a lower-case UUID"
    if not isinstance(execution["flowFriendlyId"], str) or not _FRIENDLY_ID.match(
        execution["flowFriendlyId"]
    ):
        return "flowFriendlyId is not lower_snake_case"
    for name in ("occurredAt", "flowExecutionTimeMs"):
        value = execution[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"arbitraryData.flowExecution.{name} is not a non-negative integer"
    v3 = data.get("_bx_arbitraryDataV3ga")
    if not isinstance(v3, dict) or not isinstance(v3.get("bxt"), dict):
        return "arbitraryData._bx_arbitraryDataV3ga.bxt is missing"
    if v3["bxt"].get("flowExecution") != execution:
        return "_bx_arbitraryDataV3ga.bxt.flowExecution differs from arbitraryData.flowExecution"
    if v3["bxt"].get("category") != "EXECUTED":
        return "_bx_arbitraryDataV3ga.bxt.category is not EXECUTED"
    core = v3.get("core")
    if not isinstance(core, dict) or core.get("pointOfSale") != event["pointOfSale"]:
        return "_bx_arbitraryDataV3ga.core.pointOfSale differs from pointOfSale"
    if core.get("channel") != event["channel"]:
        return "_bx_arbitraryDataV3ga.core.channel differs from channel"
    return None
