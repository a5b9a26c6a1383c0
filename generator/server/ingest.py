"""Checks for `/v1/ingest`: stored-form events, one JSON object or NDJSON, checked line by line."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import orjson

from generator.events.checker import StoredEventChecker
from generator.server.bodies import depth_problem, unreadable

__all__ = ["check_stored", "ingest_lines"]


def ingest_lines(body: bytes) -> Iterator[tuple[int, Any, str | None]]:
    """(line number from 1, parsed value, why it cannot be read) for each non-blank line.

    A body that parses whole as one object is one event, even when pretty-printed over lines.
    """
    try:
        whole = orjson.loads(body)
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        yield 1, whole, depth_problem(body, whole)
        return
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, None, unreadable(exc)
            continue
        yield number, value, depth_problem(line, value)


def check_stored(event: Any, client_key: str) -> str | None:
    """Why this is not a stored-form event of this tenant (the first problem), or None."""
    problem = _checker(client_key).first(event)
    return problem.message if problem is not None else None


@cache
def _checker(client_key: str) -> StoredEventChecker:
    return StoredEventChecker(client_key=client_key, custom_types=True)
