"""Checking a dataset against every invariant, and its manifest against what the file holds.

Checked per event (envelope, TRACKING schema and section-1 invariants, order by (createdAt, ref),
unique refs), per session (one browser, point of sale and channel; no gap over the timeout; nothing
after FORCE_CLOSE; a browser's sessions never overlap; carts: CONFIRM only items ADDed, CHECKOUT
after CONFIRM, PAYMENT after CHECKOUT), per guest and flow (browsers belong to their guest; one
variant per guest and flow; CUSTOMER exactly when identified; emails on reserved domains; the
guest's point of sale that of its events; each guest's variant as its flow's assignment gives
it), and the manifest (counts by type, guests, the answer key and every figure of the flows'
analysis recomputed from the events: recount.py); the file itself (cut short at a line
boundary, CRLF line ends).

One pass, in memory that does not grow with the events: the checks of `invariants.py` keep
state per open session and per guest, and the refs that must be unique go to disk (`spill.py`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from generator.dataset.invariants import Check, GuestBook, SessionBook, default_checks
from generator.dataset.reader import Dataset, DatasetError, open_dataset
from generator.dataset.spill import Spill
from generator.events.checker import StoredEventChecker, tracking_schema
from generator.events.stored import parse_iso_ms
from generator.events.types import EventType

__all__ = ["Report", "tracking_schema", "validate_dataset"]

_EXAMPLES = 5
_PROGRESS_EVERY = 20_000  # lines between progress reports


@dataclass
class Report:
    """Problems by kind, with a few examples each (line numbers of events.jsonl)."""

    events: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    by_type: Counter[str] = field(default_factory=Counter)  # every event's type, good or not
    last_created: Any = None  # the last line's createdAt

    def add(self, kind: str, detail: str) -> None:
        self.problems[kind] += 1
        if len(self.examples[kind]) < _EXAMPLES:
            self.examples[kind].append(detail)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_dataset(
    directory: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
    checks: Callable[[dict[str, Any], GuestBook, Spill, Report], list[Check]] = default_checks,
) -> Report:
    """Check a dataset in one pass over its events, in memory that does not grow with them
    (state per open session and per guest; refs spilled to disk). `progress(phase, done,
    total)` as `generate` reports it. `checks` builds the invariants (`invariants.py`). A
    missing, unreadable or truncated file raises DatasetError."""
    ds = open_dataset(directory)
    manifest = ds.manifest()
    report = Report()
    guests = GuestBook.load(_guest_lines(ds, report), report)
    with Spill() as spill:
        invariants = checks(manifest, guests, spill, report)
        sessions = _check_events(ds, manifest, guests, invariants, spill, report, progress)
        _check_length(ds, manifest, report)
        sessions.finish(report)
        for check in invariants:
            check.finish(report)
    _check_manifest(manifest, report, len(guests))
    return report


def _guest_lines(ds: Dataset, report: Report) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in ds.raw_guests():
        guest = _parse(ds.guests_path, line, _line_end(raw, ds.guests_path, line, report))
        if not isinstance(guest, dict):
            raise DatasetError(f"{ds.guests_path}: line {line}: expected a JSON object")
        yield line, guest


def _line_end(raw: bytes, path: Path, line: int, report: Report) -> bytes:
    """A line without its CR, reported: a dataset's lines end with \\n alone."""
    if raw.endswith(b"\r"):
        report.add("line ends", f"{path.name} line {line}: ends with CRLF (\\r\\n), not \\n")
        return raw[:-1]
    return raw


def _parse(path: Path, line: int, raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{path}: line {line}: not valid JSON ({exc})") from None


def _check_events(
    ds: Dataset,
    manifest: dict[str, Any],
    guests: GuestBook,
    invariants: list[Check],
    spill: Spill,
    report: Report,
    progress: Callable[[str, int, int], None] | None,
) -> SessionBook:
    pos_table: dict[str, Any] = manifest.get("pointsOfSale", {})
    timeouts = {
        name: int(info["sessionTimeoutMinutes"]) * 60_000
        for name, info in pos_table.items()
        if isinstance(info, dict) and "sessionTimeoutMinutes" in info
    }
    checker = StoredEventChecker.for_dataset(manifest, guests.browser_owner)
    sessions = SessionBook(timeouts, invariants, spill, report)
    owner = guests.browser_guest
    total = manifest.get("events")
    total = total if isinstance(total, int) else 0
    path = ds.events_path
    for line, raw in ds.raw_events():
        event = _parse(path, line, _line_end(raw, path, line, report))
        report.events += 1
        if progress is not None and line % _PROGRESS_EVERY == 0:
            progress("validate", line, max(total, line))
        problems = checker.problems(event)
        for problem in problems:
            report.add(problem.kind, f"line {line}: {problem.message}")
        if isinstance(event, dict):
            report.last_created = event.get("createdAt")
            if isinstance(event.get("type"), str):
                report.by_type[event["type"]] += 1
        if problems or event["pointOfSale"] not in timeouts:
            # The invariants below read what the checker vouched for.
            continue
        created_ms = parse_iso_ms(event["createdAt"])
        seen = sessions.see(line, event, created_ms, owner[event["browserRef"]])
        for check in invariants:
            check.event(seen)
        sessions.apply(seen)
    if progress is not None:
        progress("validate", report.events, max(total, report.events))
    return sessions


def _check_length(ds: Dataset, manifest: dict[str, Any], report: Report) -> None:
    """A file cut at a line boundary reads as whole lines: the manifest knows how many there
    were, and the last one's time."""
    want, last = manifest.get("events"), manifest.get("lastEventAt")
    if isinstance(want, int) and report.events < want and report.last_created != last:
        raise DatasetError(
            f"{ds.events_path}: truncated: it holds {report.events:,} events and manifest.json "
            f"says {want:,}, the last at {last} (the file was cut short)"
        )


def _check_manifest(manifest: dict[str, Any], report: Report, guests: int) -> None:
    want = manifest.get("counts", {})
    counts = report.by_type
    for name in EventType.__members__:
        if int(want.get(name, 0)) != counts.get(name, 0):
            report.add(
                "manifest counts",
                f"{name}: manifest says {want.get(name, 0)}, file holds {counts.get(name, 0)}",
            )
    if manifest.get("events") != sum(counts.values()):
        report.add("manifest counts", "events total differs from the file")
    seen = manifest.get("guests", {}).get("seen")
    if seen is not None and seen != guests:
        report.add("manifest guests", f"manifest says {seen} guests, guests.jsonl has {guests}")
