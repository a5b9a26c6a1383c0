"""One stored-event checker: `validate`, `/v1/ingest` and replay's reader find the same problem."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import make_dataset

from generator.dataset.reader import DatasetError
from generator.dataset.validate import validate_dataset
from generator.events.checker import StoredEventChecker
from generator.events.stored import ENVELOPE_FIELDS, TRACKING_FIELDS, envelope, tracking_event
from generator.replay.plan import ReplayPlan
from generator.server.ingest import check_stored

Event = dict[str, Any]


def _fx(e: Event) -> Event:
    fx: Event = e["arbitraryData"]["flowExecution"]
    return fx


def _both(e: Event, name: str, value: object) -> None:
    """Set a flowExecution field in both copies (so the copies stay equal)."""
    _fx(e)[name] = value
    e["arbitraryData"]["_bx_arbitraryDataV3ga"]["bxt"]["flowExecution"][name] = value


def _set(path: tuple[str, ...], value: object) -> Callable[[Event], None]:
    def change(e: Event) -> None:
        target = e
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _drop(name: str) -> Callable[[Event], None]:
    def change(e: Event) -> None:
        e.pop(name)

    return change


def _drop_occurred(e: Event) -> None:
    _fx(e).pop("occurredAt")


def _as_list(e: Event) -> None:
    """Marker: the line becomes a JSON list holding the event."""


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


V3 = ("arbitraryData", "_bx_arbitraryDataV3ga")
# (name, which event, how to break it, words the first problem must hold)
BROKEN: list[tuple[str, str, Callable[[Event], None], str]] = [
    ("tracking extra flowExecution field", "TRACKING", lambda e: _both(e, "x", 1), "schema"),
    ("tracking extra top-level field", "TRACKING", _set(("flowExecution",), {}), "unexpected"),
    ("tracking extra arbitraryData field", "TRACKING", _set(("arbitraryData", "x"), 1), "schema"),
    ("tracking missing flowExecutionRef", "TRACKING", _drop("flowExecutionRef"), "missing"),
    ("tracking missing occurredAt", "TRACKING", _drop_occurred, "schema"),
    ("tracking occurredAt as text", "TRACKING", lambda e: _both(e, "occurredAt", "1"), "schema"),
    ("tracking status FAILED", "TRACKING", _set(("status",), "FAILED"), "schema"),
    ("tracking category", "TRACKING", _set((*V3, "bxt", "category"), "SEEN"), "schema"),
    ("tracking friendly id", "TRACKING", lambda e: _both(e, "flowFriendlyId", "Bad-Id"), "schema"),
    ("tracking execution ref", "TRACKING", lambda e: _both(e, "ref", str(_uuid(1))), "refs differ"),
    ("tracking copy", "TRACKING", lambda e: _fx(e).update(flowExecutionTimeMs=1), "differs"),
    ("tracking core pos", "TRACKING", _set((*V3, "core", "pointOfSale"), "elsewhere"), "core"),
    ("tracking core channel", "TRACKING", _set((*V3, "core", "channel"), "SMS"), "core"),
    ("tracking late", "TRACKING", lambda e: _both(e, "occurredAt", 0), "after occurredAt"),
    ("tracking early", "TRACKING", lambda e: _both(e, "occurredAt", 2 * 10**12), "after"),
    ("missing sessionRef", "VIEW", _drop("sessionRef"), "missing field(s): sessionRef"),
    ("extra envelope field", "VIEW", _set(("guestRef",), str(_uuid(2))), "unexpected"),
    ("ref not a uuid", "VIEW", _set(("ref",), 12), "not a lower-case UUID"),
    ("upper-case uuid", "VIEW", lambda e: e.update(ref=e["ref"].upper()), "lower-case UUID"),
    ("other client key", "VIEW", _set(("clientKey",), "Z" * 32), "client key"),
    ("short client key", "VIEW", _set(("clientKey",), "short"), "32 letters"),
    ("createdAt without ms", "VIEW", _set(("createdAt",), "2025-03-03T10:00:00Z"), "ISO-8601"),
    ("createdAt month 00", "VIEW", _set(("createdAt",), "2025-00-03T10:00:00.000Z"), "real time"),
    ("createdAt 30 February", "TRACKING", _set(("createdAt",), "2025-02-30T10:00:00.000Z"), "real"),
    ("createdAt in year 0", "VIEW", _set(("createdAt",), "0000-01-01T00:00:00.000Z"), "real"),
    ("modifiedAt at 24:00", "VIEW", _set(("modifiedAt",), "2025-03-03T24:00:00.000Z"), "real"),
    ("modifiedAt before createdAt", "VIEW", _set(("modifiedAt",), "2000-01-01T00:00:00.000Z"), ""),
    ("status", "VIEW", _set(("status",), "DONE"), "status"),
    ("channel", "VIEW", _set(("channel",), "TV"), "not a CDP channel"),
    ("empty point of sale", "VIEW", _set(("pointOfSale",), ""), "pointOfSale"),
    ("arbitraryData a list", "VIEW", _set(("arbitraryData",), []), "arbitraryData"),
    ("not an object", "VIEW", _as_list, "not a JSON object"),
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("checker") / "smoke", "smoke", events=300)


def _lines(directory: Path) -> list[bytes]:
    return (directory / "events.jsonl").read_bytes().splitlines(keepends=True)


def _broken(smoke: Path, tmp_path: Path, kind: str, change: Callable[[Event], None]) -> Any:
    """A copy of the dataset with the first event of `kind` broken; (dir, line, event)."""
    out = tmp_path / "broken"
    shutil.copytree(smoke, out)
    lines = _lines(out)
    line = next(i for i, raw in enumerate(lines) if orjson.loads(raw)["type"] == kind)
    event = copy.deepcopy(orjson.loads(lines[line]))
    change(event)
    bad: Any = [event] if change is _as_list else event
    lines[line] = orjson.dumps(bad) + b"\n"
    (out / "events.jsonl").write_bytes(b"".join(lines))
    return out, line + 1, bad


@pytest.mark.parametrize(("name", "kind", "change", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_validate_ingest_and_replay_find_the_same_problem(
    smoke: Path,
    tmp_path: Path,
    name: str,
    kind: str,
    change: Callable[[Event], None],
    words: str,
) -> None:
    out, line, bad = _broken(smoke, tmp_path, kind, change)
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    problems = StoredEventChecker(client_key=manifest["clientKey"]).problems(bad)
    assert problems, name
    first = problems[0]
    assert words in first.message
    # The server takes the first problem.
    assert check_stored(bad, manifest["clientKey"]) == first.message
    # Replay's reader refuses the dataset with the same first problem, at that line.
    with pytest.raises(DatasetError) as refused:
        ReplayPlan.open(out).check()
    assert str(refused.value).endswith(f"line {line}: {first.message}")
    # validate reports it under its kind, and every other problem of the event as well.
    report = validate_dataset(out)
    for problem in problems:
        assert f"line {line}: {problem.message}" in report.examples[problem.kind], report.examples


def test_a_good_dataset_has_no_problem_for_any_consumer(smoke: Path) -> None:
    manifest = orjson.loads((smoke / "manifest.json").read_bytes())
    assert validate_dataset(smoke).ok
    ReplayPlan.open(smoke).check()
    for raw in _lines(smoke):
        assert check_stored(orjson.loads(raw), manifest["clientKey"]) is None


def test_dataset_context_problems_are_found_by_validate_and_replay(
    smoke: Path, tmp_path: Path
) -> None:
    """What only a dataset knows: its points of sale, its guests' browsers, its flows."""
    for kind, change, words in [
        ("VIEW", _set(("pointOfSale",), "other/shop"), "unknown point of sale"),
        ("VIEW", _set(("browserRef",), _uuid(3)), "in no guest"),
        ("TRACKING", lambda e: _both(e, "guestRef", _uuid(4)), "owns browserRef"),
        ("TRACKING", lambda e: _both(e, "flowRef", _uuid(5)), "not a flow"),
        ("TRACKING", lambda e: _both(e, "flowVariantRef", _uuid(6)), "not a variant"),
    ]:
        shutil.rmtree(tmp_path / "broken", ignore_errors=True)
        out, _, _ = _broken(smoke, tmp_path, kind, change)
        with pytest.raises(DatasetError, match=words):
            ReplayPlan.open(out).check()
        report = validate_dataset(out)
        assert any(words in x for xs in report.examples.values() for x in xs), report.examples


def test_the_server_takes_custom_types_a_dataset_does_not() -> None:
    """The one designed difference: the Stream API accepts custom upper-case types."""
    event = envelope(
        ref=_uuid(7),
        client_key="K" * 32,
        created_at="2025-03-03T10:00:00.000Z",
        modified_at="2025-03-03T10:00:00.010Z",
        type="MY_CUSTOM",
        channel="WEB",
        point_of_sale="shop",
        browser_ref=_uuid(8),
        session_ref=_uuid(9),
        arbitrary_data={},
    )
    assert check_stored(event, "K" * 32) is None
    problem = StoredEventChecker(client_key="K" * 32).first(event)
    assert problem is not None and problem.kind == "type"


def test_builders_write_the_envelope_in_the_one_declared_order() -> None:
    common = {
        "ref": _uuid(1),
        "client_key": "K" * 32,
        "created_at": "2025-03-03T10:00:00.000Z",
        "modified_at": "2025-03-03T10:00:00.010Z",
        "channel": "WEB",
        "point_of_sale": "shop",
        "browser_ref": _uuid(2),
        "session_ref": _uuid(3),
    }
    assert tuple(envelope(**common, type="VIEW", arbitrary_data={})) == ENVELOPE_FIELDS
    tracking = tracking_event(
        **common,
        flow_execution_ref=_uuid(4),
        occurred_ms=1_741_000_000_000,
        flow_ref=_uuid(5),
        flow_friendly_id="f",
        flow_variant_ref=_uuid(6),
        guest_ref=_uuid(7),
        execution_ms=3,
    )
    assert tuple(tracking) == TRACKING_FIELDS
