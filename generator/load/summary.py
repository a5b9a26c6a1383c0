"""A load run's summary: figures, reconciliation with the ledger, SLO verdict, exit code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from generator.load.counters import Counters

__all__ = ["EXIT", "Slo", "build_summary", "reconcile", "render_summary"]

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
    max_fail_ratio: float | None = None
    max_p95_ms: float | None = None


def reconcile(counters: Counters, stats: dict[str, Any]) -> dict[str, int]:
    """What the target acknowledged against what its ledger stored (`/_cdpsim/stats`).

    `lost`: acknowledged but not stored. `duplicated`: stored more often than sent, plus repeats
    the server recognised (same idempotency key or ref) and did not store again. Requests that
    failed or that the end of the run cut off (`cut_at_stop`) may or may not have been stored.
    """
    stored = int(stats.get("total", sum(stats.get("stored", {}).values())))
    acknowledged = counters.events_acknowledged
    return {
        "sent": counters.events_sent,
        "acknowledged": acknowledged,
        "cut_at_stop": counters.events_cut,
        "stored": stored,
        "lost": max(0, acknowledged - stored),
        "duplicated": int(stats.get("duplicates", 0)) + max(0, stored - counters.events_sent),
    }


def _latency_ms(counters: Counters) -> dict[str, float]:
    hist = counters.latency_us
    if not counters.requests:
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
    fail_ratio = counters.failures / counters.requests if counters.requests else 0.0
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
        "events_per_s": per_s(counters.events_sent),
        "journeys": counters.journeys,
        "flows_not_run": counters.flows_not_run,
        "missed_schedules": counters.missed_schedules,
        "status_codes": codes,
        "throttled_429": counters.status_codes.get("429", 0),
        "unavailable_503": counters.status_codes.get("503", 0),
        "no_answer": counters.status_codes.get("0", 0),
        "errors": dict(counters.errors.most_common(10)),
        "latency_ms": latency,
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
    summary["slo"] = {
        "max_fail_ratio": slo.max_fail_ratio,
        "max_p95_ms": slo.max_p95_ms,
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


def render_summary(summary: dict[str, Any], console: Console) -> None:
    """The one-screen summary printed at the end of every run."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    lat = summary["latency_ms"]
    codes = ", ".join(f"{k}: {v}" for k, v in summary["status_codes"].items()) or "none"
    rows = [
        ("scenario", f"{summary['scenario']} on {summary['target']} ({summary['target_kind']})"),
        (
            "users",
            f"{summary['users']} peak, {summary['processes']} process(es), "
            f"{summary['duration_s']:g} s of traffic",
        ),
        (
            "requests",
            f"{summary['requests']} ({summary['rps']:g}/s), failures {summary['failures']} "
            f"({summary['fail_ratio']:.2%})",
        ),
        (
            "events",
            f"{summary['events_sent']} sent ({summary['events_per_s']:g}/s), "
            f"{summary['events_acknowledged']} acknowledged",
        ),
        ("status codes", codes),
        (
            "latency ms",
            f"p50 {lat['p50']:g}  p95 {lat['p95']:g}  p99 {lat['p99']:g}  "
            f"p99.9 {lat['p999']:g}  max {lat['max']:g}",
        ),
    ]
    if summary.get("missed_schedules"):
        rows.append(("missed", f"{summary['missed_schedules']} scheduled arrivals not kept"))
    rec = summary.get("reconciliation")
    if rec is not None:
        rows.append(
            (
                "reconciliation",
                f"acknowledged {rec['acknowledged']}, stored {rec['stored']}, "
                f"lost {rec['lost']}, duplicated {rec['duplicated']}",
            )
        )
    else:
        rows.append(("reconciliation", f"omitted: {summary.get('reconciliation_omitted')}"))
    for error, count in list(summary["errors"].items())[:3]:
        rows.append(("error", f"{count} x {error}"))
    for breach in summary["slo"]["breaches"]:
        rows.append(("breach", breach))
    for key, value in rows:
        table.add_row(key, value)
    style = {"held": "bold green"}
    console.rule("cdpsim load")
    console.print(table, highlight=False)
    console.print(
        f"verdict: [{style.get(summary['verdict'], 'bold red')}]{summary['verdict']}[/] "
        f"(exit {summary['exit_code']})",
        highlight=False,
    )
