"""`cdpsim validate`: each kind of damage to a dataset is found and named."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from generator.cli import main
from generator.dataset.reader import DatasetError, open_dataset
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


def _refund_in_the_sale_session(events: list[dict[str, Any]]) -> None:
    """An order REFUNDED in its own sale's session, in place of its CONFIRMED."""
    confirmed = next(
        e for e in events if e["type"] == "CHECKOUT" and e["arbitraryData"]["status"] == "CONFIRMED"
    )
    confirmed["arbitraryData"]["status"] = "REFUNDED"


def _failed_unannounced(events: list[dict[str, Any]]) -> None:
    """A CONFIRM stored FAILED that the manifest does not count (and that lists only items
    ADDed)."""
    _first(events, "CONFIRM")["status"] = "FAILED"


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


def _tracking_before_its_view(events: list[dict[str, Any]]) -> None:
    """Store a TRACKING ahead of the page view that ran its flow (as 26% were once)."""
    i = next(i for i, e in enumerate(events) if e["type"] == "TRACKING")
    session = events[i]["sessionRef"]
    j = max(
        k for k in range(i) if events[k]["sessionRef"] == session and events[k]["type"] == "VIEW"
    )
    events.insert(j, events.pop(i))


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        (_tracking_before_its_view, "tracking trigger"),
        (_break_copy, "tracking copy"),
        (_break_core, "tracking core"),
        (_break_schema, "tracking schema"),
        (_swap_order, "order"),
        (_duplicate, "ref"),
        (_confirm_unknown, "cart"),
        (_refund_in_the_sale_session, "order status"),
        (_failed_unannounced, "failed"),
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


def test_a_file_cut_at_a_line_boundary_is_truncated(tmp_path: Path, smoke_dataset: Path) -> None:
    """Whole lines only: the manifest knows how many there were (no 'guest has no event')."""
    d = _copy(smoke_dataset, tmp_path / "d")
    lines = (d / "events.jsonl").read_bytes().splitlines(keepends=True)
    (d / "events.jsonl").write_bytes(b"".join(lines[: len(lines) * 2 // 3]))
    want = (
        f"truncated: it holds {len(lines) * 2 // 3:,} events and manifest.json says {len(lines):,}"
    )
    with pytest.raises(DatasetError, match=want):
        validate_dataset(d)


def test_both_events_files_are_refused(tmp_path: Path, smoke_dataset: Path) -> None:
    d = _copy(smoke_dataset, tmp_path / "d")
    (d / "events.jsonl.gz").write_bytes(gzip.compress((d / "events.jsonl").read_bytes()))
    with pytest.raises(DatasetError, match=r"holds both events\.jsonl and events\.jsonl\.gz"):
        validate_dataset(d)


def test_crlf_line_ends_are_reported(tmp_path: Path, smoke_dataset: Path) -> None:
    d = _copy(smoke_dataset, tmp_path / "d")
    for name in ("events.jsonl", "guests.jsonl"):
        (d / name).write_bytes((d / name).read_bytes().replace(b"\n", b"\r\n"))
    report = validate_dataset(d)
    assert set(report.problems) == {"line ends"}  # and nothing else breaks
    events = sum(1 for _ in (smoke_dataset / "events.jsonl").open("rb"))
    guests = sum(1 for _ in (smoke_dataset / "guests.jsonl").open("rb"))
    assert report.problems["line ends"] == events + guests
    assert (
        report.examples["line ends"][0] == "guests.jsonl line 1: ends with CRLF (\\r\\n), not \\n"
    )


@pytest.mark.parametrize("sweep", [4096, 16])
def test_a_session_that_comes_back_after_its_timeout_is_a_gap(
    tmp_path: Path, smoke_dataset: Path, sweep: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found while the session is held (4096), and after it was let go (16: the sessions
    past their timeout are swept often, and the comeback is found on disk)."""
    from generator.dataset import invariants
    from generator.events.stored import iso_ms, parse_iso_ms

    monkeypatch.setattr(invariants, "_SWEEP", sweep)
    d = _copy(smoke_dataset, tmp_path / "d")

    def late(events: list[dict[str, Any]]) -> None:
        last = {e["sessionRef"]: e for e in events}  # each session's last event
        sizes = Counter(e["sessionRef"] for e in events)
        e = next(
            e
            for e in events[50:]
            if last[e["sessionRef"]] is e and e["type"] == "VIEW" and sizes[e["sessionRef"]] > 1
        )
        e["createdAt"] = e["modifiedAt"] = iso_ms(parse_iso_ms(e["createdAt"]) + 3 * 3_600_000)
        events.sort(key=lambda e: (e["createdAt"], e["ref"]))

    _edit_events(d, late)
    assert "session gap" in validate_dataset(d).problems


def test_validate_reports_progress_up_to_the_manifests_count(
    smoke_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generator.dataset import validate

    monkeypatch.setattr(validate, "_PROGRESS_EVERY", 100)
    calls: list[tuple[str, int, int]] = []
    report = validate_dataset(smoke_dataset, progress=lambda *a: calls.append(a))
    assert {phase for phase, _, _ in calls} == {"validate"}
    assert calls[-1] == ("validate", report.events, report.events) and len(calls) > 5
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)


def test_sessions_are_let_go_once_past_their_timeout(
    smoke_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What validate holds per session lasts while the session may still go on: counted with
    a plugged-in check (sessions opened minus sessions ended, at every event)."""
    from generator.dataset import invariants
    from generator.dataset.invariants import Check, Seen, Session, default_checks

    monkeypatch.setattr(invariants, "_SWEEP", 16)

    class Alive(Check):
        opened = ended = most = 0

        def event(self, seen: Seen) -> None:
            self.opened += seen.opened
            self.most = max(self.most, self.opened - self.ended)

        def session_ended(self, session: Session) -> None:
            self.ended += 1

    alive = Alive()
    assert validate_dataset(smoke_dataset, checks=lambda *a: [*default_checks(*a), alive]).ok
    assert alive.ended == alive.opened > 100
    assert alive.most < alive.opened / 4


@pytest.mark.slow
def test_memory_does_not_grow_with_the_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same 60 guests over 2 and 8 days: 4 times the events, the same memory (the old
    validate held some 380 bytes an event). A pass holds the sessions of one sweep, the keys
    of one buffer and one read chunk; those bounds are made small so a small dataset shows it."""
    import tracemalloc

    from conftest import make_dataset

    from generator.dataset import invariants, reader, spill

    monkeypatch.setattr(invariants, "_SWEEP", 64)
    monkeypatch.setattr(spill, "_BUFFER", 256)
    monkeypatch.setattr(reader, "READ_CHUNK", 1 << 16)
    peaks = []
    for days in (2, 8):
        d = make_dataset(tmp_path / f"d{days}", "smoke", days=days)
        validate_dataset(d)  # once untraced: what the first pass builds for good (the schema)
        tracemalloc.start()
        report = validate_dataset(d)
        peaks.append((tracemalloc.get_traced_memory()[1], report.events))
        tracemalloc.stop()
        assert report.ok, dict(report.problems)
    (small, n_small), (big, n_big) = peaks
    assert n_big > 3 * n_small
    assert (big - small) / (n_big - n_small) < 30  # bytes an extra event


def test_a_check_plugs_in(smoke_dataset: Path) -> None:
    """How another invariant joins validate: a Check with per-session notes, handed in."""
    from generator.dataset.invariants import Check, Seen, Session, default_checks

    class PagesPerSession(Check):
        def __init__(self) -> None:
            self.ended: list[int] = []

        def event(self, seen: Seen) -> None:
            notes = seen.session.notes
            notes["views"] = notes.get("views", 0) + (seen.type == "VIEW")

        def session_ended(self, session: Session) -> None:
            self.ended.append(session.notes.get("views", 0))

        def finish(self, report: Any) -> None:
            report.add("pages", f"{len(self.ended)} sessions")

    mine = PagesPerSession()
    report = validate_dataset(smoke_dataset, checks=lambda *args: [*default_checks(*args), mine])
    assert set(report.problems) == {"pages"}
    views = sum(1 for _, e in open_dataset(smoke_dataset).events() if e["type"] == "VIEW")
    assert sum(mine.ended) == views  # every session ended once, with its own notes
