"""`cdpsim validate`: each kind of damage to a dataset is found and named."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from generator.cli import main
from generator.dataset.reader import DatasetError
from generator.dataset.validate import validate_dataset


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_events(d: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    path = d / "events.jsonl"
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    change(events)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


def _first(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(e for e in events if e["type"] == kind)


def _break_copy(events: list[dict[str, Any]]) -> None:
    fx = _first(events, "TRACKING")["arbitraryData"]["_bx_arbitraryDataV3ga"]["bxt"]
    fx["flowExecution"]["flowExecutionTimeMs"] += 1


def _break_core(events: list[dict[str, Any]]) -> None:
    _first(events, "TRACKING")["arbitraryData"]["_bx_arbitraryDataV3ga"]["core"]["channel"] = "SMS"


def _break_schema(events: list[dict[str, Any]]) -> None:
    _first(events, "TRACKING")["arbitraryData"]["flowExecution"]["extra"] = 1


def _swap_order(events: list[dict[str, Any]]) -> None:
    events[10], events[11] = events[11], events[10]


def _duplicate(events: list[dict[str, Any]]) -> None:
    events.insert(5, dict(events[4]))


def _confirm_unknown(events: list[dict[str, Any]]) -> None:
    _first(events, "CONFIRM")["arbitraryData"]["product"].append({"item_id": "NOPE-0001"})


def _client_key(events: list[dict[str, Any]]) -> None:
    events[3]["clientKey"] = "X" * 32


def _sticky(events: list[dict[str, Any]]) -> None:
    tracking = [e for e in events if e["type"] == "TRACKING"]
    fx0 = tracking[0]["arbitraryData"]["flowExecution"]
    for e in tracking[1:]:
        fx = e["arbitraryData"]["flowExecution"]
        if fx["guestRef"] == fx0["guestRef"] and fx["flowFriendlyId"] == fx0["flowFriendlyId"]:
            other = "00000000-0000-4000-8000-000000000000"
            fx["flowVariantRef"] = other
            e["arbitraryData"]["_bx_arbitraryDataV3ga"]["bxt"]["flowExecution"][
                "flowVariantRef"
            ] = other
            return
    raise AssertionError("no repeated exposure to break")


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        (_break_copy, "tracking copy"),
        (_break_core, "tracking core"),
        (_break_schema, "tracking schema"),
        (_swap_order, "order"),
        (_duplicate, "ref"),
        (_confirm_unknown, "cart"),
        (_client_key, "clientKey"),
        (_sticky, "tracking flow"),
    ],
)
def test_damage_is_found(
    tmp_path: Path, smoke_dataset: Path, damage: Callable[[list[dict[str, Any]]], None], kind: str
) -> None:
    d = _copy(smoke_dataset, tmp_path / "d")
    _edit_events(d, damage)
    report = validate_dataset(d)
    assert kind in report.problems, dict(report.problems)


def test_manifest_answer_key_is_checked(tmp_path: Path, smoke_dataset: Path) -> None:
    d = _copy(smoke_dataset, tmp_path / "d")
    manifest = orjson.loads((d / "manifest.json").read_bytes())
    flow = next(iter(manifest["flows"].values()))
    flow["variants"][0]["convertedGuests"] += 1
    manifest["counts"]["VIEW"] -= 1
    (d / "manifest.json").write_bytes(orjson.dumps(manifest))
    report = validate_dataset(d)
    assert {"answer key", "manifest counts"} <= set(report.problems)


def test_guest_type_is_checked(tmp_path: Path, smoke_dataset: Path) -> None:
    d = _copy(smoke_dataset, tmp_path / "d")
    lines = (d / "guests.jsonl").read_bytes().splitlines()
    first = orjson.loads(lines[0])
    first["type"] = "VISITOR" if first["type"] == "CUSTOMER" else "CUSTOMER"
    lines[0] = orjson.dumps(first)
    (d / "guests.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert "guest type" in validate_dataset(d).problems


def test_truncated_file_names_the_line(tmp_path: Path, smoke_dataset: Path) -> None:
    d = _copy(smoke_dataset, tmp_path / "d")
    data = (d / "events.jsonl").read_bytes()
    (d / "events.jsonl").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"line \d+: truncated"):
        validate_dataset(d)


def test_garbage_line_names_the_line(tmp_path: Path, smoke_dataset: Path) -> None:
    d = _copy(smoke_dataset, tmp_path / "d")
    lines = (d / "events.jsonl").read_bytes().splitlines(keepends=True)
    lines[6] = b"{not json\n"
    (d / "events.jsonl").write_bytes(b"".join(lines))
    with pytest.raises(DatasetError, match="line 7: not valid JSON"):
        validate_dataset(d)


def test_truncated_gzip_is_a_clear_error(tmp_path: Path, smoke_dataset: Path) -> None:
    d = _copy(smoke_dataset, tmp_path / "d")
    raw = gzip.compress((d / "events.jsonl").read_bytes())
    (d / "events.jsonl").unlink()
    (d / "events.jsonl.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=r"gzip|truncated"):
        validate_dataset(d)


def test_cli_exit_codes(tmp_path: Path, smoke_dataset: Path) -> None:
    cmd = [sys.executable, "-m", "generator.cli", "validate"]
    d = _copy(smoke_dataset, tmp_path / "d")
    _edit_events(d, _swap_order)
    bad = subprocess.run([*cmd, str(d)], capture_output=True, text=True)
    assert bad.returncode == 1 and "order" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run([*cmd, str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 1 and "not a directory" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = subprocess.run([*cmd, str(tmp_path / "empty")], capture_output=True, text=True)
    assert empty.returncode == 1 and "no events.jsonl" in empty.stderr


def test_manifest_last_event_at_is_the_last_events_created_at(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert main(["generate", "smoke", "--out", str(out), "--events", "3000"]) == 0
    last = (out / "events.jsonl").read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["lastEventAt"] == orjson.loads(last)["createdAt"]
