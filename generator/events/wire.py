"""Wire-form events: what a client sends to the Stream API, and the stored event it becomes.

Client events are flat JSON bodies (`@sitecore/engage` 1.4.3, server mode). A stored client event
keeps in `arbitraryData` every field the client sent except the ones the envelope holds, so the
two forms convert both ways without loss. TRACKING is never sent: it is replayed as `callFlows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENVELOPE_WIRE_FIELDS",
    "GUEST_HINT",
    "LIBRARY_VERSION",
    "OCCURRED_HINT",
    "WireRequest",
    "arbitrary_data_from_wire",
    "browser_create",
    "call_flow",
    "client_event",
]

LIBRARY_VERSION = "1.4.3"
# Wire fields that become envelope fields of the stored event, not arbitraryData.
ENVELOPE_WIRE_FIELDS = frozenset({"type", "browser_id", "channel", "client_key", "pos"})


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One HTTP request as the official client would make it; `name` groups it in statistics."""

    method: str
    path: str
    name: str
    body: dict[str, Any] | None = None


# A query parameter the embedded server reads and any other target ignores: the guest the new
# browser belongs to, so that a replayed dataset keeps its guests (and so its flow assignments).
GUEST_HINT = "cdpsim_guest_ref"
# A callFlows `params` entry the embedded server reads (a flow's custom parameters, which any
# other target passes to its flow or ignores): when the flow ran in the dataset, epoch ms. An
# optimized flow's variant depends on the period of the guest's first exposure.
OCCURRED_HINT = "cdpsim_occurred_at"


def browser_create(client_key: str, guest_ref: str | None = None) -> WireRequest:
    # The SDK sends `message={}` unencoded; we do the same so servers see what CDP sees.
    path = f"/v1.2/browser/create.json?client_key={client_key}&message={{}}"
    if guest_ref is not None:
        path += f"&{GUEST_HINT}={guest_ref}"
    return WireRequest("GET", path, "browser/create")


def client_event(stored: dict[str, Any], browser_id: str) -> WireRequest:
    """The `POST /v1.2/events` request that makes this stored client event."""
    body = {
        "type": stored["type"],
        "browser_id": browser_id,
        "channel": stored["channel"],
        "client_key": stored["clientKey"],
        "pos": stored["pointOfSale"],
        **stored["arbitraryData"],
    }
    return WireRequest("POST", "/v1.2/events", "events", body)


def call_flow(
    stored_tracking: dict[str, Any], browser_id: str, language: str, currency: str
) -> WireRequest:
    """The `POST /v2/callFlows` request that makes the server record this TRACKING event."""
    execution = stored_tracking["arbitraryData"]["flowExecution"]
    body = {
        "channel": stored_tracking["channel"],
        "clientKey": stored_tracking["clientKey"],
        "currencyCode": currency,
        "friendlyId": execution["flowFriendlyId"],
        "language": language,
        "pointOfSale": stored_tracking["pointOfSale"],
        "browserId": browser_id,
        "params": {OCCURRED_HINT: int(execution["occurredAt"])},
    }
    return WireRequest("POST", "/v2/callFlows", "callFlows", body)


def arbitrary_data_from_wire(body: dict[str, Any]) -> dict[str, Any]:
    """What a server keeps in arbitraryData for a client event body."""
    return {k: v for k, v in body.items() if k not in ENVELOPE_WIRE_FIELDS}
