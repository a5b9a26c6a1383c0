"""The data lake's six entities: each one's Parquet schema, and its rows from the entities."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pyarrow as pa

from generator.dataset.entities import (
    GuestState,
    Order,
    SessionEntity,
    StoredEvent,
    duration_minutes_seconds,
    ms_of,
)

__all__ = [
    "EVENTS",
    "EXPERIENCE_DEFINITIONS",
    "GUESTS",
    "ORDERS",
    "ORDER_ITEMS",
    "SCHEMAS",
    "SESSIONS",
    "event_row",
    "experience_rows",
    "guest_row",
    "order_item_rows",
    "order_ref",
    "order_row",
    "session_row",
    "writer_options",
]

TS = pa.timestamp("ms", tz="UTC")
STR = pa.string()
MAP = pa.map_(pa.string(), pa.string())

GUESTS = pa.schema(
    [
        ("meta_ref", STR),
        ("meta_client_key", STR),
        ("meta_created_at", TS),
        ("meta_modified_at", TS),
        ("type", STR),
        ("core_first_seen_at", TS),
        ("core_last_seen_at", TS),
        ("bxt", MAP),
        ("ext", MAP),
        ("session_traits", MAP),
        ("raw", STR),
    ]
)
# meta_created_at_date is the partition column: it lives in the directory names (hive style),
# not in the files, as pyarrow and Spark write partitioned data.
SESSIONS = pa.schema(
    [
        ("meta_ref", STR),
        ("meta_client_key", STR),
        ("meta_created_at", TS),
        ("meta_modified_at", TS),
        ("meta_guest_ref", STR),
        ("meta_browser_ref", STR),
        ("session_type", STR),
        ("core_channel", STR),
        ("core_currency_code", STR),
        ("core_point_of_sale", STR),
        ("core_status", STR),
        ("core_started_at", TS),
        ("core_ended_at", TS),
        ("core_duration", pa.float64()),
        ("core_value", pa.float64()),
        ("core_flow_refs", pa.list_(STR)),
        ("bxt", MAP),
        ("ext", MAP),
    ]
)
EVENTS = pa.schema(
    [
        ("meta_ref", STR),
        ("meta_client_key", STR),
        ("meta_created_at", TS),
        ("meta_modified_at", TS),
        ("meta_session_ref", STR),
        ("meta_guest_ref", STR),
        ("meta_browser_ref", STR),
        ("type", STR),
        ("status", STR),
        ("core_channel", STR),
        ("core_currency_code", STR),
        ("core_language", STR),
        ("core_page", STR),
        ("core_point_of_sale", STR),
        ("bxt", MAP),
        ("ext", MAP),
        ("flow_execution_created_at", TS),
        ("flow_execution_dm_ref", STR),
        ("flow_execution_dm_variant_ref", STR),
        ("flow_execution_flow_ref", STR),
        ("flow_execution_flow_friendly_id", STR),
        ("flow_execution_flow_variant_ref", STR),
        ("flow_execution_guest_ref", STR),
        ("flow_execution_ref", STR),
        ("flow_execution_status", STR),
        ("flow_execution_latency_ms", pa.int32()),
    ]
)
ORDERS = pa.schema(
    [
        ("meta_ref", STR),
        ("meta_client_key", STR),
        ("meta_created_at", TS),
        ("meta_modified_at", TS),
        ("meta_guest_ref", STR),
        ("meta_session_ref", STR),
        ("core_currency_code", STR),
        ("core_ordered_at", TS),
        ("core_price", pa.float64()),
        ("core_reference_id", STR),
        ("core_status", STR),
        ("type", STR),
        ("bxt", MAP),
        ("ext", MAP),
    ]
)
ORDER_ITEMS = pa.schema(
    [
        ("meta_ref", STR),
        ("meta_client_key", STR),
        ("meta_created_at", TS),
        ("meta_modified_at", TS),
        ("meta_order_ref", STR),
        ("core_currency_code", STR),
        ("core_item_id", STR),
        ("core_name", STR),
        ("core_ordered_at", TS),
        ("core_price", pa.float64()),
        ("core_product_id", STR),
        ("core_quantity", pa.int32()),
        ("core_reference_id", STR),
        ("core_status", STR),
        ("core_type", STR),
        ("ext", MAP),
    ]
)
EXPERIENCE_DEFINITIONS = pa.schema(
    [
        ("meta_ref", STR),
        ("meta_client_key", STR),
        ("meta_created_at", TS),
        ("meta_modified_at", TS),
        ("friendly_id", STR),
        ("name", STR),
        ("type", STR),
        ("status", STR),
        ("goal_product_type", STR),
        ("attribution_hours", pa.int32()),
        ("traffic_allocation", pa.float64()),
        (
            "variants",
            pa.list_(
                pa.struct(
                    [
                        ("ref", STR),
                        ("name", STR),
                        ("weight", pa.float64()),
                        ("configured_conversion_rate", pa.float64()),
                    ]
                )
            ),
        ),
    ]
)
SCHEMAS: dict[str, pa.Schema] = {
    "guests": GUESTS,
    "sessions": SESSIONS,
    "events": EVENTS,
    "orders": ORDERS,
    "order_items": ORDER_ITEMS,
    "experience_definitions": EXPERIENCE_DEFINITIONS,
}


def writer_options(entity: str) -> dict[str, Any]:
    """How every Parquet file of an entity is written (by both paths): zstd, which compresses
    the repeated refs better than dictionaries would, and cheaper to write; min/max statistics
    on the time columns only, which is what readers prune row groups by."""
    return {
        "compression": "zstd",
        "use_dictionary": False,
        "write_statistics": [
            n for n, t in zip(SCHEMAS[entity].names, SCHEMAS[entity].types, strict=True) if t == TS
        ],
    }


# Orders get a ref of their own, apart from the reference id the events carry (as in CDP, where
# the reference id is the client's and meta_ref the tenant's).
_ORDER_NS = uuid.UUID("5f0c3b5e-6c61-4b1e-9a57-6f7264657273")

_IN_COLUMNS = frozenset({"language", "currency", "page", "flowExecution", "_bx_arbitraryDataV3ga"})


def order_ref(reference_id: str) -> str:
    return str(uuid.uuid5(_ORDER_NS, reference_id))


def _flat(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else k, v, out)
    elif isinstance(value, str):
        out.append((prefix, value))
    else:  # numbers, booleans and lists keep their JSON text
        out.append((prefix, orjson.dumps(value).decode()))


def event_row(e: StoredEvent) -> dict[str, Any]:
    body = e.body
    data = body.get("arbitraryData") or {}
    bxt: list[tuple[str, str]] = []
    for k, v in data.items():
        if k not in _IN_COLUMNS:
            _flat(k, v, bxt)
    row: dict[str, Any] = {
        "meta_ref": body["ref"],
        "meta_client_key": body["clientKey"],
        "meta_created_at": e.created_ms,
        "meta_modified_at": ms_of(body["modifiedAt"].encode()),
        "meta_session_ref": body["sessionRef"],
        "meta_guest_ref": e.guest_ref,
        "meta_browser_ref": body["browserRef"],
        "type": body["type"],
        "status": body["status"],
        "core_channel": body["channel"],
        "core_currency_code": data.get("currency"),
        "core_language": data.get("language"),
        "core_page": data.get("page"),
        "core_point_of_sale": body["pointOfSale"],
        "bxt": bxt,
        "ext": [],
    }
    fe = data.get("flowExecution")
    if fe is not None:
        bxt.append(("category", data["_bx_arbitraryDataV3ga"]["bxt"]["category"]))
        row.update(
            flow_execution_created_at=fe["occurredAt"],
            flow_execution_flow_ref=fe["flowRef"],
            flow_execution_flow_friendly_id=fe["flowFriendlyId"],
            flow_execution_flow_variant_ref=fe["flowVariantRef"],
            flow_execution_guest_ref=fe["guestRef"],
            flow_execution_ref=fe["ref"],
            flow_execution_status=fe["status"],
            flow_execution_latency_ms=fe["flowExecutionTimeMs"],
        )
    return row


def session_row(s: SessionEntity, client_key: str) -> dict[str, Any]:
    c = s.counts
    bxt = [
        ("cartType", s.cart_type),
        ("language", s.language),
        ("numCheckouts", str(c.get("CHECKOUT", 0))),
        ("numConfirms", str(c.get("CONFIRM", 0))),
        ("numEvents", str(sum(c.values()))),
        ("numIdentities", str(c.get("IDENTITY", 0))),
        ("numPayments", str(c.get("PAYMENT", 0))),
        ("numSearches", str(c.get("SEARCH", 0))),
        ("numSelects", str(c.get("ADD", 0))),
        ("numTrackings", str(c.get("TRACKING", 0))),
        ("numViews", str(c.get("VIEW", 0))),
    ]
    return {
        "meta_ref": s.ref,
        "meta_client_key": client_key,
        "meta_created_at": s.started_ms,
        "meta_modified_at": s.ended_ms,
        "meta_guest_ref": s.guest_ref,
        "meta_browser_ref": s.browser_ref,
        "session_type": "BROWSER",
        "core_channel": s.channel,
        "core_currency_code": s.currency,
        "core_point_of_sale": s.point_of_sale,
        "core_status": s.status,
        "core_started_at": s.started_ms,
        "core_ended_at": s.ended_ms,
        "core_duration": duration_minutes_seconds(s.ended_ms - s.started_ms),
        "core_value": s.value,
        "core_flow_refs": s.flows,
        "bxt": bxt,
        "ext": [],
    }


def order_row(o: Order, client_key: str) -> dict[str, Any]:
    bxt = [("channel", o.channel), ("pointOfSale", o.point_of_sale)]
    if o.pay_type is not None:
        bxt.append(("paymentType", o.pay_type))
    return {
        "meta_ref": order_ref(o.ref),
        "meta_client_key": client_key,
        "meta_created_at": o.ordered_ms,
        "meta_modified_at": max(o.modified_ms, o.ordered_ms),
        "meta_guest_ref": o.guest_ref,
        "meta_session_ref": o.session_ref,
        "core_currency_code": o.currency,
        "core_ordered_at": o.ordered_ms,
        "core_price": o.price,
        "core_reference_id": o.ref,
        "core_status": o.status,
        "type": "STANDARD",
        "bxt": bxt,
        "ext": [],
    }


def order_item_rows(o: Order, client_key: str) -> list[dict[str, Any]]:
    mine = order_ref(o.ref)
    return [
        {
            "meta_ref": i.ref,
            "meta_client_key": client_key,
            "meta_created_at": i.created_ms,
            "meta_modified_at": max(o.modified_ms, o.ordered_ms),
            "meta_order_ref": mine,
            "core_currency_code": i.currency,
            "core_item_id": i.item_id,
            "core_name": i.name,
            "core_ordered_at": o.ordered_ms,
            "core_price": i.price,
            "core_product_id": i.product_id,
            "core_quantity": i.quantity,
            "core_reference_id": o.ref,
            "core_status": o.status,
            "core_type": i.type,
            "ext": [],
        }
        for i in o.items
    ]


def guest_row(
    ref: str,
    record: dict[str, Any],
    state: GuestState,
    identity: dict[str, Any] | None,
    client_key: str,
) -> dict[str, Any]:
    """A guest as of the snapshot: CUSTOMER, with the names it gave, once it sent IDENTITY."""
    customer = state.identified_ms is not None
    bxt = [("language", record["language"]), ("pointOfSale", record["pointOfSale"])]
    raw: dict[str, Any] = {"guestRef": ref, "type": "CUSTOMER" if customer else "VISITOR"}
    if customer and identity is not None:
        email = identity.get("email", record["email"])
        bxt += [
            ("email", email),
            ("emails", orjson.dumps([email]).decode()),
            ("firstName", identity.get("firstname", record["firstName"])),
            ("lastName", identity.get("lastname", record["lastName"])),
        ]
        raw.update(firstName=record["firstName"], lastName=record["lastName"], email=email)
    bxt.sort()
    raw.update(
        pointOfSale=record["pointOfSale"], language=record["language"], browsers=record["browsers"]
    )
    return {
        "meta_ref": ref,
        "meta_client_key": client_key,
        "meta_created_at": state.first_ms,
        "meta_modified_at": max(state.last_ms, state.identified_ms or 0),
        "type": raw["type"],
        "core_first_seen_at": state.first_ms,
        "core_last_seen_at": state.last_ms,
        "bxt": bxt,
        "ext": [],
        "session_traits": [
            ("lastPointOfSale", state.last_point_of_sale),
            ("numOrders", str(state.orders)),
            ("numSessions", str(state.sessions)),
        ],
        "raw": orjson.dumps(raw).decode(),
    }


def experience_rows(manifest: dict[str, Any], start_ms: int) -> list[dict[str, Any]]:
    rows = []
    for friendly, f in manifest["flows"].items():
        rows.append(
            {
                "meta_ref": f["flowRef"],
                "meta_client_key": manifest["clientKey"],
                "meta_created_at": start_ms,
                "meta_modified_at": start_ms,
                "friendly_id": friendly,
                "name": friendly.replace("_", " "),
                "type": f["kind"].upper(),
                "status": "PRODUCTION",
                "goal_product_type": f["goalProductType"],
                "attribution_hours": f["attributionHours"],
                "traffic_allocation": f["trafficAllocation"],
                "variants": [
                    {
                        "ref": v["flowVariantRef"],
                        "name": v["name"],
                        "weight": v["weight"],
                        "configured_conversion_rate": v["conversionRate"],
                    }
                    for v in f["variants"]
                ],
            }
        )
    return rows
