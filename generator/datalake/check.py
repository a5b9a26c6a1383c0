"""Checking a data lake export against what its parts recorded and the dataset's manifest, and
running the README's SQL (`queries.sql`) over a snapshot folder."""

from __future__ import annotations

from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from generator.datalake.columns import SCHEMAS

__all__ = ["check_answer_key", "check_datalake", "queries_text", "run_queries"]


def _rows(folder: Path, entity: str, name: str, problems: list[str]) -> int:
    total = 0
    for f in sorted((folder / entity).rglob(name)):
        try:
            meta = pq.ParquetFile(f)
        except (OSError, pa.ArrowException) as exc:
            problems.append(f"{f}: not a readable Parquet file ({exc})")
            continue
        if meta.schema_arrow.remove_metadata() != SCHEMAS[entity]:
            problems.append(f"{f}: columns differ from the documented {entity} schema")
        total += meta.metadata.num_rows
    return total


def check_datalake(lake: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems found: unreadable files, row counts that differ from the parts' records, parts
    missing, and a newest folder whose events do not number the manifest's."""
    problems: list[str] = []
    folders = sorted(p for p in lake.iterdir() if p.is_dir())
    if not folders:
        return [f"{lake}: no snapshot folder"]
    for folder in folders:
        records = sorted((folder / "_parts").glob("part-*.json"))
        if not records:
            problems.append(f"{folder}: no finished part (no _parts/*.json)")
            continue
        counts: Counter[str] = Counter()
        parts = set()
        for r in records:
            data = orjson.loads(r.read_bytes())
            parts.add(int(data["parts"]))
            counts.update(data["rows"])
            name = r.name.replace(".json", ".parquet")
            for entity in SCHEMAS:
                found = _rows(folder, entity, name, problems)
                if found != data["rows"].get(entity, 0):
                    problems.append(
                        f"{folder}/{entity}: {found} rows in {name}, "
                        f"its part recorded {data['rows'].get(entity, 0)}"
                    )
        if len(parts) != 1 or len(records) != next(iter(parts)):
            problems.append(f"{folder}: {len(records)} of {max(parts)} parts finished")
        elif folder == folders[-1] and counts["events"] != manifest.get("events"):
            problems.append(
                f"{folder}: {counts['events']} events, the manifest says {manifest.get('events')}"
            )
    return problems


def queries_text() -> str:
    """The SQL the README shows: views over a folder (`{lake}`), then named queries."""
    return (resources.files("generator.datalake") / "queries.sql").read_text()


def run_queries(folder: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The README's SQL run in DuckDB as a reader would: the views, then each named query."""
    import duckdb

    text = queries_text().replace("{lake}", str(folder))
    views, *named = text.split("-- name: ")
    con = duckdb.connect()
    try:
        for statement in views.split(";"):
            if statement.strip():
                con.execute(statement)
        return {
            query.split("\n", 1)[0].strip(): con.execute(query.split("\n", 1)[1]).fetchall()
            for query in named
        }
    finally:
        con.close()


def check_answer_key(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems found when the README's SQL recomputes the answer key from the folder."""
    expected = sorted(
        (friendly, v["name"], v["exposures"], v["exposedGuests"], v["convertedGuests"])
        for friendly, flow in manifest.get("flows", {}).items()
        for v in flow["variants"]
    )
    got = sorted(run_queries(folder)["answer_key"])
    if got == expected:
        return []
    return [
        f"{folder}: the SQL answer key {row} differs from the manifest's {want}"
        for row, want in zip(got, expected, strict=False)
        if row != want
    ] or [f"{folder}: the SQL answer key has {len(got)} rows, the manifest {len(expected)}"]
