"""The data lake export: its SQL recomputes the manifest, entities agree with the events, and the
bytes do not depend on how the work is split."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, make_dataset

from generator.cli import main
from generator.datalake.columns import SCHEMAS, order_ref
from generator.datalake.export import export_datalake
from generator.dataset.reader import open_dataset
from generator.events.stored import parse_iso_ms

QUERIES = ROOT / "generator" / "datalake" / "queries.sql"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = make_dataset(tmp_path_factory.mktemp("lake"), "multi-region", events=20_000)
    export_datalake(out, snapshots="daily")
    return out


def _newest(directory: Path) -> Path:
    return sorted(p for p in (directory / "datalake").iterdir() if p.is_dir())[-1]


def _run_queries(folder: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The README's SQL, run as a reader would: the views, then each named query."""
    text = QUERIES.read_text().replace("{lake}", str(folder))
    views, rest = text.split("-- name: answer_key")
    answer_key, summary = rest.split("-- name: summary")
    con = duckdb.connect()
    for statement in views.split(";"):
        if statement.strip():
            con.execute(statement)
    return {
        "answer_key": con.execute(answer_key).fetchall(),
        "summary": con.execute(summary).fetchall(),
    }


def test_readme_holds_the_sql_verbatim() -> None:
    assert QUERIES.read_text().strip() in (ROOT / "README.md").read_text()


def test_sql_recomputes_the_answer_key(lake: Path) -> None:
    manifest = orjson.loads((lake / "manifest.json").read_bytes())
    expected = sorted(
        (friendly, v["name"], v["exposures"], v["exposedGuests"], v["convertedGuests"])
        for friendly, flow in manifest["flows"].items()
        for v in flow["variants"]
    )
    got = _run_queries(_newest(lake))["answer_key"]
    assert sorted(got) == expected
    assert sum(r[4] for r in got) > 0  # something converted: the comparison means something


def test_summary_figures_match_the_events(lake: Path) -> None:
    ds = open_dataset(lake)
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
        if e["type"] == "TRACKING":
            ran.add((e["sessionRef"], e["arbitraryData"]["flowExecution"]["flowVariantRef"]))
    figures: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for session, variant in ran:
        c = by_session[session]
        row = figures[name[variant]]
        row[0] += 1
        row[1] += c["VIEW"] == 1 and sum(c.values()) - c["TRACKING"] == 1
        row[2] += c["CHECKOUT"] > 0
    got = {(r[0], r[1]): list(r[2:5]) for r in _run_queries(_newest(lake))["summary"]}
    assert got == dict(figures)


def test_entities_join_back_to_the_events(lake: Path) -> None:
    folder = _newest(lake)
    con = duckdb.connect()
    events = {
        r[0]: r
        for r in con.execute(
            f"SELECT meta_ref, meta_session_ref, type, meta_guest_ref FROM "
            f"read_parquet('{folder}/events/*/*.parquet')"
        ).fetchall()
    }
    ds = open_dataset(lake)
    stored = {e["ref"]: e for _, e in ds.events()}
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
    prices: dict[str, float] = {}
    for e in stored.values():
        if e["type"] == "ADD":
            p = e["arbitraryData"]["product"]
            prices[e["ref"]] = p["price"]
    for ref, bxt, value, started, ended, status in sessions:
        evs = sorted(per_session[ref], key=lambda e: (e["createdAt"], e["ref"]))
        c = Counter(e["type"] for e in evs)
        assert bxt["numEvents"] == str(len(evs))
        assert bxt["numSelects"] == str(c["ADD"]) and bxt["numViews"] == str(c["VIEW"])
        cart = "CONVERTED" if c["CHECKOUT"] else "ABANDONED" if c["ADD"] else "BROWSED"
        assert bxt["cartType"] == cart
        assert int(started.timestamp() * 1000) == parse_iso_ms(evs[0]["createdAt"])
        assert int(ended.timestamp() * 1000) == parse_iso_ms(evs[-1]["createdAt"])
        assert status == "CLOSED"  # the newest folder is past every session's timeout
        assert (value is None) == (c["CHECKOUT"] == 0)
    orders = con.execute(
        f"SELECT meta_ref, core_reference_id, core_price, meta_guest_ref "
        f"FROM read_parquet('{folder}/orders/*.parquet')"
    ).fetchall()
    checkouts = {
        e["arbitraryData"]["reference_id"]: e for e in stored.values() if e["type"] == "CHECKOUT"
    }
    assert {o[1] for o in orders} == set(checkouts)
    items = con.execute(
        "SELECT meta_ref, meta_order_ref, core_price FROM "
        f"read_parquet('{folder}/order_items/*.parquet')"
    ).fetchall()
    total: dict[str, float] = defaultdict(float)
    for ref, order, price in items:
        add = stored[ref]
        assert add["type"] == "ADD"
        assert order_ref(add["arbitraryData"]["product"]["referenceId"]) == order
        assert price == prices[ref]
        total[order] += price
    for meta_ref, reference, price, guest in orders:
        assert meta_ref == order_ref(reference)
        assert price == pytest.approx(total[meta_ref])
        assert events[checkouts[reference]["ref"]][3] == guest


def test_every_documented_column_with_its_type(lake: Path) -> None:
    folder = _newest(lake)
    for entity, schema in SCHEMAS.items():
        files = sorted((folder / entity).rglob("*.parquet"))
        assert files, entity
        for f in files:
            assert pq.read_schema(f).remove_metadata() == schema, f
    parts = sorted((folder / "sessions").iterdir())
    assert parts and all(p.name.startswith("meta_created_at_date=") for p in parts)


def test_daily_snapshots_hold_history_to_their_midnight(lake: Path) -> None:
    folders = sorted(p for p in (lake / "datalake").iterdir() if p.is_dir())
    assert len(folders) >= 2
    times = [parse_iso_ms(e["createdAt"]) for _, e in open_dataset(lake).events()]
    con = duckdb.connect()
    for folder in folders:
        cut = parse_iso_ms(f"{folder.name}T00:00:00.000Z")
        n = con.execute(
            f"SELECT count(*) FROM read_parquet('{folder}/events/*/*.parquet')"
        ).fetchone()
        assert n is not None and n[0] == sum(t < cut for t in times)
    # A snapshot's open sessions: only those still within their timeout at its midnight.
    statuses = Counter()
    for folder in folders[:-1]:
        for (s,) in con.execute(
            f"SELECT core_status FROM read_parquet('{folder}/sessions/*/*.parquet')"
        ).fetchall():
            statuses[s] += 1
    assert statuses["CLOSED"] > 0


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_bytes_however_the_work_is_split(tmp_path: Path, lake: Path) -> None:
    one = tmp_path / "one"
    export_datalake(lake, one, parts=3)
    sharded = tmp_path / "sharded"
    export_datalake(lake, sharded, parts=3, shard=(2, 2))
    export_datalake(lake, sharded, parts=3, shard=(1, 2))
    workers = tmp_path / "workers"
    export_datalake(lake, workers, parts=3, workers=2)
    assert _digests(one) == _digests(sharded) == _digests(workers)
    con = duckdb.connect()
    for entity in ("events", "guests", "orders"):
        where = f"{one}/*/{entity}/**/*.parquet"
        n = con.execute(f"SELECT count(*) FROM read_parquet('{where}')").fetchone()
        m = con.execute(
            f"SELECT count(*) FROM read_parquet('{_newest(lake)}/{entity}/**/*.parquet')"
        ).fetchone()
        assert n == m


def test_cli_generate_datalake_and_validate(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert main(["generate", "smoke", "--out", str(out), "--format", "datalake"]) == 0
    assert (out / "events.jsonl").exists() and (out / "datalake").is_dir()
    assert main(["validate", str(out)]) == 0
    # A damaged export is reported, not ignored.
    victim = next((out / "datalake").rglob("orders/*.parquet"))
    victim.write_bytes(b"not parquet")
    assert main(["validate", str(out)]) == 1
    assert main(["export", str(tmp_path / "nothing"), "--to", "datalake"]) == 1
    assert main(["export", str(out), "--to", "csv"]) == 2
