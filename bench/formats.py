"""Data lake and Batch speed: `generate --format datalake` in events/s against `generate` writing
the JSON lines (same profile, same size, same run), its peak RSS at 5M against 1M events, and a
Batch upload of 1M records into the embedded server.

Sizes: BENCH_FORMATS_EVENTS (default 1000000) and BENCH_FORMATS_BIG (default 5000000; 0 skips
the memory comparison); BENCH_FORMATS_RECORDS (default 1000000) for the upload.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from common import CDPSIM, ROOT, Run, run

sys.path.insert(0, str(ROOT))

PROFILE = "retail-ireland"
TOKEN = "bench-token-0000000000"


def generate(out: Path, events: int, fmt: str = "jsonl") -> Run:
    cmd = [*CDPSIM, "generate", PROFILE, "--out", str(out), "--events", str(events)]
    return run([*cmd, "--format", fmt])


def synthetic_batch(directory: Path, records: int) -> None:
    """A dataset directory whose batch/ holds `records` guest upserts (what the upload bench
    needs is many valid records; a dataset with 1M orders would take 30M events)."""
    from generator.batch.files import BatchSink
    from generator.profile import load_profile, resolve_profile

    profile = load_profile(resolve_profile(PROFILE))
    batch = directory / "batch"
    batch.mkdir(parents=True)
    sink = BatchSink(batch)
    for i in range(records):
        email = f"bench.guest.{i}@example.com"
        sink.add(
            orjson.dumps(
                {
                    "ref": str(uuid.UUID(int=i + 1, version=4)),
                    "schema": "guest",
                    "mode": "upsert",
                    "value": {
                        "guestType": "customer",
                        "firstName": "Bench",
                        "lastName": f"Guest{i}",
                        "email": email,
                        "identifiers": [{"provider": "email", "id": email}],
                    },
                }
            )
        )
    files = sink.close()
    (batch / "manifest.json").write_bytes(orjson.dumps({"files": files}))
    (directory / "manifest.json").write_bytes(
        orjson.dumps({"clientKey": profile.client_key, "seed": 1, "pointsOfSale": {}})
    )
    (directory / "events.jsonl").write_bytes(b"")


def upload(records: int, work: Path) -> tuple[float, int]:
    from generator.batch.upload import upload_dataset
    from generator.server.process import EmbeddedServer

    ds = work / "batch-ds"
    synthetic_batch(ds, records)
    profile = ROOT / "profiles" / f"{PROFILE}.yaml"
    with EmbeddedServer(profile_path=profile, extra_args=["--api-token", TOKEN]) as server:
        started = time.perf_counter()
        result = upload_dataset(ds, server.url, TOKEN, state=work / "state.json")
        seconds = time.perf_counter() - started
    assert not result.failed and result.records == records
    return seconds, len(result.statuses)


def main() -> None:
    events = int(os.environ.get("BENCH_FORMATS_EVENTS", 1_000_000))
    big = int(os.environ.get("BENCH_FORMATS_BIG", 5_000_000))
    records = int(os.environ.get("BENCH_FORMATS_RECORDS", 1_000_000))
    work = Path(tempfile.mkdtemp(prefix="cdpsim-bench-formats-"))
    try:
        ds = work / "jsonl"
        jsonl = generate(ds, events)
        shutil.rmtree(ds)
        lake = generate(work / "lake", events, "datalake")
        shutil.rmtree(work / "lake")
        jsonl_rate, lake_rate = events / jsonl.seconds, events / lake.seconds
        print(
            f"JSON lines, {events:,} events    {jsonl_rate:>10,.0f} events/s ({jsonl.seconds:.1f}s)"
        )
        print(f"data lake, same profile/size {lake_rate:>10,.0f} events/s ({lake.seconds:.1f}s)")
        print(
            f"  ratio {lake_rate / jsonl_rate:.2f}x (target 1x); peak RSS {lake.max_rss_mb:.0f} MB"
        )
        result: dict[str, object] = {
            "events": events,
            "jsonlEventsPerS": round(jsonl_rate),
            "datalakeEventsPerS": round(lake_rate),
            "datalakeRatio": round(lake_rate / jsonl_rate, 3),
            "datalakeRssMb": round(lake.max_rss_mb, 1),
        }
        if big:
            lake_big = generate(work / "big", big, "datalake")
            shutil.rmtree(work / "big")
            ratio = lake_big.max_rss_mb / lake.max_rss_mb
            print(
                f"peak RSS {big:,} vs {events:,} events: {lake_big.max_rss_mb:.0f} vs "
                f"{lake.max_rss_mb:.0f} MB: {ratio:.2f}x (target within 1.2x)"
            )
            result.update(
                bigEvents=big,
                datalakeBigRssMb=round(lake_big.max_rss_mb, 1),
                rssRatio=round(ratio, 3),
            )
        if records:
            seconds, files = upload(records, work)
            rate = records / seconds
            print(
                f"Batch upload, {records:,} records in {files} file(s): {rate:,.0f} records/s "
                f"({seconds:.1f}s; target 50,000)"
            )
            result.update(batchRecords=records, batchRecordsPerS=round(rate))
        print(json.dumps({"bench": "formats", **result}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
