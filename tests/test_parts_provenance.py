"""Parts that know where they came from: merges of parts that do not belong are refused, naming
why, and `validate` holds each guest's point of sale to its events'."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import PROFILES

from generator import __version__
from generator.dataset.plan import shard_dir
from generator.dataset.provenance import PARTS_FORMAT
from generator.dataset.validate import validate_dataset
from generator.dataset.writer import GenerateRequest, generate
from generator.profile import load_profile

EVENTS = 3_000  # small: these tests are about the parts, not the data


def _cdpsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _refused(run: subprocess.CompletedProcess[str]) -> str:
    """A readable refusal: exit 2, no traceback; its message on one line."""
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    return " ".join(run.stderr.split())


def _shard(out: Path, i: int, n: int, profile: str = "smoke", **kwargs: object) -> None:
    prof = load_profile(PROFILES / f"{profile}.yaml")
    req = GenerateRequest(profile=prof, out=out, shard=(i, n), events=EVENTS, **kwargs)  # type: ignore[arg-type]
    assert not generate(req).complete


def _all_parts(tmp_path: Path, second: dict[str, object] | None = None) -> Path:
    """Both shards of a 2-shard smoke run, unmerged: each is made apart, then moved together."""
    out, other = tmp_path / "parts", tmp_path / "other"
    _shard(out, 1, 2)
    _shard(other, 2, 2, **(second or {}))
    shutil.move(shard_dir(other, (2, 2)), shard_dir(out, (2, 2)))
    return out


def test_merging_another_profiles_parts_is_refused(tmp_path: Path) -> None:
    out = _all_parts(tmp_path)
    message = _refused(_cdpsim("merge", str(out), "--profile", "retail-ireland"))
    assert "parts were made from profile smoke (sha256 " in message
    assert "but --profile is retail-ireland (sha256 " in message
    assert not (out / "events.jsonl").exists() and not (out / "guests.jsonl").exists()
    # The very same parts, with their own profile, merge into a valid dataset.
    assert _cdpsim("merge", str(out), "--profile", "smoke").returncode == 0
    assert validate_dataset(out).ok


def test_the_join_refuses_a_shard_of_another_profile(tmp_path: Path) -> None:
    out = tmp_path / "parts"
    _shard(out, 1, 2)
    run = _cdpsim(
        "generate", "retail-ireland", "--out", str(out), "--shard", "2/2", "--seed", "7",
        "--events", str(EVENTS),
    )  # fmt: skip
    message = _refused(run)
    assert "shard 1 of 2 was made from profile smoke (sha256 " in message
    assert "but this run from profile retail-ireland (sha256 " in message
    assert not (out / "events.jsonl").exists()


def test_a_missing_shard_is_named(tmp_path: Path) -> None:
    out = tmp_path / "parts"
    _shard(out, 1, 3)
    _shard(out, 3, 3)
    message = _refused(_cdpsim("merge", str(out), "--profile", "smoke"))
    assert "shard 2 of 3 is missing" in message
    assert "shard 1 of 3" not in message and "shard 3 of 3" not in message


def test_a_seed_mismatch_is_named(tmp_path: Path) -> None:
    # At the join: refused before the shard does any work.
    out = tmp_path / "join"
    _shard(out, 1, 2, seed=1)
    run = _cdpsim(
        "generate", "smoke", "--out", str(out), "--shard", "2/2", "--seed", "2",
        "--events", str(EVENTS),
    )  # fmt: skip
    assert "shard 1 of 2 was made with seed 1 but this run with seed 2" in _refused(run)
    assert not shard_dir(out, (2, 2)).exists()
    # At `cdpsim merge`, over shards made apart.
    out = _all_parts(tmp_path, second={"seed": 2})
    message = _refused(_cdpsim("merge", str(out), "--profile", "smoke"))
    assert "shard 2 of 2 was made with seed 2 but shard 1 of 2 with seed 7" in message


def test_a_shard_count_mismatch_is_named(tmp_path: Path) -> None:
    out = tmp_path / "parts"
    _shard(out, 1, 2)
    run = _cdpsim("generate", "smoke", "--out", str(out), "--shard", "2/3", "--events", str(EVENTS))
    message = _refused(run)
    assert "different shard counts (2 and 3)" in message
    assert "holds shard 1 of 2; this run is --shard 2/3" in message


@pytest.mark.parametrize("old", [True, False], ids=["no-record", "other-format"])
def test_a_parts_format_mismatch_is_named(tmp_path: Path, old: bool) -> None:
    out = _all_parts(tmp_path)
    record_path = shard_dir(out, (2, 2)) / "provenance.json"
    if old:
        record_path.unlink()  # as parts from before records were kept
    else:
        record = orjson.loads(record_path.read_bytes())
        record.update(partsFormat=PARTS_FORMAT + 1, generator="9.9.9")
        record_path.write_bytes(orjson.dumps(record))
    message = _refused(_cdpsim("merge", str(out), "--profile", "smoke"))
    this = f"this is cdpsim {__version__} with parts format {PARTS_FORMAT}: regenerate"
    assert this in message
    if old:
        assert "shard 2 of 2 has no provenance record" in message
    else:
        made = f"shard 2 of 2 was made by cdpsim 9.9.9 with parts format {PARTS_FORMAT + 1};"
        assert made in message


def test_validate_holds_a_guests_point_of_sale_to_its_events(
    tmp_path: Path, smoke_dataset: Path
) -> None:
    edited = tmp_path / "edited"
    shutil.copytree(smoke_dataset, edited)
    lines = (edited / "guests.jsonl").read_bytes().splitlines(keepends=True)
    guest = orjson.loads(lines[3])
    assert guest["pointOfSale"] == "smokeshop/ireland"
    guest["pointOfSale"] = "smokeshop/france"
    lines[3] = orjson.dumps(guest) + b"\n"
    (edited / "guests.jsonl").write_bytes(b"".join(lines))
    report = validate_dataset(edited)
    assert dict(report.problems) == {"guest pointOfSale": 1}
    assert guest["guestRef"] in report.examples["guest pointOfSale"][0]
    run = _cdpsim("validate", str(edited))
    assert run.returncode != 0 and "guest pointOfSale" in run.stdout + run.stderr
