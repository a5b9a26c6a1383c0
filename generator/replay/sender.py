"""Sending one request over a pool of keep-alive connections and saying what came of it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import gevent
import orjson
from geventhttpclient import HTTPClient

from generator.endpoint import Endpoint, answer_reason
from generator.events.wire import LIBRARY_VERSION, WireRequest
from generator.replay.retry import parse_retry_after

__all__ = ["Outcome", "Reply", "Sender"]


class Outcome(Enum):
    ACKNOWLEDGED = "acknowledged"
    # The target may have acted on the request (a timeout, a dropped connection, a 5xx): a retry
    # is safe only at a target that honours the idempotency key.
    AMBIGUOUS = "ambiguous"
    # The target certainly did not act (connection refused, 429, 503): a retry cannot double
    # anything.
    REFUSED = "refused"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Reply:
    outcome: Outcome
    reason: str
    status: int = 0
    retry_after: float | None = None
    body: bytes = b""

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


class Sender:
    """One HTTP client for the whole run; `pool` connections shared by every guest in flight."""

    def __init__(self, target: Endpoint, *, pool: int, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self._client = HTTPClient(
            target.host,
            target.port,
            ssl=target.tls,
            concurrency=pool,
            connection_timeout=min(timeout, 5.0),
            network_timeout=timeout,
            headers={"X-Library-Version": LIBRARY_VERSION},
        )

    def send(
        self,
        request: WireRequest,
        key: str,
        *,
        extra_headers: dict[str, str] | None = None,
        raw_body: bytes | None = None,
    ) -> Reply:
        headers = {"X-Idempotency-Key": key, **(extra_headers or {})}
        body = b""
        if request.body is not None or raw_body is not None:
            body = raw_body if raw_body is not None else orjson.dumps(request.body)
            headers["Content-Type"] = "application/json"
        try:
            # A hard deadline on top of the socket timeouts, which apply per read.
            with gevent.Timeout(self.timeout * 2, TimeoutError):
                response = self._client.request(
                    request.method, self.target.base_path + request.path, body, headers
                )
                try:
                    data = response.read()
                finally:
                    response.release()
        except ConnectionRefusedError:
            return Reply(Outcome.REFUSED, "connection refused")
        except TimeoutError:
            return Reply(Outcome.AMBIGUOUS, "timeout")
        except OSError as exc:
            return Reply(Outcome.AMBIGUOUS, f"connection error: {exc.strerror or exc!r}")
        except Exception as exc:  # geventhttpclient's parse errors on a broken answer
            return Reply(Outcome.AMBIGUOUS, f"bad answer: {type(exc).__name__}")
        status = response.status_code
        header = response.get("retry-after")
        retry_after = parse_retry_after(header if isinstance(header, str) else None)
        if 200 <= status < 300:
            return Reply(Outcome.ACKNOWLEDGED, "", status, body=data)
        kind = response.get("content-type")
        reason = answer_reason(status, data, kind if isinstance(kind, str) else "")
        if status in (429, 503):
            # Throttled, or unavailable (overloaded, a fault): the target did not act on it.
            return Reply(Outcome.REFUSED, reason, status, retry_after, data)
        if status >= 500:
            return Reply(Outcome.AMBIGUOUS, reason, status, retry_after, data)
        return Reply(Outcome.PERMANENT, reason, status, body=data)

    def close(self) -> None:
        self._client.close()
