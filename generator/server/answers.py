"""HTTP answers of the embedded server: JSON bodies, and the error shape every failure uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Response", "error", "json_answer"]

_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class Response:
    """A status, a JSON body, extra headers, and (for failures) the reason counted in stats."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return [_JSON, (b"content-length", str(len(self.body)).encode()), *self.headers]


def json_answer(status: int, payload: Any) -> Response:
    return Response(status, orjson.dumps(payload))


def error(
    status: int, reason: str, message: str, *, retry_after: int | None = None, **extra: Any
) -> Response:
    """A failure in the shape other Stream endpoints use: status, error_msg, and our reason code."""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if retry_after is not None:
        headers = ((b"retry-after", str(retry_after).encode()),)
    body = {"status": "ERROR", "code": status, "reason": reason, "error_msg": message, **extra}
    return Response(status, orjson.dumps(body), headers, reason)
