"""A Locust process's counters: requests, status codes, events sent and acknowledged, and an HDR
histogram of latency in microseconds; written to a file at exit and merged across processes."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from hdrh.histogram import HdrHistogram

__all__ = ["Counters", "merge_counters", "read_counters"]

# 1 us to 1 hour at 3 significant digits: exact enough for a sub-millisecond p99.
_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_DIGITS = 3
_MAX_ERRORS = 20


def _histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)


@dataclass(slots=True)
class Counters:
    """Counters one process keeps; every field adds up across processes."""

    requests: int = 0
    failures: int = 0
    status_codes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    events_sent: int = 0  # events in requests that were started
    events_acknowledged: int = 0  # events the target answered 2xx for (ingest: its `accepted`)
    events_rejected: int = 0  # events an ingest answer listed as rejected
    events_cut: int = 0  # events of requests the end of the run interrupted (outcome unknown)
    flows_not_run: int = 0  # callFlows answered without running (no TRACKING to expect)
    missed_schedules: int = 0  # open model: arrivals that could not be started on time
    journeys: int = 0
    first_ms: float = 0.0  # wall clock of the first and last request (epoch ms)
    last_ms: float = 0.0
    latency_us: HdrHistogram = field(default_factory=_histogram)

    def record(
        self, *, status: int, response_time_ms: float, start_s: float, error: str | None
    ) -> None:
        """One finished request (Locust's `request` event)."""
        self.requests += 1
        self.status_codes[str(status)] += 1
        if error is not None:
            self.failures += 1
            if len(self.errors) < _MAX_ERRORS or error in self.errors:
                self.errors[error] += 1
        self.latency_us.record_value(
            max(_LOWEST_US, min(_HIGHEST_US, round(response_time_ms * 1000)))
        )
        start_ms = start_s * 1000
        if not self.first_ms or start_ms < self.first_ms:
            self.first_ms = start_ms
        self.last_ms = max(self.last_ms, start_ms + response_time_ms)

    def add(self, other: Counters) -> None:
        self.requests += other.requests
        self.failures += other.failures
        self.status_codes.update(other.status_codes)
        self.errors.update(other.errors)
        self.events_sent += other.events_sent
        self.events_acknowledged += other.events_acknowledged
        self.events_rejected += other.events_rejected
        self.events_cut += other.events_cut
        self.flows_not_run += other.flows_not_run
        self.missed_schedules += other.missed_schedules
        self.journeys += other.journeys
        firsts = [t for t in (self.first_ms, other.first_ms) if t]
        self.first_ms = min(firsts) if firsts else 0.0
        self.last_ms = max(self.last_ms, other.last_ms)
        self.latency_us.add(other.latency_us)

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            name: getattr(self, name)
            for name in (
                "requests",
                "failures",
                "events_sent",
                "events_acknowledged",
                "events_rejected",
                "events_cut",
                "flows_not_run",
                "missed_schedules",
                "journeys",
                "first_ms",
                "last_ms",
            )
        }
        data["status_codes"] = dict(self.status_codes)
        data["errors"] = dict(self.errors)
        data["latency_us"] = self.latency_us.encode().decode("ascii")
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> Counters:
        data = orjson.loads(raw)
        counters = cls(
            status_codes=Counter(data.pop("status_codes")),
            errors=Counter(data.pop("errors")),
        )
        encoded = data.pop("latency_us")
        for name, value in data.items():
            setattr(counters, name, value)
        if counters.requests:
            counters.latency_us = HdrHistogram.decode(encoded.encode("ascii"))
        return counters

    def write(self, run_dir: Path, role: str) -> Path:
        """Leave this counters in `run_dir` (atomically: a reader never sees half a file)."""
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
