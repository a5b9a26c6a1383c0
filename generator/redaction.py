"""What logs, reports and error bodies may show: client keys never whole, values and reasons cut
to a readable length, JSON kinds by their JSON names (never Python's)."""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["json_kind", "mask_key", "redact", "shorten", "shown"]

_KEY_IN_TEXT = re.compile(r"(client_?[kK]ey[=\":\s]+)([A-Za-z0-9]{4})[A-Za-z0-9]{8,}")
_SPACE = re.compile(r"\s+")


def mask_key(key: str) -> str:
    """All but the last 4 characters hidden (a key of 4 or fewer characters is hidden whole)."""
    return "****" + (key[-4:] if len(key) > 4 else "")


def redact(text: str) -> str:
    """Any client key inside free text (a log line, an error) cut to its first 4 characters."""
    return _KEY_IN_TEXT.sub(r"\1\2…", text)


def shorten(text: str, limit: int = 160) -> str:
    """One line of at most `limit` characters: runs of white space made one space, the rest cut
    with an ellipsis (and a note of how much was cut)."""
    text = _SPACE.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1].rstrip()}… ({len(text):,} characters)"


def json_kind(value: Any) -> str:
    """The JSON name of a parsed value's kind, with its article: "a string", "null"..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a value of no JSON kind"


def shown(value: Any, limit: int = 60) -> str:
    """A parsed value as JSON text for a message, cut to about `limit` characters."""
    try:
        text = orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):  # too deep, or not JSON at all
        text = json_kind(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
