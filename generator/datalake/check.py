"""Checking a data lake export against what its parts recorded and the dataset's manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from generator.datalake.columns import SCHEMAS

__all__ = ["check_datalake"]


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
