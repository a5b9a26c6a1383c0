"""The ASGI callable: routing, bodies, faults and idempotency in front of the tenant (no framework).

A plain callable keeps the hot path to a dict look-up, one body read, one JSON parse and one
await on the ledger's group commit.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.events.types import EVENT_TYPE_NAMES
from generator.events.wire import GUEST_HINT
from generator.fault_injection import FAULT_HEADER, parse_labels
from generator.profile import Profile
from generator.redaction import mask_key
from generator.server.answers import Response, error, json_answer
from generator.server.batch import BATCH_PREFIXES, BatchService
from generator.server.bodies import json_object, message
from generator.server.bodies import query as parse_query
from generator.server.faults import Faults
from generator.server.ledger import Ledger, Tenancy
from generator.server.tenant import Tenant

__all__ = ["BODY_LIMIT", "INGEST_LIMIT", "ServerConfig", "StreamApp"]

BODY_LIMIT = 1 << 20  # 1 MiB, as the Stream API
INGEST_LIMIT = 16 << 20  # NDJSON batches for the ingest scenario
_IDEMPOTENCY_HEADER = b"x-idempotency-key"
_FAULT_HEADER = FAULT_HEADER.lower().encode()
# This request's labelled faults (line -> kind), and whether it was answered as a repeat.
_LABELS: contextvars.ContextVar[dict[int, str] | None] = contextvars.ContextVar(
    "labels", default=None
)
_REPEAT: contextvars.ContextVar[bool] = contextvars.ContextVar("repeat", default=False)
_HEALTHY = Response(200, b'{"status":"OK"}')

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything `cdpsim serve` was asked for."""

    profile: Profile
    db_path: Path
    host: str = "127.0.0.1"
    port: int = 8080
    fail_rate: float = 0.0
    throttle_rps: float = 0.0
    latency_ms: float = 0.0
    queue_limit: int = 20_000
    synchronous: str = "FULL"
    seed: int | None = None
    api_token: str | None = None  # the Batch API's token (Basic auth with the client key)


class _ClientGone(Exception):
    pass


class StreamApp:
    """The embedded Stream API as one ASGI application (HTTP and lifespan)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        # One random source for the whole server (refs, faults, decision times): from --seed,
        # or from the OS when no seed is given, since a live server has no run to reproduce.
        self._rng = random.Random(config.seed)
        self.ledger = Ledger(
            config.db_path,
            synchronous="NORMAL" if config.synchronous.upper() == "NORMAL" else "FULL",
            queue_limit=config.queue_limit,
            tenant=Tenancy(config.profile.name, config.profile.client_key),
        )
        self.tenant = Tenant(config.profile, self.ledger, rng=self._rng)
        self.faults = Faults(
            fail_rate=config.fail_rate,
            throttle_rps=config.throttle_rps,
            latency_ms=config.latency_ms,
            rng=self._rng,
        )
        self.batch = BatchService(
            config.db_path,
            config.profile.client_key,
            config.api_token,
            lambda: f"http://{config.host}:{config.port}",
        )
        self._inflight: dict[str, asyncio.Future[Response]] = {}
        self._started = time.monotonic()
        # path -> method -> handler(query bytes, body bytes, idempotency key)
        self._routes: dict[str, dict[str, Callable[..., Awaitable[Response]]]] = {
            "/v1.2/browser/create.json": {"GET": self._browser_create},
            "/v1.2/events": {"POST": self._event_post},
            "/v1.2/event/create.json": {"GET": self._event_get},
            "/v2/callFlows": {"POST": self._flows_post, "GET": self._flows_get},
            "/v1/ingest": {"POST": self._ingest},
            "/_cdpsim/stats": {"GET": self._stats},
            "/_cdpsim/healthz": {"GET": self._healthz},
            "/_cdpsim/openapi.json": {"GET": self._openapi},
        }
        self._description: Response | None = None

    # --- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.ledger.reader_closed:  # not opened by the launcher beforehand
                        self.ledger.open()
                    self.tenant.restore()
                    self.ledger.start(asyncio.get_running_loop())
                    self.batch.open()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._log_start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # uvicorn has already waited for in-flight requests; commit what is left.
                self.ledger.close()
                self.batch.close()
                total = sum(self.tenant.stats.stored.values())
                _log(f"drained and closed the ledger ({total} events stored)")
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _log_start(self) -> None:
        c = self.config
        faults = ""
        if self.faults.active:
            faults = (
                f", faults: fail-rate {c.fail_rate}, throttle {c.throttle_rps} rps, "
                f"latency {c.latency_ms} ms"
            )
        _log(
            f"serving profile {c.profile.name} (client key {mask_key(c.profile.client_key)}) "
            f"on http://{c.host}:{c.port}, ledger {c.db_path} "
            f"({sum(self.tenant.stats.stored.values())} events already stored){faults}"
            + (f", Batch API token {mask_key(c.api_token)}" if c.api_token else "")
        )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        try:
            answer = await self._answer(scope, receive, path)
        except _ClientGone:
            return
        if not answer.ok and answer.reason is not None:
            self.tenant.stats.rejected[answer.reason] += 1
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": answer.raw_headers(),
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    async def _answer(self, scope: Scope, receive: Receive, path: str) -> Response:
        if path.startswith(BATCH_PREFIXES):
            fault = await self._fault() if self.faults.active else None
            return fault or await self.batch.answer(scope, receive, path)
        methods = self._routes.get(path)
        if methods is None:
            return error(404, "not_found", f"no endpoint {path}", endpoints=sorted(self._routes))
        handler = methods.get(scope["method"])
        if handler is None:
            allowed = ", ".join(methods)
            answer = error(
                405, "method_not_allowed", f"{path} accepts {allowed}, not {scope['method']}"
            )
            return Response(
                answer.status, answer.body, ((b"allow", allowed.encode()),), answer.reason
            )
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        key: str | None = None
        length = -1
        labels: dict[int, str] = {}
        for name, value in headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == _IDEMPOTENCY_HEADER:
                key = value.decode("latin-1")
            elif name == _FAULT_HEADER:
                labels = parse_labels(value)
        if labels:
            _LABELS.set(labels)
            answer = await self._labelled(handler, scope, receive, path, key, length)
            self.tenant.stats.count_labelled(labels, path, answer, _REPEAT.get())
            return answer
        return await self._handle(handler, scope, receive, path, key, length)

    async def _labelled(self, *args: Any) -> Response:
        return await self._handle(*args)

    async def _handle(
        self,
        handler: Callable[..., Awaitable[Response]],
        scope: Scope,
        receive: Receive,
        path: str,
        key: str | None,
        length: int,
    ) -> Response:
        limit = INGEST_LIMIT if path == "/v1/ingest" else BODY_LIMIT
        if length > limit:
            return _too_large(limit)
        if not path.startswith("/_cdpsim/") and self.faults.active:
            fault = await self._fault()
            if fault is not None:
                return fault
        body = await _read_body(receive, limit) if scope["method"] == "POST" else b""
        if body is None:
            return _too_large(limit)
        query: bytes = scope["query_string"]
        if not key:  # an empty key names nothing: the request is simply not idempotent
            return await handler(query, body, None)
        # A key names one call: the same key sent to another endpoint is another request.
        return await self._once(f"{_CALLS.get(path, path)} {key}", handler, query, body)

    async def _fault(self) -> Response | None:
        wait = self.faults.throttled()
        if wait:
            return error(
                429, "throttled", f"over {self.faults.throttle_rps:g} requests/s", retry_after=wait
            )
        delay = self.faults.delay_s()
        if delay:
            await asyncio.sleep(delay)
        if self.faults.failed():
            return error(503, "fault_injected", "injected failure (--fail-rate)", retry_after=1)
        return None

    async def _once(
        self, key: str, handler: Callable[..., Awaitable[Response]], query: bytes, body: bytes
    ) -> Response:
        """Response a keyed request once: a repeat gets the first 2xx answer and stores nothing."""
        while (first := self._inflight.get(key)) is not None:
            answer = await asyncio.shield(first)
            if answer.ok:
                self.tenant.stats.duplicates += 1
                _REPEAT.set(True)
                return answer
            # The first attempt failed (nothing kept): whoever gets here first tries again.
        kept = self.ledger.answer(key)
        if kept is not None:
            self.tenant.stats.duplicates += 1
            _REPEAT.set(True)
            return Response(kept[0], kept[1])
        mine: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._inflight[key] = mine
        answer = _GONE
        try:
            answer = await handler(query, body, key)
            return answer
        finally:
            # Removed only after the commit, so a repeat finds either this future or the row.
            del self._inflight[key]
            mine.set_result(answer)

    # --- endpoints --------------------------------------------------------------------------

    async def _browser_create(self, query: bytes, body: bytes, key: str | None) -> Response:
        params = parse_query(query)
        return await self.tenant.browser_create(
            params.get("client_key"), key, guest_hint=params.get(GUEST_HINT)
        )

    async def _event_post(self, query: bytes, body: bytes, key: str | None) -> Response:
        msg = json_object(body, "the body")
        if isinstance(msg, Response):
            return msg
        return await self.tenant.event(_with_key(msg, query, "client_key"), key)

    async def _event_get(self, query: bytes, body: bytes, key: str | None) -> Response:
        msg = message(query)
        if isinstance(msg, Response):
            return msg
        return await self.tenant.event(_with_key(msg, query, "client_key"), key)

    async def _flows_post(self, query: bytes, body: bytes, key: str | None) -> Response:
        msg = json_object(body, "the body")
        if isinstance(msg, Response):
            return msg
        return await self.tenant.call_flows(_with_key(msg, query, "clientKey"), key)

    async def _flows_get(self, query: bytes, body: bytes, key: str | None) -> Response:
        msg = message(query)
        if isinstance(msg, Response):
            return msg
        return await self.tenant.call_flows(_with_key(msg, query, "clientKey"), key)

    async def _ingest(self, query: bytes, body: bytes, key: str | None) -> Response:
        return await self.tenant.ingest(body, key, _LABELS.get() or {})

    async def _stats(self, query: bytes, body: bytes, key: str | None) -> Response:
        stats = self.tenant.stats
        stored = {t: stats.stored.get(t, 0) for t in _STAT_TYPES}
        stored.update(stats.stored)
        ledger = self.ledger
        return json_answer(
            200,
            {
                "stored": stored,
                "total": sum(stats.stored.values()),
                "duplicates": stats.duplicates,
                "rejected": dict(stats.rejected),
                # Labelled dirty traffic (the X-Cdpsim-Faults header): what was meant to be
                # refused or repeated, apart from the unexpected.
                "faults": {
                    "expectedDuplicates": stats.expected_duplicates,
                    "expectedRejections": stats.expected_rejections,
                    "labelled": dict(stats.labelled),
                },
                "dropped": dict(stats.dropped),
                "browsers": len(self.tenant.browsers),
                "sessions": self.tenant.sessions.opened,
                "ledger": {
                    "path": str(ledger.path),
                    "synchronous": ledger.synchronous,
                    "commits": ledger.commits,
                    "committedRequests": ledger.committed_jobs,
                    "largestBatch": ledger.largest_batch,
                    "queued": ledger.pending_rows,
                    "queueLimit": ledger.queue_limit,
                },
                "uptimeSeconds": round(time.monotonic() - self._started, 3),
            },
        )

    async def _healthz(self, query: bytes, body: bytes, key: str | None) -> Response:
        return _HEALTHY

    async def _openapi(self, query: bytes, body: bytes, key: str | None) -> Response:
        if self._description is None:  # built on first use: most runs never ask for it
            from generator.server.openapi import description_bytes

            self._description = Response(200, description_bytes())
        return self._description


# The endpoints that are one call in two forms (POST and GET) share their idempotency keys.
_CALLS = {"/v1.2/event/create.json": "/v1.2/events"}
_GONE = error(499, "client_gone", "the request ended before it was answered")
# Every known type shows in the statistics, stored or not.
_STAT_TYPES = EVENT_TYPE_NAMES


def _log(line: str) -> None:
    print(f"cdpsim serve: {line}", file=sys.stderr, flush=True)


def _too_large(limit: int) -> Response:
    return error(413, "too_large", f"the body is over {limit // (1 << 20)} MiB")


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else None
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _with_key(msg: dict[str, Any], query: bytes, name: str) -> dict[str, Any]:
    """A client key given only in the query string counts as if it were in the body."""
    if name not in msg and b"key" in query.lower():
        params = parse_query(query)
        given = params.get(name) or params.get("client_key") or params.get("clientKey")
        if given is not None:
            msg[name] = given
    return msg
