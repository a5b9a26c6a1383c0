"""A load run's figures, read from what `cdpsim load --report DIR` wrote: summary.json and
Locust's CSVs (stats, stats history, failures)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import orjson

from generator.errors import CdpsimError

__all__ = ["compute_load_figures", "is_load_report"]

_PERCENTILES = (("50%", "p50"), ("95%", "p95"), ("99%", "p99"), ("99.9%", "p999"), ("100%", "max"))


def is_load_report(directory: Path) -> bool:
    return (directory / "summary.json").is_file()


def _number(text: str | None) -> float | None:
    if text is None or text in ("", "N/A"):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _count(text: str | None) -> int | None:
    value = _number(text)
    return None if value is None else int(value)


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise CdpsimError(f"{path}: not a readable Locust CSV ({exc})", 1) from None


def _history(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Locust's per-second history, aggregated rows only: rates, users, latency percentiles
    (Locust's own, over its recent window, in ms)."""
    agg = [r for r in rows if r.get("Name") == "Aggregated"]
    t0 = _number(agg[0].get("Timestamp")) if agg else None
    out: dict[str, Any] = {
        "t": [],
        "users": [],
        "rps": [],
        "failuresPerS": [],
        "totalRequests": [],
        "totalFailures": [],
    }
    out.update({key: [] for _, key in _PERCENTILES})
    for r in agg:
        ts = _number(r.get("Timestamp"))
        out["t"].append(None if ts is None or t0 is None else ts - t0)
        out["users"].append(_number(r.get("User Count")))
        out["rps"].append(_number(r.get("Requests/s")))
        out["failuresPerS"].append(_number(r.get("Failures/s")))
        out["totalRequests"].append(_number(r.get("Total Request Count")))
        out["totalFailures"].append(_number(r.get("Total Failure Count")))
        for column, key in _PERCENTILES:
            out[key].append(_number(r.get(column)))
    return out


def _endpoints(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        out.append(
            {
                "method": r.get("Type", ""),
                "name": r.get("Name", ""),
                "requests": _count(r.get("Request Count")),
                "failures": _count(r.get("Failure Count")),
                "rps": _number(r.get("Requests/s")),
                **{key: _number(r.get(column)) for column, key in _PERCENTILES},
            }
        )
    return out


def compute_load_figures(directory: str | Path) -> dict[str, Any]:
    """Every figure of the load report as plain JSON-ready data."""
    d = Path(directory)
    path = d / "summary.json"
    try:
        summary = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise CdpsimError(f"{path}: missing (not a `cdpsim load --report` directory)", 1) from None
    except orjson.JSONDecodeError as exc:
        raise CdpsimError(f"{path}: not valid JSON ({exc})", 1) from None
    if not isinstance(summary, dict) or "verdict" not in summary:
        raise CdpsimError(f"{path}: not a cdpsim load summary (no verdict)", 1)
    history = _history(_rows(d / "locust_stats_history.csv"))
    latency: dict[str, Any] = {"plain": summary.get("latency_ms")}
    # Intended-time latency (measured from when an arrival was due, so a slow answer that
    # delays the next one counts): shown where the summary carries it.
    for key in ("latency_intended_ms", "intended_latency_ms"):
        if isinstance(summary.get(key), dict):
            latency["intended"] = summary[key]
    timeline = summary.get("timeline")
    return {
        "kind": "load",
        "directory": str(d),
        "verdict": summary.get("verdict"),
        "exitCode": summary.get("exit_code"),
        "breaches": (summary.get("slo") or {}).get("breaches", []),
        "run": {
            k: summary.get(k)
            for k in (
                "scenario",
                "target",
                "target_kind",
                "profile",
                "seed",
                "shape",
                "users",
                "processes",
                "run_time_s",
                "duration_s",
                "rate",
                "batch_size",
            )
        },
        "totals": {
            k: summary.get(k)
            for k in (
                "requests",
                "failures",
                "fail_ratio",
                "rps",
                "events_sent",
                "events_acknowledged",
                "events_rejected",
                "events_per_s",
                "journeys",
                "missed_schedules",
            )
        },
        "statusCodes": summary.get("status_codes") or {},
        "statusCodesOverTime": timeline if isinstance(timeline, list) else None,
        "errors": summary.get("errors") or {},
        "latency": latency,
        "reconciliation": summary.get("reconciliation"),
        "reconciliationOmitted": summary.get("reconciliation_omitted"),
        "history": history,
        "endpoints": _endpoints(_rows(d / "locust_stats.csv")),
        "failures": _rows(d / "locust_failures.csv"),
        "locustReport": "locust.html" if (d / "locust.html").is_file() else None,
    }
