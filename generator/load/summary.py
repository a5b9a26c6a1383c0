"""A load run's summary: figures, reconciliation with the ledger, SLO verdict, exit code."""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from generator.load.counters import Counters

__all__ = [
    "EXIT",
    "SERIES_FILES",
    "Slo",
    "build_summary",
    "latency_series",
    "reconcile",
    "render_summary",
    "verdict_html",
    "write_series",
]

# Exit codes: what held, what broke.
EXIT = {
    "interrupted": 130,
    "held": 0,
    "slo_breach": 1,
    "events_lost": 3,
    "unreconciled": 3,
    "unreachable": 4,
}


@dataclass(frozen=True, slots=True)
class Slo:
    """The verdict's thresholds; `None` is no limit."""

    max_fail_ratio: float | None = 0.01
    max_p95_ms: float | None = None
    max_late_ratio: float | None = None  # open model: guests that could not start on time


def reconcile(
    counters: Counters, stats: dict[str, Any], before: dict[str, Any] | None = None
) -> dict[str, int]:
    """What the target acknowledged against what its ledger stored (`/_cdpsim/stats`), from
    `before` (a long-running `cdpsim serve`'s stats at the start) to `stats`.

    `lost`: acknowledged but not stored. `duplicated`: stored more often than sent, plus repeats
    the server recognised (same idempotency key or ref) and did not store again, less the
    labelled duplicates it was sent on purpose (`expected_duplicates`). Requests that failed or
    that the end of the run cut off (`cut_at_stop`) may or may not have been stored.
    """
    base = before or {}

    def delta(*path: str) -> int:
        return _at(stats, path) - _at(base, path)

    stored = delta("total")
    acknowledged = counters.events_acknowledged
    expected_dups = delta("faults", "expectedDuplicates")
    expected_rejections = delta("faults", "expectedRejections")
    return {
        "sent": counters.events_sent,
        "acknowledged": acknowledged,
        "cut_at_stop": counters.events_cut,
        "stored": stored,
        "lost": max(0, acknowledged - stored),
        "duplicated": max(0, delta("duplicates") - expected_dups)
        + max(0, stored - counters.events_sent),
        "expected_duplicates": expected_dups,
        "expected_rejections": expected_rejections,
        "unexpected_rejections": max(0, delta("rejected", "ingest_line") - expected_rejections),
    }


def _at(stats: dict[str, Any], path: tuple[str, ...]) -> int:
    value: Any = stats
    for key in path:
        value = value.get(key, 0) if isinstance(value, dict) else 0
    if path == ("total",) and not value and isinstance(stats.get("stored"), dict):
        value = sum(stats["stored"].values())
    return int(value or 0)


def _percentiles_ms(hist: Any, count: int) -> dict[str, float]:
    if not count:
        return {k: 0.0 for k in ("p50", "p95", "p99", "p999", "max", "mean")}

    def at(p: float) -> float:
        return round(hist.get_value_at_percentile(p) / 1000, 3)

    return {
        "p50": at(50),
        "p95": at(95),
        "p99": at(99),
        "p999": at(99.9),
        "max": round(hist.get_max_value() / 1000, 3),
        "mean": round(hist.get_mean_value() / 1000, 3),
    }


def _latency_ms(counters: Counters) -> dict[str, float]:
    return _percentiles_ms(counters.latency_us, counters.requests)


def latency_series(counters: Counters) -> list[dict[str, Any]]:
    """Per interval of the run: requests, failures, and both latencies' percentiles (ms)."""
    rows = []
    keys = sorted(counters.series)
    first = keys[0] if keys else 0
    for key in keys:
        slot = counters.series[key]
        row: dict[str, Any] = {
            "t": round(key * counters.interval_s, 3),
            "elapsed_s": round((key - first) * counters.interval_s, 3),
            "requests": slot.requests,
            "failures": slot.failures,
        }
        for name, hist in (("", slot.latency_us), ("intended_", slot.intended())):
            for p, value in _percentiles_ms(hist, slot.requests).items():
                if p != "mean":
                    row[f"{name}{p}_ms"] = value
        rows.append(row)
    return rows


SERIES_FILES = ("latency_series.csv", "latency_series.json")


def write_series(rows: list[dict[str, Any]], directory: Path) -> None:
    """`latency_series.csv` and `.json` beside Locust's `locust_stats_history.csv`."""
    columns = list(rows[0]) if rows else ["t", "elapsed_s", "requests", "failures"]
    with open(directory / SERIES_FILES[0], "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (directory / SERIES_FILES[1]).write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


def build_summary(
    counters: Counters,
    *,
    run: dict[str, Any],
    reconciliation: dict[str, int] | None,
    omitted_reason: str | None,
    slo: Slo,
    must_reconcile: bool = False,
    interrupted: bool = False,
) -> dict[str, Any]:
    """The summary.json document; `exit_code` and `verdict` say what held."""
    duration = max(0.0, (counters.last_ms - counters.first_ms) / 1000)
    per_s = (lambda n: round(n / duration, 1)) if duration > 0 else (lambda n: 0.0)
    latency = _latency_ms(counters)
    intended = _percentiles_ms(counters.intended(), counters.requests)
    fail_ratio = counters.failures / counters.requests if counters.requests else 0.0
    late_ratio = counters.late_starts / counters.guests_due if counters.guests_due else 0.0
    codes = dict(sorted(counters.status_codes.items()))
    summary: dict[str, Any] = {
        **run,
        "duration_s": round(duration, 3),
        "requests": counters.requests,
        "failures": counters.failures,
        "fail_ratio": round(fail_ratio, 6),
        "rps": per_s(counters.requests),
        "events_sent": counters.events_sent,
        "events_acknowledged": counters.events_acknowledged,
        "events_rejected": counters.events_rejected,
        "events_cut": counters.events_cut,
        "events_per_s": per_s(counters.events_sent),
        "journeys": counters.journeys,
        "flows_not_run": counters.flows_not_run,
        "scheduled": counters.scheduled,
        "missed_schedules": counters.missed_schedules,
        "guests_due": counters.guests_due,
        "late_starts": counters.late_starts,
        "late_ratio": round(late_ratio, 6),
        "peak_guests": counters.peak_guests,
        "status_codes": codes,
        "throttled_429": counters.status_codes.get("429", 0),
        "unavailable_503": counters.status_codes.get("503", 0),
        "no_answer": sum(counters.connection_failures.values()),
        "connection_failures": dict(sorted(counters.connection_failures.items())),
        "errors": dict(counters.errors.most_common(10)),
        "latency_ms": latency,
        # From each request's intended send time (its schedule): coordinated omission shown.
        "latency_intended_ms": intended,
        "faults_sent": dict(sorted(counters.faults_sent.items())),
        "fault_rejections": counters.fault_rejections,
        "fault_duplicates": counters.fault_duplicates,
        "series_interval_s": counters.interval_s,
    }
    if reconciliation is not None:
        summary["reconciliation"] = reconciliation
    else:
        summary["reconciliation"] = None
        summary["reconciliation_omitted"] = omitted_reason
    breaches = []
    if counters.requests == 0:
        breaches.append("no request was answered")
    elif counters.failures == counters.requests:
        breaches.append("every request failed")
    if slo.max_fail_ratio is not None and fail_ratio > slo.max_fail_ratio:
        breaches.append(f"fail ratio {fail_ratio:.4f} > --max-fail-ratio {slo.max_fail_ratio:g}")
    if slo.max_p95_ms is not None and latency["p95"] > slo.max_p95_ms:
        breaches.append(f"p95 {latency['p95']:g} ms > --max-p95-ms {slo.max_p95_ms:g}")
    if slo.max_late_ratio is not None and late_ratio > slo.max_late_ratio:
        breaches.append(
            f"late starts {late_ratio:.4f} of guests > --max-late-ratio {slo.max_late_ratio:g}"
        )
    if reconciliation is not None and reconciliation.get("unexpected_rejections"):
        breaches.append(
            f"{reconciliation['unexpected_rejections']} clean events were rejected by the target"
        )
    summary["slo"] = {
        "max_fail_ratio": slo.max_fail_ratio,
        "max_p95_ms": slo.max_p95_ms,
        "max_late_ratio": slo.max_late_ratio,
        "breaches": breaches,
    }
    summary["interrupted"] = interrupted
    if interrupted:
        # Cut short, the figures are partial: no verdict on the SLOs, only what was seen.
        verdict = "interrupted"
    elif reconciliation and (reconciliation["lost"] or reconciliation["duplicated"]):
        verdict = "events_lost"
    elif must_reconcile and reconciliation is None:
        verdict = "unreconciled"  # our own server could not say what it stored
    elif breaches:
        verdict = "slo_breach"
    else:
        verdict = "held"
    summary["verdict"] = verdict
    summary["exit_code"] = EXIT[verdict]
    return summary


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary's lines as (label, text): on screen and at the top of locust.html."""
    codes = ", ".join(f"{k}: {v}" for k, v in summary["status_codes"].items()) or "none"
    if summary.get("arrivals") is not None:
        load = f"{summary['arrivals']:g} guests/s at the peak (open model)"
    else:
        load = f"{summary['users']} peak users"
    rows = [
        ("scenario", f"{summary['scenario']} on {summary['target']} ({summary['target_kind']})"),
        (
            "load",
            f"{load}, {summary['processes']} process(es), {summary['duration_s']:g} s of traffic",
        ),
        (
            "requests",
            f"{summary['requests']} ({summary['rps']:g}/s), failures {summary['failures']} "
            f"({summary['fail_ratio']:.2%})",
        ),
        (
            "events",
            f"{summary['events_sent']} sent ({summary['events_per_s']:g}/s), "
            f"{summary['events_acknowledged']} acknowledged, "
            f"{summary.get('events_cut', 0)} cut at stop (sent, never answered)",
        ),
        ("status codes", codes),
    ]
    if summary.get("connection_failures"):
        named = ", ".join(f"{k} {v}" for k, v in summary["connection_failures"].items())
        rows.append(("no answer", f"{summary['no_answer']} connection failures ({named})"))
    for key, label in (("latency_ms", "latency ms"), ("latency_intended_ms", "from due, ms")):
        lat = summary.get(key)
        if lat:
            rows.append(
                (
                    label,
                    f"p50 {lat['p50']:g}  p95 {lat['p95']:g}  p99 {lat['p99']:g}  "
                    f"p99.9 {lat['p999']:g}  max {lat['max']:g}",
                )
            )
    if summary.get("guests_due"):
        rows.append(
            (
                "guests",
                f"{summary['guests_due']} due, {summary['journeys']} started, "
                f"{summary['late_starts']} late ({summary['late_ratio']:.2%}), "
                f"{summary['peak_guests']} in flight at most",
            )
        )
    if summary.get("missed_schedules"):
        rows.append(
            (
                "missed",
                f"{summary['missed_schedules']} of {summary.get('scheduled', 0)} scheduled "
                "arrivals not kept",
            )
        )
    if summary.get("faults_sent"):
        sent = ", ".join(f"{k} {v}" for k, v in summary["faults_sent"].items())
        rows.append(("faults", f"sent {sent}"))
    rec = summary.get("reconciliation")
    if rec is not None:
        text = (
            f"acknowledged {rec['acknowledged']}, stored {rec['stored']}, "
            f"lost {rec['lost']}, duplicated {rec['duplicated']}"
        )
        if rec.get("expected_duplicates") or rec.get("expected_rejections"):
            text += (
                f"; expected (labelled) duplicates {rec['expected_duplicates']}, "
                f"rejections {rec['expected_rejections']}, unexpected rejections "
                f"{rec['unexpected_rejections']}"
            )
        rows.append(("reconciliation", text))
    else:
        rows.append(("reconciliation", f"omitted: {summary.get('reconciliation_omitted')}"))
    for error, count in list(summary["errors"].items())[:3]:
        rows.append(("error", f"{count} x {error}"))
    for breach in summary["slo"]["breaches"]:
        rows.append(("breach", breach))
    return rows


def verdict_html(summary: dict[str, Any]) -> str:
    """cdpsim's verdict and reconciliation as a block for the top of Locust's HTML report."""
    colour = "#1b7f3b" if summary["verdict"] == "held" else "#b3261e"
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td>{html.escape(v)}</td></tr>"
        for k, v in summary_rows(summary)
    )
    return (
        "<section id='cdpsim-verdict' style='font-family:sans-serif;margin:1em;padding:1em;"
        f"border:2px solid {colour}'><h2 style='color:{colour};margin-top:0'>cdpsim verdict: "
        f"{html.escape(summary['verdict'])} (exit {summary['exit_code']})</h2>"
        f"<table>{rows}</table></section>"
    )


def render_summary(summary: dict[str, Any], console: Console) -> None:
    """The one-screen summary printed at the end of every run."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in summary_rows(summary):
        table.add_row(key, value)
    style = {"held": "bold green"}
    console.rule("cdpsim load")
    console.print(table, highlight=False)
    console.print(
        f"verdict: [{style.get(summary['verdict'], 'bold red')}]{summary['verdict']}[/] "
        f"(exit {summary['exit_code']})",
        highlight=False,
    )
