"""`cdpsim info`, and the --json and --quiet of `generate` and `validate`."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from conftest import PROFILES

from generator.cli import main
from generator.report.stats import wilson


def test_info_json_is_the_manifest_and_its_answer_key(
    multi_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["info", str(multi_dataset), "--json"]) == 0
    info = orjson.loads(capsys.readouterr().out)
    manifest = orjson.loads((multi_dataset / "manifest.json").read_bytes())
    assert info["events"] == manifest["events"]
    assert info["counts"] == manifest["counts"]
    assert info["guests"] == manifest["guests"]
    assert info["seed"] == manifest["seed"]
    assert list(info["pointsOfSale"]) == list(manifest["pointsOfSale"])
    assert [f["flow"] for f in info["answerKey"]] == list(manifest["flows"])
    for flow in info["answerKey"]:
        want = manifest["flows"][flow["flow"]]
        assert flow["attributionHours"] == want["attributionHours"]
        for got, v in zip(flow["variants"], want["variants"], strict=True):
            assert got["configuredRate"] == v["conversionRate"]
            for key in ("exposures", "exposedGuests", "convertedGuests"):
                assert got[key] == v[key]
            assert got["ci95"] == list(wilson(v["convertedGuests"], v["exposedGuests"]))


def test_info_table_names_every_flow_and_variant(
    smoke_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["info", str(smoke_dataset)]) == 0
    out = capsys.readouterr().out
    manifest = orjson.loads((smoke_dataset / "manifest.json").read_bytes())
    assert "answer key" in out and f"{manifest['events']:,}" in out
    for name, flow in manifest["flows"].items():
        assert name[:8] in out
        for v in flow["variants"]:
            assert v["name"] in out


def test_info_on_no_dataset_is_a_readable_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no events.jsonl" in err and "Traceback" not in err


def test_generate_json_and_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    out = tmp_path / "a"
    assert main(["generate", str(PROFILES / "smoke.yaml"), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    doc = orjson.loads(captured.out)
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert doc["complete"] is True
    assert doc["events"] == manifest["events"]
    assert doc["guests"] == manifest["guests"]["seen"]
    assert {k: v for k, v in doc["counts"].items() if v} == {
        k: v for k, v in manifest["counts"].items() if v
    }
    assert captured.err == ""
    quiet = tmp_path / "b"
    assert main(["generate", str(PROFILES / "smoke.yaml"), "--out", str(quiet), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    # Same bytes either way.
    assert (quiet / "events.jsonl").read_bytes() == (out / "events.jsonl").read_bytes()


def test_validate_json_and_quiet(
    smoke_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["validate", str(smoke_dataset), "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    manifest = orjson.loads((smoke_dataset / "manifest.json").read_bytes())
    assert doc == {"ok": True, "events": manifest["events"], "problems": {}, "examples": {}}
    assert main(["validate", str(smoke_dataset), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")

    broken = tmp_path / "broken"
    shutil.copytree(smoke_dataset, broken)
    manifest["counts"]["VIEW"] += 1
    (broken / "manifest.json").write_bytes(orjson.dumps(manifest))
    assert main(["validate", str(broken), "--json"]) == 1
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["problems"]["manifest counts"] >= 1
    assert any("VIEW" in x for x in doc["examples"]["manifest counts"])
    assert main(["validate", str(broken), "-q"]) == 1
    assert capsys.readouterr() == ("", "")
