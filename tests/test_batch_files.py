"""Batch API files: every line valid against the shipped schemas, split by size, deterministic."""

from __future__ import annotations

import gzip
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from conftest import make_dataset

from generator.batch.files import export_batch
from generator.cli import main
from generator.dataset.reader import open_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("batch"), "multi-region", events=20_000)


def _schema(name: str) -> dict:
    return json.loads((resources.files("generator.batch") / f"{name}.schema.json").read_text())


def _records(directory: Path) -> list[dict]:
    out = []
    for f in sorted(directory.glob("batch-*.jsonl.gz")):
        with gzip.open(f, "rb") as fh:
            out += [orjson.loads(line) for line in fh]
    return out


def test_every_line_is_valid_and_every_record_is_there(tmp_path: Path, dataset: Path) -> None:
    files = export_batch(dataset, tmp_path / "b")
    records = _records(tmp_path / "b")
    validators = {k: jsonschema.Draft202012Validator(_schema(k)) for k in ("guest", "order")}
    for r in records:
        assert set(r) == {"ref", "schema", "mode", "value"}
        assert r["mode"] == {"guest": "upsert", "order": "insert"}[r["schema"]]
        validators[r["schema"]].validate(r["value"])
    assert len({r["ref"] for r in records}) == len(records)
    ds = open_dataset(dataset)
    customers = {g["guestRef"] for _, g in ds.guests() if g["type"] == "CUSTOMER"}
    # An order per sale (its first PROCESSED CHECKOUT), with its reference's latest status.
    checkouts: dict[str, Any] = {}
    status: dict[str, str] = {}
    for _, e in ds.events():
        if e["type"] == "CHECKOUT" and e["status"] == "PROCESSED":
            checkouts.setdefault(e["arbitraryData"]["reference_id"], e)
            status[e["arbitraryData"]["reference_id"]] = e["arbitraryData"]["status"]
    guests = [r for r in records if r["schema"] == "guest"]
    assert {r["value"]["extensions"][0]["cdpsimGuestRef"] for r in guests} == customers
    orders = {r["value"]["referenceId"]: r["value"] for r in records if r["schema"] == "order"}
    assert set(orders) == set(checkouts)
    for ref, value in orders.items():
        assert value["orderedAt"] == checkouts[ref]["createdAt"]  # the historic time
        assert value["status"] == status[ref]
        assert value["orderItems"]
        assert value["price"] == pytest.approx(
            sum(i["price"] * i["quantity"] for i in value["orderItems"])
        )
    assert files.guests == len(guests) and files.orders == len(orders)


def test_files_split_by_size_never_mid_record(tmp_path: Path, dataset: Path) -> None:
    limit = 8_000
    files = export_batch(dataset, tmp_path / "small", limit=limit)
    assert len(files.files) > 3
    for f in files.files:
        data = (tmp_path / "small" / f["name"]).read_bytes()
        assert len(data) == f["size"] <= limit
        assert hashlib.md5(data).hexdigest() == f["md5"]
        lines = gzip.decompress(data).split(b"\n")
        assert lines[-1] == b"" and len(lines) - 1 == f["records"]
    whole = export_batch(dataset, tmp_path / "whole")
    assert len(whole.files) == 1
    assert _records(tmp_path / "small") == _records(tmp_path / "whole")


def test_same_dataset_same_bytes(tmp_path: Path, dataset: Path) -> None:
    export_batch(dataset, tmp_path / "a", limit=30_000)
    export_batch(dataset, tmp_path / "b", limit=30_000)
    a = sorted((tmp_path / "a").iterdir())
    assert [p.read_bytes() for p in a] == [(tmp_path / "b" / p.name).read_bytes() for p in a]


def test_cli_generate_batch(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert main(["generate", "smoke", "--out", str(out), "--format", "batch"]) == 0
    assert orjson.loads((out / "batch" / "manifest.json").read_bytes())["files"]
