"""The Batch API of the embedded server: batches created, uploaded, checked, then processed.

`PUT /v2/batches/{ref}` (Basic auth: client key and --api-token) declares a file's MD5 and size
and gets an upload location; `PUT` of the gzip there checks both (`corrupted` on a mismatch);
the records are then validated and committed to the ledger's database a chunk at a time (INSERT OR
IGNORE by record ref, so a repeat stores nothing twice), and only then does the status say
`success` or `error` (with a gzipped log of the failed records). A batch still `processing` when
the server stopped is processed again at start: its file is kept beside the ledger.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import hashlib
import hmac
import json
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from generator.events.stored import UUID, iso_ms
from generator.server.answers import Response, error, json_answer

__all__ = ["BATCH_PREFIXES", "BatchService"]

BATCH_PREFIXES = ("/v2/batches/", "/_cdpsim/uploads/", "/_cdpsim/batch-logs/")
_CHUNK = 20_000  # records validated, then committed, at a time
UPLOAD_LIMIT = 64 << 20  # above the API's 50 MB, so an oversized file is refused by its size
_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    ref TEXT PRIMARY KEY,
    checksum TEXT NOT NULL,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- Rows appended in arrival order, found by ref through the primary key's index: a batch's random
-- refs go into that small index, not into a table of whole records (a third cheaper).
CREATE TABLE IF NOT EXISTS batch_records (
    ref TEXT PRIMARY KEY,
    batch_ref TEXT NOT NULL,
    schema TEXT NOT NULL,
    mode TEXT NOT NULL,
    body BLOB NOT NULL
);
"""
_MODES = {"guest": {"upsert", "merge"}, "order": {"insert", "upsert"}}

Receive = Callable[[], Awaitable[dict[str, Any]]]


def _validator(name: str) -> Callable[[Any], Any]:
    text = (resources.files("generator.batch") / f"{name}.schema.json").read_text()
    validate: Callable[[Any], Any] = fastjsonschema.compile(json.loads(text))
    return validate


class BatchService:
    """The batches of one tenant, in the ledger's database file (tables of their own)."""

    def __init__(
        self, db_path: Path, client_key: str, token: str | None, base_url: Callable[[], str]
    ) -> None:
        self.db_path = db_path
        self.client_key = client_key
        self.token = token
        self.base_url = base_url
        self.files = db_path.with_name(db_path.name + ".batches")
        self._validators = {"guest": _validator("guest"), "order": _validator("order")}
        self._conn: sqlite3.Connection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.processing_lock = asyncio.Lock()

    # --- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        self.files.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(_SCHEMA)
        self._conn = conn
        for (ref,) in conn.execute("SELECT ref FROM batches WHERE status = 'processing'"):
            self._start(ref)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.open()
        assert self._conn is not None
        return self._conn

    def stored_records(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM batch_records").fetchone()
        return int(row[0])

    # --- HTTP -------------------------------------------------------------------------------

    async def answer(self, scope: dict[str, Any], receive: Receive, path: str) -> Response:
        method = scope["method"]
        headers = {k.lower(): v for k, v in scope["headers"]}
        if path.startswith("/_cdpsim/batch-logs/"):
            return self._log(path.removeprefix("/_cdpsim/batch-logs/").removesuffix(".jsonl.gz"))
        if path.startswith("/_cdpsim/uploads/"):
            if method != "PUT":
                return error(405, "method_not_allowed", "an upload location accepts PUT")
            return await self._upload(path.removeprefix("/_cdpsim/uploads/"), headers, receive)
        denied = self._auth(headers)
        if denied is not None:
            return denied
        rest = path.removeprefix("/v2/batches/")
        inspect = rest.startswith("inspect/")
        ref = rest.removeprefix("inspect/")
        if not UUID.match(ref):
            return error(400, "bad_ref", "a batch ref must be a lower-case UUID")
        if method == "PUT" and not inspect:
            body = await _read(receive, 1 << 16)
            return self._create(ref, body or b"")
        if method == "GET":
            return self._status(ref, inspect)
        return error(405, "method_not_allowed", f"{path} accepts PUT or GET, not {method}")

    def _auth(self, headers: dict[bytes, bytes]) -> Response | None:
        if self.token is None:
            return error(503, "batch_disabled", "the Batch API needs `cdpsim serve --api-token`")
        value = headers.get(b"authorization", b"")
        if value[:6].lower() == b"basic ":
            try:
                user, _, secret = base64.b64decode(value[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = secret = ""
            if hmac.compare_digest(user, self.client_key) and hmac.compare_digest(
                secret, self.token
            ):
                return None
        answer = error(401, "unauthorized", "Basic auth with the client key and API token")
        return Response(
            answer.status, answer.body, ((b"www-authenticate", b'Basic realm="cdp"'),), "unauth"
        )

    def _row(self, ref: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(
            "SELECT ref, checksum, size, status, created_ms, modified_ms, uploaded, failed "
            "FROM batches WHERE ref = ?",
            (ref,),
        ).fetchone()
        return row

    def _view(self, row: tuple[Any, ...], inspect: bool = False) -> dict[str, Any]:
        ref, checksum, size, status, created, modified, uploaded, failed = row
        base = self.base_url()
        code: dict[str, Any] = {"code": status}
        if status == "error":
            code["log"] = f"{base}/_cdpsim/batch-logs/{ref}.jsonl.gz"
        view: dict[str, Any] = {
            "href": f"{base}/v2/batches/{ref}",
            "ref": ref,
            "checksum": checksum,
            "size": size,
            "location": {
                "href": f"{base}/_cdpsim/uploads/{ref}",
                "expiry": iso_ms(created + 3_600_000),
            },
            "status": code,
            "createdAt": iso_ms(created),
            "modifiedAt": iso_ms(modified),
        }
        if inspect:
            view["file_uploaded"] = bool(uploaded)
            view["failed_records"] = failed
        return view

    def _create(self, ref: str, body: bytes) -> Response:
        try:
            spec = orjson.loads(body)
            checksum, size = str(spec["checksum"]).lower(), int(spec["size"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return error(400, "bad_request", 'the body must be {"checksum": hex MD5, "size": n}')
        row = self._row(ref)
        if row is None:
            now = int(time.time() * 1000)
            self.conn.execute(
                "INSERT OR IGNORE INTO batches (ref, checksum, size, status, created_ms, "
                "modified_ms) VALUES (?, ?, ?, 'uploading', ?, ?)",
                (ref, checksum, size, now, now),
            )
            row = self._row(ref)
            assert row is not None
            return json_answer(201, self._view(row))
        if (row[1], row[2]) != (checksum, size):
            return error(409, "conflict", f"batch {ref} exists with another checksum or size")
        return json_answer(200, self._view(row))

    def _status(self, ref: str, inspect: bool) -> Response:
        row = self._row(ref)
        if row is None:
            return error(404, "not_found", f"no batch {ref}")
        return json_answer(200, self._view(row, inspect))

    async def _upload(self, ref: str, headers: dict[bytes, bytes], receive: Receive) -> Response:
        row = self._row(ref)
        if row is None:
            return error(404, "not_found", f"no batch {ref}")
        body = await _read(receive, UPLOAD_LIMIT)
        if row[3] != "uploading" and row[3] != "corrupted":
            return Response(200, b"")  # uploaded already: a repeat changes nothing
        digest = hashlib.md5(body or b"").digest()
        sent_md5 = headers.get(b"content-md5")
        ok = (
            body is not None
            and len(body) == row[2]
            and digest.hex() == row[1]
            and (sent_md5 is None or sent_md5 == base64.b64encode(digest))
        )
        now = int(time.time() * 1000)
        if not ok:
            self.conn.execute(
                "UPDATE batches SET status = 'corrupted', modified_ms = ? WHERE ref = ?",
                (now, ref),
            )
            return Response(200, b"")
        assert body is not None
        path = self.files / f"{ref}.jsonl.gz"
        path.with_suffix(".partial").write_bytes(body)
        path.with_suffix(".partial").replace(path)
        self.conn.execute(
            "UPDATE batches SET status = 'processing', uploaded = 1, modified_ms = ? WHERE ref = ?",
            (now, ref),
        )
        self._start(ref)
        return Response(200, b"")

    def _log(self, ref: str) -> Response:
        path = self.files / f"{ref}.log.jsonl.gz"
        if not UUID.match(ref) or not path.exists():
            return error(404, "not_found", f"no error log for batch {ref}")
        return Response(200, path.read_bytes(), ((b"x-content-type", b"application/gzip"),))

    # --- processing -------------------------------------------------------------------------

    def _start(self, ref: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # opened outside the server's loop: `open` at startup runs it again
        task = loop.create_task(self._process(ref))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, ref: str) -> None:
        # One batch at a time, off the event loop: the Stream API keeps answering meanwhile.
        async with self.processing_lock:
            await asyncio.to_thread(self._process_file, ref)

    def _process_file(self, ref: str) -> None:
        """Validate the file's records a chunk at a time while a second thread commits the
        chunks before (sqlite releases the GIL while it writes, so the two overlap); the status
        changes only once every chunk is committed. A crash midway leaves the batch
        `processing`: it is processed again at start, and the records already stored are
        ignored by their ref."""
        path = self.files / f"{ref}.jsonl.gz"
        failed: list[dict[str, Any]] = []
        try:
            lines = gzip.decompress(path.read_bytes()).splitlines()
        except (OSError, EOFError, zlib.error):
            lines = []
            failed.append({"ref": None, "code": 400, "message": "Not a gzip file"})
        chunks: queue.Queue[list[tuple[str, str, str, str, bytes]] | None] = queue.Queue(4)
        errors: list[BaseException] = []
        writer = threading.Thread(target=self._commit_chunks, args=(chunks, errors), daemon=True)
        writer.start()
        seen: set[str] = set()
        try:
            for lo in range(0, len(lines), _CHUNK):
                good: list[tuple[str, str, str, str, bytes]] = []
                for n, line in enumerate(lines[lo : lo + _CHUNK], lo + 1):
                    problem = self._check(line, seen)
                    if isinstance(problem, dict):
                        problem.setdefault("line", n)
                        failed.append(problem)
                    else:
                        good.append((problem[0], ref, problem[1], problem[2], line))
                if errors:
                    break
                chunks.put(good)
        finally:
            chunks.put(None)
            writer.join()
        if errors:
            raise errors[0]
        if failed:
            log = b"".join(orjson.dumps(f) + b"\n" for f in failed)
            (self.files / f"{ref}.log.jsonl.gz").write_bytes(gzip.compress(log, mtime=0))
        conn = self._connect()
        try:
            conn.execute(
                "UPDATE batches SET status = ?, failed = ?, modified_ms = ? WHERE ref = ?",
                ("error" if failed else "success", len(failed), int(time.time() * 1000), ref),
            )
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        # Room for the refs' index: inserting a batch's random refs then stays in memory.
        conn.execute("PRAGMA cache_size=-65536")
        return conn

    def _commit_chunks(
        self,
        chunks: queue.Queue[list[tuple[str, str, str, str, bytes]] | None],
        errors: list[BaseException],
    ) -> None:
        """Each chunk committed in a transaction of its own (the Stream API's writes wait for
        one chunk at most, never for a whole file)."""
        conn = self._connect()
        try:
            while (rows := chunks.get()) is not None:
                if errors:
                    continue  # drain: the validating thread stops at its next chunk
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(
                        "INSERT OR IGNORE INTO batch_records (ref, batch_ref, schema, mode, body) "
                        "VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                    conn.execute("COMMIT")
                except BaseException as exc:  # handed to the validating thread, raised there
                    errors.append(exc)
        finally:
            conn.close()

    def _check(self, line: bytes, seen: set[str]) -> dict[str, Any] | tuple[str, str, str]:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return {"ref": None, "code": 400, "message": "Validation error: not JSON"}
        if not isinstance(record, dict):
            return {"ref": None, "code": 400, "message": "Validation error: not an object"}
        ref, schema, mode = record.get("ref"), record.get("schema"), record.get("mode")
        if not isinstance(ref, str) or not UUID.match(ref) or ref in seen:
            return {"ref": ref, "code": 400, "message": "Validation error: ref missing or repeated"}
        seen.add(ref)
        if schema not in _MODES:
            return {"ref": ref, "code": 403, "message": "Action not allowed"}
        if mode not in _MODES[schema]:
            return {"ref": ref, "code": 402, "message": "Unsupported mode"}
        value = record.get("value")
        try:
            self._validators[schema](value)
        except fastjsonschema.JsonSchemaException as exc:
            message = "Identity information missing" if "identifiers" in str(exc) else None
            return {"ref": ref, "code": 400, "message": message or f"Validation error: {exc}"}
        return ref, schema, mode


async def _read(receive: Receive, limit: int) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)
