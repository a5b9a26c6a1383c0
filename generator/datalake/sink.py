"""Parquet files written a row group at a time, the rows of many open files held within one budget.

A part of the export writes many files at once (an events file per day, the guests, orders and
items of every snapshot folder), each fed a little per block. Each file holds its rows as Arrow
batches until it has a row group's worth; when all of them together hold more than the budget,
the biggest is written early. Both rules depend only on the rows, so the same part always makes
the same row groups: the same bytes, whichever process writes it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from generator.datalake.columns import SCHEMAS, writer_options

__all__ = ["BUDGET", "ROW_GROUP", "ParquetSink", "Sinks"]

ROW_GROUP = 65_536  # rows a file holds before it writes them as a row group
BUDGET = 32 << 20  # bytes all of a part's open files may hold before the biggest is written


class ParquetSink:
    """One Parquet file of one entity, in place (renamed from `.partial`) only once closed."""

    def __init__(self, path: Path, entity: str) -> None:
        self.path = path
        self.entity = entity
        self.schema = SCHEMAS[entity]
        self.held: list[pa.RecordBatch] = []
        self.held_rows = 0
        self.held_bytes = 0
        self.rows = 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.held.append(batch)
            self.held_rows += batch.num_rows
            self.held_bytes += batch.nbytes

    def flush(self) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(
                self.path.with_name(self.path.name + ".partial"),
                self.schema,
                **writer_options(self.entity),
            )
        if self.held:
            table = pa.Table.from_batches(self.held, schema=self.schema)
            self.writer.write_table(table, row_group_size=table.num_rows)
            self.rows += table.num_rows
        self.held, self.held_rows, self.held_bytes = [], 0, 0

    def close(self) -> int:
        self.flush()
        assert self.writer is not None
        self.writer.close()
        os.replace(self.path.with_name(self.path.name + ".partial"), self.path)
        return self.rows


class Sinks:
    """The open files of one part, by path."""

    def __init__(self, budget: int = BUDGET, row_group: int = ROW_GROUP) -> None:
        self.budget = budget
        self.row_group = row_group
        self.files: dict[Path, ParquetSink] = {}
        self.held = 0

    def open(self, path: Path, entity: str) -> ParquetSink:
        sink = self.files.get(path)
        if sink is None:
            sink = self.files[path] = ParquetSink(path, entity)
        return sink

    def add(self, path: Path, entity: str, batch: pa.RecordBatch) -> None:
        sink = self.open(path, entity)
        sink.add(batch)
        self.held += batch.nbytes if batch.num_rows else 0
        if sink.held_rows >= self.row_group:
            self._flush(sink)
        while self.held > self.budget:
            # The biggest first (ties by path: the order is the rows', never the run's).
            biggest = max(self.files.values(), key=lambda s: (s.held_bytes, str(s.path)))
            self._flush(biggest)

    def _flush(self, sink: ParquetSink) -> None:
        self.held -= sink.held_bytes
        sink.flush()

    def close(self) -> dict[Path, int]:
        """Every file closed, in path order; rows written by path."""
        rows = {p: self.files[p].close() for p in sorted(self.files)}
        self.files.clear()
        self.held = 0
        return rows
