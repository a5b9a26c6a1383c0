"""The data lake export: its SQL recomputes the manifest, entities agree with the events, the
columnar path (generate --format datalake) makes the same rows as the JSON-lines path (export),
and the bytes do not depend on how the work is split."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import PROFILES, ROOT, make_dataset

from generator.cli import main
from generator.datalake.check import queries_text, run_queries
from generator.datalake.columns import SCHEMAS, order_ref
from generator.datalake.export import export_datalake
from generator.datalake.generate import generate_datalake
from generator.dataset.reader import open_dataset
from generator.dataset.writer import GenerateRequest
from generator.events.stored import parse_iso_ms
from generator.profile import load_profile

QUERIES = ROOT / "generator" / "datalake" / "queries.sql"
ENTITIES = tuple(SCHEMAS)
# A multi-day run cut at an event count: every path of the writer (the cut, daily folders,
# sessions still open at a midnight) in a few thousand events.
SIZE: dict[str, Any] = {"events": 20_000}
SMALL: dict[str, Any] = {"days": 3, "guests": 500, "events": 2_000}


def _lake(out: Path, profile: str, snapshots: str, **kwargs: Any) -> Path:
    prof = load_profile(PROFILES / f"{profile}.yaml")
    result = generate_datalake(GenerateRequest(profile=prof, out=out, **kwargs), snapshots)
    assert result.complete, result.warnings
    return out


@pytest.fixture(scope="module")
def events_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The JSON lines of the same run as `lake`: what the export is checked against."""
    return make_dataset(tmp_path_factory.mktemp("lake-json"), "multi-region", **SIZE)


@pytest.fixture(scope="module")
def small_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("small-json"), "multi-region", **SMALL)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lake(tmp_path_factory.mktemp("lake"), "multi-region", "daily", **SIZE)


def _folders(directory: Path) -> list[Path]:
    return sorted(p for p in (directory / "datalake").iterdir() if p.is_dir())


def _newest(directory: Path) -> Path:
    return _folders(directory)[-1]


def test_readme_holds_the_sql_verbatim() -> None:
    assert QUERIES.read_text() == queries_text()
    assert QUERIES.read_text().strip() in (ROOT / "README.md").read_text()


def test_the_manifest_is_the_json_lines_one(lake: Path, events_ds: Path) -> None:
    mine = orjson.loads((lake / "manifest.json").read_bytes())
    theirs = orjson.loads((events_ds / "manifest.json").read_bytes())
    assert mine.pop("datalake")["folders"] == [p.name for p in _folders(lake)]
    assert mine.pop("eventsFile") == "datalake" and theirs.pop("eventsFile") == "events.jsonl"
    assert mine == theirs


def test_sql_recomputes_the_answer_key(lake: Path) -> None:
    manifest = orjson.loads((lake / "manifest.json").read_bytes())
    expected = sorted(
        (friendly, v["name"], v["exposures"], v["exposedGuests"], v["convertedGuests"])
        for friendly, flow in manifest["flows"].items()
        for v in flow["variants"]
    )
    got = run_queries(_newest(lake))["answer_key"]
    assert sorted(got) == expected
    assert sum(r[4] for r in got) > 0  # something converted: the comparison means something


def test_summary_figures_match_the_events(lake: Path, events_ds: Path) -> None:
    ds = open_dataset(events_ds)
    manifest = ds.manifest()
    name = {
        v["flowVariantRef"]: (f, v["name"])
        for f, fl in manifest["flows"].items()
        for v in fl["variants"]
    }
    by_session: dict[str, Counter[str]] = defaultdict(Counter)
    ran: set[tuple[str, str]] = set()
    for _, e in ds.events():
        by_session[e["sessionRef"]][e["type"]] += 1
        # A converted session placed an order: its sale's CHECKOUT, not a FAILED one.
        if e["type"] == "CHECKOUT" and e["status"] == "PROCESSED":
            sale = e["arbitraryData"]["status"] in ("PURCHASED", "PAYMENT_PENDING")
            by_session[e["sessionRef"]]["sale"] += sale
        if e["type"] == "TRACKING":
            ran.add((e["sessionRef"], e["arbitraryData"]["flowExecution"]["flowVariantRef"]))
    figures: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0, 0])
    for session, variant in ran:
        c = by_session[session]
        row = figures[name[variant]]
        row[0] += 1
        row[1] += c["VIEW"] == 1 and sum(c.values()) - c["TRACKING"] - c["sale"] == 1
        row[2] += c["sale"] > 0
    for row in figures.values():
        row += [round(row[1] / row[0], 4), round(row[2] / row[0], 4)]
    got = {(r[0], r[1]): list(r[2:]) for r in run_queries(_newest(lake))["summary"]}
    assert got == dict(figures)


def test_entities_join_back_to_the_events(lake: Path, events_ds: Path) -> None:
    folder = _newest(lake)
    con = duckdb.connect()
    events = {
        r[0]: r
        for r in con.execute(
            f"SELECT meta_ref, meta_session_ref, type, meta_guest_ref FROM "
            f"read_parquet('{folder}/events/*/*.parquet')"
        ).fetchall()
    }
    stored = {e["ref"]: e for _, e in open_dataset(events_ds).events()}
    assert set(events) == set(stored)
    sessions = con.execute(
        f"SELECT meta_ref, bxt, core_value, core_started_at, core_ended_at, core_status "
        f"FROM read_parquet('{folder}/sessions/*/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert len({s[0] for s in sessions}) == len(sessions)
    per_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in stored.values():
        per_session[e["sessionRef"]].append(e)
    assert {s[0] for s in sessions} == set(per_session)
    prices = {
        e["ref"]: (
            e["arbitraryData"]["product"]["price"],
            e["arbitraryData"]["product"]["quantity"],
        )
        for e in stored.values()
        if e["type"] == "ADD"
    }

    def sale(e: dict[str, Any]) -> bool:
        return (
            e["type"] == "CHECKOUT"
            and e["status"] == "PROCESSED"
            and e["arbitraryData"]["status"] in ("PURCHASED", "PAYMENT_PENDING")
        )

    for ref, bxt, value, started, ended, status in sessions:
        evs = sorted(per_session[ref], key=lambda e: (e["createdAt"], e["ref"]))
        c = Counter(e["type"] for e in evs)
        c["sale"] = sum(sale(e) for e in evs)
        assert bxt["numEvents"] == str(len(evs))
        assert bxt["numSelects"] == str(c["ADD"]) and bxt["numViews"] == str(c["VIEW"])
        cart = "CONVERTED" if c["sale"] else "ABANDONED" if c["ADD"] else "BROWSED"
        assert bxt["cartType"] == cart
        assert int(started.timestamp() * 1000) == parse_iso_ms(evs[0]["createdAt"])
        assert int(ended.timestamp() * 1000) == parse_iso_ms(evs[-1]["createdAt"])
        assert status in ("OPEN", "CLOSED")
        assert (value is None) == (c["sale"] == 0)
    orders = con.execute(
        f"SELECT meta_ref, core_reference_id, core_price, meta_guest_ref, core_status "
        f"FROM read_parquet('{folder}/orders/*.parquet')"
    ).fetchall()
    checkouts = {e["arbitraryData"]["reference_id"]: e for e in stored.values() if sale(e)}
    assert {o[1] for o in orders} == set(checkouts)
    # Each order's status is its reference's latest PROCESSED CHECKOUT's.
    latest = {}
    for e in sorted(stored.values(), key=lambda e: (e["createdAt"], e["ref"])):
        if e["type"] == "CHECKOUT" and e["status"] == "PROCESSED":
            latest[e["arbitraryData"]["reference_id"]] = e["arbitraryData"]["status"]
    assert {o[1]: o[4] for o in orders} == {r: latest[r] for r in checkouts}
    assert {"CONFIRMED", "REFUNDED"} <= set(latest.values())
    items = con.execute(
        "SELECT meta_ref, meta_order_ref, core_price, core_quantity FROM "
        f"read_parquet('{folder}/order_items/*.parquet')"
    ).fetchall()
    total: dict[str, float] = defaultdict(float)
    for ref, order, price, quantity in items:
        add = stored[ref]
        assert add["type"] == "ADD"
        assert order_ref(add["arbitraryData"]["product"]["referenceId"]) == order
        assert (price, quantity) == prices[ref]
        total[order] += price * quantity
    for meta_ref, reference, price, guest, _ in orders:
        assert meta_ref == order_ref(reference)
        assert price == pytest.approx(total[meta_ref])
        assert events[checkouts[reference]["ref"]][3] == guest
    guests = {
        r[0]: r[1]
        for r in con.execute(
            f"SELECT meta_ref, type FROM read_parquet('{folder}/guests/*.parquet')"
        ).fetchall()
    }
    assert guests == {g["guestRef"]: g["type"] for _, g in open_dataset(events_ds).guests()}


def test_every_documented_column_with_its_type(lake: Path) -> None:
    for folder in _folders(lake):
        for entity, schema in SCHEMAS.items():
            files = sorted((folder / entity).rglob("*.parquet"))
            assert files, (folder, entity)
            for f in files:
                assert pq.read_schema(f).remove_metadata() == schema, f
        parts = sorted((folder / "sessions").iterdir())
        assert parts and all(p.name.startswith("meta_created_at_date=") for p in parts)


def test_daily_snapshots_hold_history_to_their_midnight(lake: Path, events_ds: Path) -> None:
    folders = _folders(lake)
    assert len(folders) >= 3
    times = [parse_iso_ms(e["createdAt"]) for _, e in open_dataset(events_ds).events()]
    con = duckdb.connect()
    statuses: Counter[str] = Counter()
    for folder in folders:
        cut = parse_iso_ms(f"{folder.name}T00:00:00.000Z")
        n = con.execute(
            f"SELECT count(*) FROM read_parquet('{folder}/events/*/*.parquet')"
        ).fetchone()
        assert n is not None and n[0] == sum(t < cut for t in times)
        for (s,) in con.execute(
            f"SELECT core_status FROM read_parquet('{folder}/sessions/*/*.parquet')"
        ).fetchall():
            statuses[s] += 1
    # A snapshot's open sessions: those still within their timeout at its midnight.
    assert statuses["CLOSED"] > 0 and statuses["OPEN"] > 0
    # Each day's events are written once and linked into every later folder; so are the
    # sessions of a day in which no session changed since the folder before.
    day = folders[0] / "events"
    first = next(day.rglob("*.parquet"))
    linked = folders[-1] / first.relative_to(folders[0])
    assert linked.stat().st_ino == first.stat().st_ino
    inodes = {p.stat().st_ino for p in (lake / "datalake").rglob("sessions/*/*.parquet")}
    assert len(inodes) < len(list((lake / "datalake").rglob("sessions/*/*.parquet")))


def _rows(folder: Path, entity: str) -> list[dict[str, Any]]:
    files = sorted((folder / entity).rglob("*.parquet"))
    if not files:
        return []
    tables = [pq.read_table(f, partitioning=None) for f in files]
    return pa.concat_tables(tables).sort_by("meta_ref").to_pylist()


@pytest.mark.parametrize("snapshots", ["daily", "last"])
def test_columnar_rows_equal_the_json_path(
    tmp_path: Path, small_events: Path, snapshots: str
) -> None:
    """generate --format datalake (from the block facts) against export (from the JSON lines
    of the same run): every row of every entity in every folder, and the manifest."""
    slow = export_datalake(small_events, tmp_path / "slow" / "datalake", snapshots=snapshots)
    fast = _lake(tmp_path / "fast", "multi-region", snapshots, **SMALL)
    assert [p.name for p in _folders(fast)] == slow.folders
    for folder in _folders(tmp_path / "slow"):
        mine = fast / "datalake" / folder.name
        for entity in ENTITIES:
            assert _rows(mine, entity) == _rows(folder, entity), (folder.name, entity)
    theirs = orjson.loads((small_events / "manifest.json").read_bytes())
    mine_manifest = orjson.loads((fast / "manifest.json").read_bytes())
    for m in (theirs, mine_manifest):
        m.pop("eventsFile")
    mine_manifest.pop("datalake")
    assert mine_manifest == theirs


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_bytes_however_the_work_is_split(tmp_path: Path) -> None:
    """One process, or two shards each writing its own parts straight into place (one of
    them with two workers): the same files, and the last shard writes the manifest."""
    prof = load_profile(PROFILES / "multi-region.yaml")
    size: dict[str, Any] = {"days": 2, "guests": 4200, "events": 9000}  # 3 blocks

    def run(out: Path, **kw: Any) -> Any:
        req = GenerateRequest(profile=prof, out=out, **size, **kw)
        return generate_datalake(req, "daily", events_per_part=3000)

    assert run(tmp_path / "one").complete
    shards = tmp_path / "shards"
    first = run(shards, shard=(2, 2))
    assert not first.complete and not (shards / "manifest.json").exists()
    assert run(shards, shard=(1, 2), workers=2).complete
    one = _digests(tmp_path / "one")
    assert len({p.split("part-")[-1] for p in one if "part-" in p}) >= 3 * 2  # 3 parts
    assert one == _digests(shards)


def test_shards_made_apart_then_copied_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards run anywhere: each writes its own parts, the trees are copied together, and
    `cdpsim merge` only sums the parts' figures into the manifest."""
    monkeypatch.setenv("CDPSIM_TEST_EVENTS_PER_PART", "1000")
    args = ["smoke", "--days", "0.1", "--guests", "4200", "--format", "datalake", "-q"]
    for i in (1, 2):
        assert main(["generate", *args, "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2"]) == 0
    together = tmp_path / "together"
    for i in (1, 2):
        shutil.copytree(tmp_path / f"s{i}" / "datalake", together / "datalake", dirs_exist_ok=True)
    assert not (together / "manifest.json").exists()
    assert main(["merge", str(together), "--profile", "smoke"]) == 0
    assert main(["validate", str(together)]) == 0
    alone = tmp_path / "alone"
    assert main(["generate", *args, "--out", str(alone)]) == 0
    assert _digests(alone) == _digests(together)


def test_json_path_same_bytes_however_split(tmp_path: Path, small_events: Path) -> None:
    """`cdpsim export DIR --to datalake` (from JSON lines) splits its own way: by guest ref."""
    events = small_events
    one, sharded, workers = tmp_path / "one", tmp_path / "sharded", tmp_path / "workers"
    export_datalake(events, one, parts=3)
    export_datalake(events, sharded, parts=3, shard=(2, 2))
    export_datalake(events, sharded, parts=3, shard=(1, 2))
    export_datalake(events, workers, parts=3, workers=2)
    assert _digests(one) == _digests(sharded) == _digests(workers)


def test_cli_generate_datalake_and_validate(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    args = ["generate", "smoke", "--out", str(out), "--format", "datalake", "--days", "0.2"]
    assert main(args) == 0
    assert (out / "datalake").is_dir() and not (out / "events.jsonl").exists()
    assert main(["validate", str(out)]) == 0
    # A damaged export is reported, not ignored.
    victim = next((out / "datalake").rglob("orders/*.parquet"))
    victim.write_bytes(b"not parquet")
    assert main(["validate", str(out)]) == 1
    assert main(["export", str(tmp_path / "nothing"), "--to", "datalake"]) == 1
    assert main(["export", str(out), "--to", "csv"]) == 2
    assert main([*args, "--snapshots", "weekly"]) == 2
