"""What a request carries, read under the server's limits: JSON no deeper than MAX_DEPTH, objects
where objects belong, fields of the JSON kind they must be."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from generator.redaction import json_kind
from generator.server.answers import Response, error

__all__ = [
    "MAX_DEPTH",
    "depth_problem",
    "json_object",
    "message",
    "query",
    "text_field",
    "unreadable",
]

# How deep a request's JSON may nest. orjson reads 1,024 levels but writes only 254, and a
# stored event puts the client's fields one level down (in arbitraryData), inside exports that
# add more: far below both, and far above anything a client sends (the SDK sends flat fields).
MAX_DEPTH = 64


def depth_problem(raw: bytes | str, value: Any) -> str | None:
    """Why a parsed value nests too deep to keep (None when it does not)."""
    # Every level opens a bracket: with no more brackets than the limit, no walk is needed.
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    opened = data.count(b"{") + data.count(b"[")
    if opened <= MAX_DEPTH or _depth(value) <= MAX_DEPTH:
        return None
    return f"nested deeper than {MAX_DEPTH} levels"


def unreadable(exc: orjson.JSONDecodeError) -> str:
    """Why a line could not be parsed, as `/v1/ingest` reports it."""
    if _too_deep_to_parse(exc):
        return f"nested deeper than {MAX_DEPTH} levels"
    return f"malformed JSON: {exc}"


def _too_deep_to_parse(exc: orjson.JSONDecodeError) -> bool:
    # orjson stops at 1,024 levels with this message; deeper than our limit all the same.
    return str(exc).startswith("depth limit exceeded")


def _depth(value: Any) -> int:
    """Nesting depth of arrays and objects (a scalar is 0), walked without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def json_object(raw: bytes | str, what: str) -> dict[str, Any] | Response:
    """`raw` as a JSON object, or the 400 that says why it is not one."""
    if not raw:
        return error(400, "empty_body", f"{what} is empty; send a JSON object")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if _too_deep_to_parse(exc):
            return error(400, "too_deep", f"{what} is nested deeper than {MAX_DEPTH} levels")
        return error(400, "malformed_json", f"{what} is not valid JSON: {exc}")
    if not isinstance(value, dict):
        return error(400, "not_an_object", f"{what} must be a JSON object, not {json_kind(value)}")
    too_deep = depth_problem(raw, value)
    if too_deep is not None:
        return error(400, "too_deep", f"{what} is {too_deep}")
    return value


def query(raw: bytes) -> dict[str, str]:
    """The query string's parameters, the first value of each."""
    return {k: v[0] for k, v in parse_qs(raw.decode("latin-1"), keep_blank_values=True).items()}


def message(raw_query: bytes) -> dict[str, Any] | Response:
    """The GET form's `message` parameter (URL-encoded JSON) as an object."""
    params = query(raw_query)
    if "message" not in params:
        return error(400, "missing_message", "the GET form needs `message=` (URL-encoded JSON)")
    msg = json_object(params["message"], "`message`")
    if isinstance(msg, dict):
        for name in ("client_key", "clientKey"):
            if name in params and name not in msg:
                msg[name] = params[name]
    return msg


def text_field(
    msg: dict[str, Any], name: str, missing: str | None, what: str = ""
) -> str | Response | None:
    """`msg[name]` when it is a non-empty string.

    Absent, null or "" is missing: a 400 with reason `missing` (None when the field is optional,
    and then None is returned). Any other kind is the wrong kind: a 400 `wrong_field_type`.
    """
    value = msg.get(name)
    if isinstance(value, str) and value:
        return value
    if value is None or value == "":
        if missing is None:
            return None
        return error(400, missing, what or f"the request has no `{name}`")
    return error(400, "wrong_field_type", f"`{name}` must be a string, not {json_kind(value)}")
