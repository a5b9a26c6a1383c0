"""A Locust process's counters: requests, status codes, events sent and acknowledged, HDR
histograms of latency in microseconds (from the actual send and from the intended send time),
per-interval histograms for the latency series; written to a file at exit and merged across
processes."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from hdrh.histogram import HdrHistogram

__all__ = [
    "Counters",
    "IntervalCounters",
    "connection_failure",
    "merge_counters",
    "read_counters",
    "series_interval",
]

# 1 us to 1 hour at 3 significant digits: exact enough for a sub-millisecond p99. The series'
# histograms keep 2 digits (a tenth of the memory), which is plenty for a chart.
_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_DIGITS = 3
_SERIES_DIGITS = 2
_MAX_ERRORS = 20
_SCALARS = (
    "requests",
    "failures",
    "events_sent",
    "events_acknowledged",
    "events_rejected",
    "events_cut",
    "flows_not_run",
    "missed_schedules",
    "scheduled",
    "journeys",
    "guests_due",
    "late_starts",
    "peak_guests",
    "fault_rejections",
    "fault_duplicates",
    "due_requests",
    "first_ms",
    "last_ms",
    "interval_s",
)


def series_interval(asked: float | None, run_time: float) -> float:
    """Seconds per row of the latency series: as asked, or 1 s, or longer past 600 rows."""
    if asked is not None:
        return asked
    return max(1.0, float(-(-int(run_time) // 600)))


def connection_failure(error: BaseException | None) -> str:
    """What became of a request that got no HTTP answer, named (not "status 0")."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "connection reset"
    if isinstance(error, TimeoutError) or "timeout" in type(error).__name__.lower():
        return "timeout"
    return "connection error"


def _histogram(digits: int = _DIGITS) -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, digits)


def _us(ms: float) -> int:
    return max(_LOWEST_US, min(_HIGHEST_US, round(ms * 1000)))


@dataclass(slots=True)
class IntervalCounters:
    """One interval of the series: requests started in it and their two latencies."""

    requests: int = 0
    failures: int = 0
    latency_us: HdrHistogram = field(default_factory=lambda: _histogram(_SERIES_DIGITS))
    intended_us: HdrHistogram = field(default_factory=lambda: _histogram(_SERIES_DIGITS))
    due_requests: int = 0

    def intended(self) -> HdrHistogram:
        return self.intended_us if self.due_requests else self.latency_us

    def add(self, other: IntervalCounters) -> None:
        self.requests += other.requests
        self.failures += other.failures
        self.due_requests += other.due_requests
        self.latency_us.add(other.latency_us)
        self.intended_us.add(other.intended_us)

    def to_list(self) -> list[Any]:
        return [
            self.requests,
            self.failures,
            self.latency_us.encode().decode("ascii"),
            self.intended_us.encode().decode("ascii") if self.due_requests else "",
            self.due_requests,
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> IntervalCounters:
        slot = cls(int(data[0]), int(data[1]), due_requests=int(data[4]))
        if slot.requests:
            slot.latency_us = HdrHistogram.decode(data[2].encode("ascii"))
        if slot.due_requests:
            slot.intended_us = HdrHistogram.decode(data[3].encode("ascii"))
        return slot


@dataclass(slots=True)
class Counters:
    """Counters one process keeps; every field adds up across processes."""

    requests: int = 0
    failures: int = 0
    status_codes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    # Requests that got no answer, by why: refused, reset, timeout, other (no HTTP status).
    connection_failures: Counter[str] = field(default_factory=Counter)
    events_sent: int = 0  # clean events in requests that were started
    events_acknowledged: int = 0  # clean events answered 2xx (ingest: its `accepted`)
    events_rejected: int = 0  # clean events an ingest answer listed as rejected
    events_cut: int = 0  # events of requests the end of the run interrupted (outcome unknown)
    flows_not_run: int = 0  # callFlows answered without running (no TRACKING to expect)
    missed_schedules: int = 0  # ingest --rate: arrivals that could not be made on time
    scheduled: int = 0  # ingest --rate: arrivals due over the run
    journeys: int = 0  # guests started
    guests_due: int = 0  # open model: guests whose arrival came due
    late_starts: int = 0  # open model: guests that could not be started on time
    peak_guests: int = 0  # open model: most guests in flight at once (summed over processes)
    faults_sent: Counter[str] = field(default_factory=Counter)  # labelled faults, by kind
    fault_rejections: int = 0  # labelled malformed lines the target rejected (as it should)
    fault_duplicates: int = 0  # labelled duplicates the target said it already had
    first_ms: float = 0.0  # wall clock of the first and last request (epoch ms)
    last_ms: float = 0.0
    latency_us: HdrHistogram = field(default_factory=_histogram)
    # From when each request was due (its schedule), not when it went out: what a client
    # that must keep a schedule sees (coordinated omission corrected).
    intended_us: HdrHistogram = field(default_factory=_histogram)
    interval_s: float = 1.0
    series: dict[int, IntervalCounters] = field(default_factory=dict)
    # Requests that had a due time. A run's requests all have one (open model, --rate) or none
    # (closed model: each is due when sent), so the intended histograms are kept only for the
    # former, and `intended()` stands in the plain ones for the latter (half the records).
    due_requests: int = 0

    def intended(self) -> HdrHistogram:
        return self.intended_us if self.due_requests else self.latency_us

    def record(
        self,
        *,
        status: int,
        response_time_ms: float,
        start_s: float,
        error: str | None,
        intended_s: float | None = None,
        no_answer: str | None = None,
    ) -> None:
        """One finished request (Locust's `request` event); `intended_s` is when it was due."""
        self.requests += 1
        self.status_codes[no_answer or str(status)] += 1
        if no_answer:
            self.connection_failures[no_answer] += 1
        if error is not None:
            self.failures += 1
            if len(self.errors) < _MAX_ERRORS or error in self.errors:
                self.errors[error] += 1
        latency = _us(response_time_ms)
        self.latency_us.record_value(latency)
        intended = 0
        if intended_s is not None:
            self.due_requests += 1
            intended = _us(response_time_ms + max(0.0, (start_s - intended_s) * 1000))
            self.intended_us.record_value(intended)
        slot_key = int(start_s // self.interval_s)
        slot = self.series.get(slot_key)
        if slot is None:
            slot = self.series[slot_key] = IntervalCounters()
        slot.requests += 1
        if error is not None:
            slot.failures += 1
        slot.latency_us.record_value(latency)
        if intended:
            slot.due_requests += 1
            slot.intended_us.record_value(intended)
        start_ms = start_s * 1000
        if not self.first_ms or start_ms < self.first_ms:
            self.first_ms = start_ms
        self.last_ms = max(self.last_ms, start_ms + response_time_ms)

    def add(self, other: Counters) -> None:
        for name in _SCALARS:
            if name not in ("first_ms", "last_ms", "interval_s"):
                setattr(self, name, getattr(self, name) + getattr(other, name))
        self.status_codes.update(other.status_codes)
        self.errors.update(other.errors)
        self.connection_failures.update(other.connection_failures)
        self.faults_sent.update(other.faults_sent)
        firsts = [t for t in (self.first_ms, other.first_ms) if t]
        self.first_ms = min(firsts) if firsts else 0.0
        self.last_ms = max(self.last_ms, other.last_ms)
        self.interval_s = other.interval_s
        self.latency_us.add(other.latency_us)
        self.intended_us.add(other.intended_us)
        for key, slot in other.series.items():
            mine = self.series.get(key)
            if mine is None:
                self.series[key] = mine = IntervalCounters()
            mine.add(slot)

    def to_json(self) -> bytes:
        data: dict[str, Any] = {name: getattr(self, name) for name in _SCALARS}
        for name in ("status_codes", "errors", "connection_failures", "faults_sent"):
            data[name] = dict(getattr(self, name))
        data["latency_us"] = self.latency_us.encode().decode("ascii")
        data["intended_us"] = self.intended_us.encode().decode("ascii") if self.due_requests else ""
        data["series"] = {str(k): v.to_list() for k, v in self.series.items()}
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> Counters:
        data = orjson.loads(raw)
        counters = cls()
        for name in ("status_codes", "errors", "connection_failures", "faults_sent"):
            setattr(counters, name, Counter(data.pop(name, {})))
        latency = data.pop("latency_us")
        intended = data.pop("intended_us", None)
        series = data.pop("series", {})
        for name, value in data.items():
            if name in _SCALARS:
                setattr(counters, name, value)
        if counters.requests:
            counters.latency_us = HdrHistogram.decode(latency.encode("ascii"))
        if counters.due_requests and intended:
            counters.intended_us = HdrHistogram.decode(intended.encode("ascii"))
        counters.series = {int(k): IntervalCounters.from_list(v) for k, v in series.items()}
        return counters

    def write(self, run_dir: Path, role: str) -> Path:
        """Leave these counters in `run_dir` (atomically: a reader never sees half a file)."""
        path = run_dir / f"counters-{role}-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.to_json())
        tmp.replace(path)
        return path


def read_counters(run_dir: Path, role: str = "*") -> list[Counters]:
    return [
        Counters.from_json(p.read_bytes()) for p in sorted(run_dir.glob(f"counters-{role}-*.json"))
    ]


def merge_counters(counter_sets: list[Counters]) -> Counters:
    total = Counters()
    for counters in counter_sets:
        total.add(counters)
    return total
