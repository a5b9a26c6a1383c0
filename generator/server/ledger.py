"""The server's SQLite ledger (WAL): one writer thread commits many requests per transaction."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from generator.redaction import mask_key

__all__ = ["EventRow", "Job", "Ledger", "LedgerError", "Origin", "Tenancy"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    browser_ref TEXT,
    session_ref TEXT,
    channel TEXT,
    created_ms INTEGER NOT NULL,
    origin INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS browsers (
    ref TEXT PRIMARY KEY,
    guest_ref TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenant (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID;
"""
_EVENT_COLUMNS = (
    "ref",
    "type",
    "browser_ref",
    "session_ref",
    "channel",
    "created_ms",
    "origin",
    "body",
)
# Multi-row statements come in a few fixed sizes so that sqlite3's statement cache keeps them.
_CHUNKS = (256, 32, 4, 1)
_LOOKUP = 256


class Origin:
    """Where a stored event came from: the Stream API (it moves sessions) or `/v1/ingest`."""

    STREAM = 0
    INGEST = 1


class LedgerError(Exception):
    """The ledger could not commit; nothing in the failed batch was acknowledged."""


class _Busy(LedgerError):
    """Another connection holds the write lock (only seen where busy_timeout is 0)."""


@dataclass(frozen=True, slots=True)
class Tenancy:
    """Whose events a ledger holds: one profile's tenant, named by profile and client key."""

    profile: str
    client_key: str


@dataclass(frozen=True, slots=True)
class EventRow:
    ref: str
    type: str
    browser_ref: str | None
    session_ref: str | None
    channel: str | None
    created_ms: int
    origin: int
    body: bytes


# What a job turns into once its rows are in the transaction: (status, body) given which of its
# events were new. Rendered inside the transaction so an idempotent answer is stored with them.
Render = Callable[[list[bool]], tuple[int, bytes]]


@dataclass(slots=True)
class Job:
    """One request's writes: events, perhaps a browser, and the answer to keep for its key."""

    render: Render
    events: list[EventRow] = field(default_factory=list)
    browser: tuple[str, str, int] | None = None
    # (guest, browser): an IDENTITY merged this browser into a guest known from another one.
    rebind: tuple[str, str] | None = None
    answer_key: str | None = None
    # Run on the event loop once the job is committed (never if it is not).
    after: Callable[[], None] | None = None
    future: asyncio.Future[tuple[int, bytes, list[bool]]] | None = None


_STOP = object()


class Ledger:
    """SQLite in WAL mode at `path`. Writes go through `submit` and resolve after COMMIT."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "FULL",
        queue_limit: int = 20_000,
        max_batch: int = 4_000,
        tenant: Tenancy | None = None,
    ) -> None:
        self.path = path
        self.tenant = tenant
        self.synchronous = synchronous
        self.queue_limit = queue_limit
        self.max_batch = max_batch
        self.pending_rows = 0
        self.commits = 0
        self.committed_jobs = 0
        self.largest_batch = 0
        self.on_commit: Callable[[Job, list[bool]], None] = lambda job, inserted: None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        # With synchronous=NORMAL a COMMIT only write()s the WAL (no fsync), so the event loop
        # commits by itself: no thread, no GIL hand-offs. FULL fsyncs, so a writer thread does it.
        self.inline = synchronous == "NORMAL"
        self._writer: sqlite3.Connection | None = None
        self._batch: list[Job] = []
        self._checkpoints = threading.Event()

    # --- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Create the schema and the read connection; call before `start`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            conn.executescript(_SCHEMA)
            if self.tenant is not None:
                self._claim(conn, self.tenant)
        finally:
            conn.close()
        self._reader = self._connect()

    def _claim(self, conn: sqlite3.Connection, tenant: Tenancy) -> None:
        """Mark a new ledger as this tenant's; refuse one that holds another tenant's events."""
        rows = dict(conn.execute("SELECT name, value FROM tenant").fetchall())
        if not rows:
            # A new ledger, or one from before tenants were recorded: it is this tenant's now.
            conn.execute(
                "INSERT INTO tenant (name, value) VALUES ('profile', ?), ('clientKey', ?)",
                (tenant.profile, tenant.client_key),
            )
            return
        held = Tenancy(str(rows.get("profile", "")), str(rows.get("clientKey", "")))
        if held != tenant:
            raise LedgerError(
                f"the ledger {self.path} holds the tenant of profile {held.profile!r} (client "
                f"key {mask_key(held.client_key)}), not of profile {tenant.profile!r} (client "
                f"key {mask_key(tenant.client_key)}) that this server serves; give another "
                f"--db, or serve profile {held.profile!r} from this one"
            )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.inline:
            self._writer = self._connect()
            self._writer.execute("PRAGMA busy_timeout=0")
            # Checkpoints fsync the database file: keep them off the event loop.
            self._writer.execute("PRAGMA wal_autocheckpoint=0")
            target, name = self._checkpoint_loop, "ledger-checkpointer"
        else:
            target, name = self._write_loop, "ledger-writer"
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Commit what is queued, stop the writer, checkpoint the WAL into the database file."""
        if self._batch and self._writer is not None:
            self._writer.execute("PRAGMA busy_timeout=5000")  # shutting down: waiting is fine
            self._flush()
        if self._thread is not None:
            self._queue.put(_STOP)
            self._checkpoints.set()
            self._thread.join()
            self._thread = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader is not None:
            self._reader.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._reader.close()
            self._reader = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    # --- reads (event-loop thread) ----------------------------------------------------------

    @property
    def reader_closed(self) -> bool:
        return self._reader is None

    @property
    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            raise LedgerError("the ledger is not open")
        return self._reader

    def answer(self, key: str) -> tuple[int, bytes] | None:
        row = self.reader.execute(
            "SELECT status, body FROM answers WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def counts_by_type(self) -> Counter[str]:
        rows = self.reader.execute("SELECT type, count(*) FROM events GROUP BY type")
        return Counter({str(t): int(n) for t, n in rows})

    def browsers(self) -> dict[str, str]:
        return {
            str(b): str(g) for b, g in self.reader.execute("SELECT ref, guest_ref FROM browsers")
        }

    def identity_events(self) -> Iterator[tuple[str, bytes]]:
        """(browser, stored body) of every IDENTITY event from the Stream API, in commit order."""
        yield from self.reader.execute(
            "SELECT browser_ref, body FROM events WHERE type = 'IDENTITY' AND origin = ? "
            "ORDER BY seq",
            (Origin.STREAM,),
        )

    def tracking_events(self) -> Iterator[bytes]:
        """The stored body of every TRACKING event from the Stream API, in commit order."""
        rows = self.reader.execute(
            "SELECT body FROM events WHERE type = 'TRACKING' AND origin = ? ORDER BY seq",
            (Origin.STREAM,),
        )
        for (body,) in rows:
            yield body

    def session_count(self) -> int:
        row = self.reader.execute(
            "SELECT count(DISTINCT session_ref) FROM events WHERE origin = ?", (Origin.STREAM,)
        ).fetchone()
        return int(row[0])

    def stream_events(self) -> Iterator[tuple[str, str, str, int, str]]:
        """(browser, channel, session, created_ms, type) of Stream events in commit order."""
        yield from self.reader.execute(
            "SELECT browser_ref, channel, session_ref, created_ms, type FROM events "
            "WHERE origin = ? ORDER BY seq",
            (Origin.STREAM,),
        )

    # --- writes -----------------------------------------------------------------------------

    def has_room(self, rows: int) -> bool:
        # A batch bigger than the whole queue is still let in when the queue is empty.
        return self.pending_rows == 0 or self.pending_rows + rows <= self.queue_limit

    def submit(self, job: Job) -> asyncio.Future[tuple[int, bytes, list[bool]]]:
        """Queue a job (check `has_room` first); the future resolves once it is committed."""
        if self._loop is None:
            raise LedgerError("the ledger writer is not running")
        job.future = self._loop.create_future()
        self.pending_rows += max(1, len(job.events))
        if not self.inline:
            self._queue.put(job)
        else:
            if not self._batch:
                # Runs after every request already readable in this loop turn has queued its job.
                self._loop.call_soon(self._flush)
            self._batch.append(job)
        return job.future

    def _flush(self) -> None:
        if self._writer is None:  # a retry timer that outlived close()
            return
        jobs, self._batch = self._batch, []
        if not jobs:
            return
        assert self._writer is not None and self._loop is not None
        results = self._commit(self._writer, jobs)
        if isinstance(results, _Busy):
            # Another process holds the write lock: keep the batch (it still counts against the
            # queue limit) and try again shortly, rather than block the event loop waiting.
            self._batch = jobs
            self._loop.call_later(0.005, self._flush)
            return
        self._settle(jobs, results)

    def _checkpoint_loop(self) -> None:
        conn = self._connect()
        while not self._checkpoints.wait(0.25):
            with contextlib.suppress(sqlite3.Error):  # busy now: the next round catches up
                # PASSIVE copies the bulk back without stopping the writer; RESTART then takes
                # the write lock for the short remainder so the next commit rewinds the WAL
                # (without it the WAL grows for as long as writes keep coming). The event loop
                # does not wait meanwhile: its commit finds the lock taken and retries.
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                conn.execute("PRAGMA wal_checkpoint(RESTART)")
        conn.close()

    def _write_loop(self) -> None:
        conn = self._connect()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, Job)
            jobs = [first]
            rows = len(first.events)
            # Group commit: everything that queued up while the last COMMIT ran goes in this one.
            while rows < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                assert isinstance(more, Job)
                jobs.append(more)
                rows += len(more.events)
            results = self._commit(conn, jobs)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._settle, jobs, results)
        conn.close()

    def _commit(
        self, conn: sqlite3.Connection, jobs: list[Job]
    ) -> list[tuple[int, bytes, list[bool]]] | LedgerError:
        """One transaction for the whole batch, with as few statements as possible: each
        statement hands the GIL back and forth, which is what costs under load, not SQLite."""
        results: list[tuple[int, bytes, list[bool]]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            known = _stored_refs(conn, [e.ref for j in jobs for e in j.events if e.origin])
            events: list[tuple[object, ...]] = []
            browsers: list[tuple[object, ...]] = []
            answers: list[tuple[object, ...]] = []
            for job in jobs:
                inserted = []
                for e in job.events:
                    # Stream events carry fresh random refs, so only ingested ones can repeat.
                    new = not e.origin or e.ref not in known
                    if new:
                        known.add(e.ref)
                        events.append(row_values(e))
                    inserted.append(new)
                if job.browser is not None:
                    browsers.append(job.browser)
                status, body = job.render(inserted)
                if job.answer_key is not None and 200 <= status < 300:
                    answers.append((job.answer_key, status, body))
                results.append((status, body, inserted))
            _insert_many(conn, "events", _EVENT_COLUMNS, events)
            _insert_many(conn, "browsers", ("ref", "guest_ref", "created_ms"), browsers)
            for job in jobs:
                if job.rebind is not None:
                    conn.execute("UPDATE browsers SET guest_ref = ? WHERE ref = ?", job.rebind)
            _insert_many(conn, "answers", ("key", "status", "body"), answers)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                return _Busy(str(exc))
            return LedgerError(f"commit failed: {exc}")
        return results

    def _settle(
        self, jobs: list[Job], results: list[tuple[int, bytes, list[bool]]] | LedgerError
    ) -> None:
        """On the event loop: answer the waiting requests of a committed (or failed) batch."""
        self.commits += 1
        self.committed_jobs += len(jobs)
        self.largest_batch = max(self.largest_batch, len(jobs))
        for i, job in enumerate(jobs):
            self.pending_rows -= max(1, len(job.events))
            assert job.future is not None
            if job.future.done():  # the request was cancelled (client went away)
                if not isinstance(results, LedgerError):
                    self.on_commit(job, results[i][2])
                continue
            if isinstance(results, LedgerError):
                job.future.set_exception(results)
            else:
                self.on_commit(job, results[i][2])
                job.future.set_result(results[i])


def row_values(e: EventRow) -> tuple[object, ...]:
    return (e.ref, e.type, e.browser_ref, e.session_ref, e.channel, e.created_ms, e.origin, e.body)


def _insert_many(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[object, ...]]
) -> None:
    """INSERT OR IGNORE all rows using multi-row VALUES statements of the sizes in _CHUNKS."""
    start = 0
    for size in _CHUNKS:
        while len(rows) - start >= size:
            values = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * size)
            sql = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES {values}"
            conn.execute(sql, [v for row in rows[start : start + size] for v in row])
            start += size


def _stored_refs(conn: sqlite3.Connection, refs: list[str]) -> set[str]:
    """Which of these refs the events table already holds."""
    found: set[str] = set()
    sql = f"SELECT ref FROM events WHERE ref IN ({', '.join('?' * _LOOKUP)})"
    for start in range(0, len(refs), _LOOKUP):
        chunk: list[str | None] = list(refs[start : start + _LOOKUP])
        chunk += [None] * (_LOOKUP - len(chunk))  # one statement text for every chunk
        found.update(str(r) for (r,) in conn.execute(sql, chunk))
    return found
