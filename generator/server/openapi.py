"""The OpenAPI description of the embedded server's Stream API surface (`/_cdpsim/openapi.json`):
what a client may send, and every answer it may get, failures included."""

from __future__ import annotations

from typing import Any

import orjson

from generator.events.stored import ENVELOPE_FIELDS
from generator.profile import Channel
from generator.server.bodies import MAX_DEPTH
from generator.vocabulary import CLIENT_TYPES, CUSTOM_TYPE_MAX_LENGTH, CUSTOM_TYPE_RULE, EventType

__all__ = ["DESCRIPTION", "description_bytes"]

_REF = "#/components/schemas/"
_STRING = {"type": "string"}
_CHANNEL = {"type": "string", "enum": [c.value for c in Channel]}
_UUID = {
    "type": "string",
    "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
}
_ISO_MS = {
    "type": "string",
    # Years 0001 to 9999, as datetime has them.
    "pattern": "^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
    "-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9][.][0-9]{3}Z$",
}
# A client's event type: one of CDP's, or a custom one (the server refuses TRACKING and SC_...).
_CUSTOM = f"^[A-Z][A-Z0-9_]{{0,{CUSTOM_TYPE_MAX_LENGTH - 1}}}$"
_CLIENT_TYPE = {
    "type": "string",
    "description": f"a client type of CDP's, or a custom one ({CUSTOM_TYPE_RULE})",
    "anyOf": [{"enum": sorted(t.name for t in CLIENT_TYPES)}, {"pattern": _CUSTOM}],
}
_STORED_TYPE = {
    "type": "string",
    "anyOf": [
        {"enum": [t.name for t in EventType if t is not EventType.TRACKING]},
        {"pattern": _CUSTOM},
    ],
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


# Failures any Stream call may get: faults on demand (--throttle-rps, --fail-rate) and a full
# write queue. 4xx answers name the reason in the body.
_FAULTS = {
    "429": {
        **_error("over --throttle-rps (reason `throttled`); see Retry-After"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
    "503": {
        **_error("`fault_injected` (--fail-rate) or `queue_full`; see Retry-After"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}
_IDEMPOTENCY = {
    "name": "X-Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A repeat of a key gets the first 2xx answer and stores nothing.",
    "schema": _STRING,
}
_CLIENT_KEY_QUERY = {
    "name": "client_key",
    "in": "query",
    "required": False,
    "description": "The tenant's client key (or in the message itself).",
    "schema": _STRING,
}


def _message_query(schema: str) -> dict[str, Any]:
    return {
        "name": "message",
        "in": "query",
        "required": True,
        "description": "The message as URL-encoded JSON (the POST form's body).",
        "content": {"application/json": {"schema": _ref(schema)}},
    }


_EVENT_ANSWERS = {
    "201": _json(_ref("EventAccepted"), "stored (or, for an unknown `pos`, dropped as CDP does)"),
    "400": _error("not a JSON object, a field missing or of the wrong kind, nested too deep"),
    "401": _error("unknown or missing client key"),
    "404": _error("unknown `browser_id`"),
    "413": _error("body over 1 MiB"),
    **_FAULTS,
}
_FLOW_ANSWERS = {
    "200": _json(_ref("FlowResult"), "the flow ran (a TRACKING is stored), or left the guest out"),
    "400": _error("not a JSON object, a field missing or of the wrong kind, unknown point of sale"),
    "401": _error("unknown or missing client key"),
    "404": _error("unknown flow, browser or identified guest"),
    "413": _error("body over 1 MiB"),
    **_FAULTS,
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["status", "code", "reason", "error_msg"],
        "properties": {
            "status": {"type": "string", "enum": ["ERROR"]},
            "code": {"type": "integer", "minimum": 400, "maximum": 599},
            "reason": {"type": "string", "pattern": "^[a-z_]+$"},
            "error_msg": {"type": "string", "minLength": 1},
            "endpoints": {"type": "array", "items": _STRING},
        },
    },
    "BrowserCreated": {
        "type": "object",
        "additionalProperties": False,
        "required": ["status", "version", "client_key", "ref", "customer_ref"],
        "properties": {
            "status": {"type": "string", "enum": ["OK"]},
            "version": {"type": "string", "enum": ["1.2"]},
            "client_key": _STRING,
            "ref": {"type": "string", "format": "uuid"},
            "customer_ref": {"type": "string", "format": "uuid"},
        },
    },
    "EventMessage": {
        "type": "object",
        "description": "What the JS SDK sends: flat fields, any others kept in arbitraryData. "
        f"JSON nested deeper than {MAX_DEPTH} levels is refused.",
        "required": ["type", "browser_id", "pos"],
        "properties": {
            "type": _CLIENT_TYPE,
            "browser_id": _STRING,
            "client_key": _STRING,
            "channel": _CHANNEL,
            "pos": _STRING,
            "language": _STRING,
            "currency": _STRING,
            "page": _STRING,
            "email": _STRING,
            "identifiers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["provider", "id"],
                    "properties": {"provider": _STRING, "id": _STRING},
                },
            },
        },
    },
    "EventAccepted": {
        "type": "object",
        "additionalProperties": False,
        "required": ["status", "version"],
        "properties": {
            "status": {"type": "string", "enum": ["OK"]},
            "version": {"type": "string", "enum": ["1.2"]},
            "ref": {"type": "string", "format": "uuid"},
        },
    },
    "FlowCall": {
        "type": "object",
        "required": ["friendlyId", "pointOfSale"],
        "properties": {
            "clientKey": _STRING,
            "friendlyId": _STRING,
            "browserId": _STRING,
            "email": _STRING,
            "pointOfSale": _STRING,
            "channel": _CHANNEL,
            "language": _STRING,
            "currencyCode": _STRING,
            "params": {"type": "object"},
        },
    },
    "FlowResult": {
        "type": "object",
        "additionalProperties": False,
        "required": ["friendlyId", "flowRef", "variant"],
        "properties": {
            "friendlyId": _STRING,
            "flowRef": _STRING,
            "flowExecutionRef": {"type": "string", "format": "uuid"},
            "variant": {
                "type": "object",
                "nullable": True,
                "additionalProperties": False,
                "required": ["ref", "name"],
                "properties": {"ref": _STRING, "name": _STRING},
            },
            "guestRef": {"type": "string", "format": "uuid"},
            "browserRef": _STRING,
            "sessionRef": {"type": "string", "format": "uuid"},
            "reason": _STRING,
        },
    },
    "StoredEvent": {
        "type": "object",
        "additionalProperties": False,
        "description": "An event in CDP's stored form (README: A dataset on disk); a TRACKING "
        "event adds flowExecutionRef and meets tracking-event.schema.json.",
        "required": list(ENVELOPE_FIELDS),  # the envelope's one home
        "properties": {
            "ref": _UUID,
            "clientKey": _STRING,
            "createdAt": _ISO_MS,
            "modifiedAt": _ISO_MS,
            "type": _STORED_TYPE,
            "status": {"type": "string", "enum": ["PROCESSED", "FAILED"]},
            "channel": _CHANNEL,
            "pointOfSale": {"type": "string", "minLength": 1},
            "browserRef": _UUID,
            "sessionRef": _UUID,
            "flowExecutionRef": _UUID,
            "arbitraryData": {"type": "object"},
        },
    },
    "IngestResult": {
        "type": "object",
        "required": ["accepted", "stored", "duplicates", "rejected"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 0},
            "stored": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
            "rejected": _ref("RejectedLines"),
        },
    },
    "IngestRefused": {
        "allOf": [
            _ref("Error"),
            {
                "type": "object",
                "properties": {
                    "accepted": {"type": "integer", "enum": [0]},
                    "rejected": _ref("RejectedLines"),
                },
            },
        ]
    },
    "RejectedLines": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["line", "reason"],
            "properties": {"line": {"type": "integer", "minimum": 1}, "reason": _STRING},
        },
    },
    "Counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
    "Stats": {
        "type": "object",
        "required": [
            "stored",
            "total",
            "duplicates",
            "rejected",
            "dropped",
            "browsers",
            "sessions",
            "ledger",
            "uptimeSeconds",
        ],
        "properties": {
            "stored": _ref("Counts"),
            "total": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
            "rejected": _ref("Counts"),
            "dropped": _ref("Counts"),
            "browsers": {"type": "integer", "minimum": 0},
            "sessions": {"type": "integer", "minimum": 0},
            "ledger": {"type": "object"},
            "uptimeSeconds": {"type": "number", "minimum": 0},
        },
    },
    "Healthy": {
        "type": "object",
        "additionalProperties": False,
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["OK"]}},
    },
}

DESCRIPTION: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "cdpsim embedded Stream API",
        "version": "1.2",
        "description": "The Sitecore CDP Stream API calls the embedded server answers "
        "(docs/server.md). Every failure is JSON in the Error shape.",
    },
    "paths": {
        "/v1.2/browser/create.json": {
            "get": {
                "operationId": "browserCreate",
                "parameters": [
                    {**_CLIENT_KEY_QUERY, "required": True},
                    {
                        "name": "message",
                        "in": "query",
                        "required": False,
                        "description": "`{}` as the SDK sends it (not read).",
                        "schema": _STRING,
                    },
                    {
                        "name": "cdpsim_guest_ref",
                        "in": "query",
                        "required": False,
                        "description": "File the browser under this guest (a replayed one).",
                        "schema": _STRING,
                    },
                    _IDEMPOTENCY,
                ],
                "responses": {
                    "200": _json(_ref("BrowserCreated"), "a new browser and its guest"),
                    "400": _error("a URL over 64 KiB, or not well-formed HTTP"),
                    "401": _error("unknown or missing client key"),
                    **_FAULTS,
                },
            }
        },
        "/v1.2/events": {
            "post": {
                "operationId": "eventPost",
                "parameters": [_CLIENT_KEY_QUERY, _IDEMPOTENCY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("EventMessage")}},
                },
                "responses": _EVENT_ANSWERS,
            }
        },
        "/v1.2/event/create.json": {
            "get": {
                "operationId": "eventGet",
                "parameters": [_CLIENT_KEY_QUERY, _message_query("EventMessage"), _IDEMPOTENCY],
                "responses": _EVENT_ANSWERS,
            }
        },
        "/v2/callFlows": {
            "post": {
                "operationId": "callFlowsPost",
                "parameters": [_IDEMPOTENCY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("FlowCall")}},
                },
                "responses": _FLOW_ANSWERS,
            },
            "get": {
                "operationId": "callFlowsGet",
                "parameters": [_CLIENT_KEY_QUERY, _message_query("FlowCall"), _IDEMPOTENCY],
                "responses": _FLOW_ANSWERS,
            },
        },
        "/v1/ingest": {
            "post": {
                "operationId": "ingest",
                "description": "One stored-form event, or NDJSON of them (line by line).",
                "parameters": [_IDEMPOTENCY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("StoredEvent")}},
                },
                "responses": {
                    "200": _json(_ref("IngestResult"), "at least one line was a valid event"),
                    "400": _json(_ref("IngestRefused"), "no line was a valid event"),
                    "413": _error("body over 16 MiB"),
                    **_FAULTS,
                },
            }
        },
        "/_cdpsim/stats": {
            "get": {
                "operationId": "stats",
                "responses": {"200": _json(_ref("Stats"), "what the ledger holds")},
            }
        },
        "/_cdpsim/healthz": {
            "get": {
                "operationId": "healthz",
                "responses": {"200": _json(_ref("Healthy"), "the ledger is open")},
            }
        },
        "/_cdpsim/openapi.json": {
            "get": {
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "this description")},
            }
        },
    },
    "components": {"schemas": _SCHEMAS},
}


def description_bytes() -> bytes:
    return orjson.dumps(DESCRIPTION)
