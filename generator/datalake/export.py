"""Writing a dataset as the data lake export: dated snapshot folders of Parquet files per entity.

Layout (docs/datalake.md has the why):

    OUT/<D>/guests/part-KKKKK-of-NNNNN.parquet
    OUT/<D>/sessions/meta_created_at_date=<day>/part-KKKKK-of-NNNNN.parquet
    OUT/<D>/events/meta_created_at_date=<day>/part-KKKKK-of-NNNNN.parquet
    OUT/<D>/orders/part-..., OUT/<D>/order_items/part-...
    OUT/<D>/experience_definitions/part-00000-of-NNNNN.parquet   (part 0 only)
    OUT/<D>/_parts/part-KKKKK-of-NNNNN.json                      (rows written, per part)

Folder D is the tenant as of D 00:00 UTC. Guests are split into a fixed number of parts (from
the dataset's size, never from how the work is split), and part k holds everything of its
guests, so any shard or worker can write any part on its own and the files are the same.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from generator.datalake import columns as C
from generator.datalake import folders
from generator.dataset.entities import Entities, Order, SessionEntity, StoredEvent
from generator.dataset.reader import open_dataset
from generator.events.stored import parse_iso_ms

__all__ = ["EVENTS_PER_PART", "ExportResult", "export_datalake", "part_of"]

EVENTS_PER_PART = 2_000_000  # a part is one pass over the events: big parts, few passes
ROW_GROUP = 16 * 1024  # rows per row group
BATCH = 1024  # rows held as Python dicts before they become a compact Arrow batch


@dataclass
class ExportResult:
    directory: Path
    folders: list[str]
    parts: list[int]  # the parts this run wrote
    rows: dict[str, int]  # rows written by entity (newest folder, this run's parts)


def part_of(guest_ref: str, parts: int) -> int:
    """A guest's part: from its ref alone, so every run agrees."""
    return int(guest_ref[:8], 16) % parts


class _Table:
    """One Parquet file written a row group at a time; in place only once it is closed."""

    def __init__(self, path: Path, entity: str) -> None:
        self.path = path
        self.entity = entity
        self.schema = C.SCHEMAS[entity]
        self.held: list[dict[str, Any]] = []
        self.batches: list[pa.RecordBatch] = []
        self.batched = 0
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.closed = False

    def add(self, row: dict[str, Any]) -> None:
        self.held.append(row)
        if len(self.held) >= BATCH:
            self._batch()
            if self.batched >= ROW_GROUP:
                self._flush()

    def _batch(self) -> None:
        """Held rows into one Arrow batch: a tenth of the memory of the dicts, and many tables
        (a session table per day) stay open at once."""
        if self.held:
            rows = self.held
            columns = {name: [r.get(name) for r in rows] for name in self.schema.names}
            self.batches.append(pa.RecordBatch.from_pydict(columns, schema=self.schema))
            self.batched += len(rows)
            self.held = []

    def _flush(self) -> None:
        self._batch()
        n = self.batched
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(
                self.path.with_suffix(".partial"),
                self.schema,
                # No per-run metadata: the same rows make the same bytes.
                **C.writer_options(self.entity),
            )
        if n:
            table = pa.Table.from_batches(self.batches, schema=self.schema).combine_chunks()
            self.writer.write_table(table, row_group_size=ROW_GROUP)
            self.rows += n
            self.batches, self.batched = [], 0

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._flush()
        assert self.writer is not None
        self.writer.close()
        os.replace(self.path.with_suffix(".partial"), self.path)


class _Folder:
    """The tables of one snapshot folder and one part."""

    def __init__(self, root: Path, part: int, parts: int) -> None:
        self.root = root
        self.name = f"part-{part:05d}-of-{parts:05d}.parquet"
        self.tables: dict[tuple[str, str], _Table] = {}

    def table(self, entity: str, day: str | None = None) -> _Table:
        key = (entity, day or "")
        t = self.tables.get(key)
        if t is None:
            where = self.root / entity
            if day is not None:
                where = where / f"meta_created_at_date={day}"
            t = self.tables[key] = _Table(where / self.name, entity)
        return t

    def close(self) -> dict[str, int]:
        rows: dict[str, int] = {}
        # Closed in a fixed order: the same run always leaves the same files.
        for (entity, _), t in sorted(self.tables.items()):
            t.close()
            rows[entity] = rows.get(entity, 0) + t.rows
        return rows


def _write_part(directory: Path, out: Path, folder: str, part: int, parts: int) -> dict[str, int]:
    """Everything of one part's guests in one snapshot folder."""
    dataset = open_dataset(directory)
    manifest = dataset.manifest()
    cutoff = folders.midnight_ms(folder)
    keep: Callable[[str], bool] | None = None
    if parts > 1:
        keep = lambda ref: part_of(ref, parts) == part  # noqa: E731
    entities = Entities(dataset, cutoff_ms=cutoff, keep=keep)
    key = entities.client_key
    root = out / folder
    sink = _Folder(root, part, parts)
    days: dict[int, str] = {}

    def day_of(ms: int) -> str:
        d = ms // folders.DAY_MS
        text = days.get(d)
        if text is None:
            text = days[d] = folders.day_of(ms).isoformat()
        return text

    current: list[_Table] = []

    def on_event(e: StoredEvent) -> None:
        table = sink.table("events", day_of(e.created_ms))
        if current and current[0] is not table:
            current[0].close()  # events come in time order: that day is complete
        current[:] = [table]
        table.add(C.event_row(e))

    def on_order(o: Order) -> None:
        sink.table("orders").add(C.order_row(o, key))
        items = sink.table("order_items")
        for row in C.order_item_rows(o, key):
            items.add(row)

    def on_session(s: SessionEntity) -> None:
        sink.table("sessions", day_of(s.started_ms)).add(C.session_row(s, key))

    entities.run(on_event, on_order, on_session)
    guests = sink.table("guests")
    for ref, raw in entities.guest_records:
        state = entities.guests.get(ref)
        if state is None:
            continue  # not seen before the cut
        guests.add(C.guest_row(ref, orjson.loads(raw), state, entities.identity.get(ref), key))
    for entity in ("orders", "order_items"):
        sink.table(entity)  # written even when empty: every part has every entity
    if part == 0:
        table = sink.table("experience_definitions")
        for row in C.experience_rows(manifest, parse_iso_ms(manifest["start"])):
            table.add(row)
    rows = sink.close()
    marker = root / "_parts" / sink.name.replace(".parquet", ".json")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_bytes(
        orjson.dumps(
            {"folder": folder, "part": part, "parts": parts, "rows": rows},
            option=orjson.OPT_SORT_KEYS,
        )
    )
    return rows


def export_datalake(
    directory: Path,
    out: Path | None = None,
    *,
    snapshots: str = "last",
    shard: tuple[int, int] = (1, 1),
    workers: int = 1,
    parts: int | None = None,
) -> ExportResult:
    """Write the data lake export of the dataset in `directory` (into DIR/datalake by default):
    this shard's parts of every snapshot folder."""
    dataset = open_dataset(directory)
    manifest = dataset.manifest()
    out = out if out is not None else directory / "datalake"
    if parts is None:
        parts = max(1, math.ceil(int(manifest.get("events", 0)) / EVENTS_PER_PART))
    last_text = manifest.get("lastEventAt")
    dates = folders.snapshot_dates(
        parse_iso_ms(manifest["start"]),
        parse_iso_ms(manifest["end"]),
        parse_iso_ms(last_text) if last_text else None,
        manifest.get("requestedEvents") is not None,
        snapshots,
    )
    i, n = shard
    mine = [k for k in range(parts) if k % n == i - 1]
    jobs = [(directory, out, f, k, parts) for f in dates for k in mine]
    results: list[dict[str, int]]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
            results = list(pool.map(_write_part, *zip(*jobs, strict=True)))
    else:
        results = [_write_part(*job) for job in jobs]
    newest: dict[str, int] = {}
    for job, rows in zip(jobs, results, strict=True):
        if job[2] == dates[-1]:
            for entity, count in rows.items():
                newest[entity] = newest.get(entity, 0) + count
    return ExportResult(out, dates, mine, newest)
