"""The replay report: the same facts as JSON for machines and as a short table for people."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from generator.redaction import mask_key
from generator.replay.run import ReplayResult

__all__ = ["build_report", "render_report"]


def build_report(result: ReplayResult) -> dict[str, Any]:
    ckpt, tally, plan = result.checkpoint, result.checkpoint.tally, result.plan
    return {
        "status": result.status,
        "alreadyComplete": result.already_complete,
        "error": result.error,
        "dataset": str(plan.dataset.directory),
        "clientKey": mask_key(plan.client_key),
        "target": result.target.url,
        "state": str(result.state),
        "events": ckpt.total,
        "finished": ckpt.finished,
        "remaining": ckpt.total - ckpt.finished,
        "sent": tally.sent,
        "acknowledged": tally.acknowledged,
        "retried": tally.retried,
        "failedPermanently": tally.failed,
        "failedByReason": tally.failed_by_reason,
        "failureSamples": tally.failure_samples,
        "possibleDuplicatesIfKeysIgnored": tally.possible_duplicates,
        "flowRunsNotRecorded": tally.flow_runs_not_recorded,
        "sessionsClosed": tally.sessions_closed,
        "sessionClosesFailed": tally.session_closes_failed,
        "acknowledgedByType": dict(sorted(tally.acknowledged_by_type.items())),
        "datasetCounts": dict(sorted(plan.counts.items())),
        "browsersCreated": len(ckpt.browsers),
        "runs": tally.runs,
        "thisRun": {
            "requests": result.requests,
            "elapsedSeconds": round(result.elapsed_s, 3),
            "requestsPerSecond": round(result.requests / result.elapsed_s, 1)
            if result.elapsed_s > 0
            else 0.0,
        },
    }


def render_report(report: dict[str, Any], console: Console) -> None:
    failed = report["failedPermanently"]
    title = {
        "complete": "replay complete: every event acknowledged",
        "failed": f"replay finished, but {failed:,} event(s) failed for good (kept in the "
        "checkpoint: --resume --retry-failed sends them again)",
        "interrupted": "replay interrupted: checkpoint saved, continue with --resume",
        "stopped": "replay stopped: checkpoint saved, continue with --resume",
    }[report["status"]]
    if report["alreadyComplete"]:
        title = "replay already complete: nothing to send"
        if failed:
            title = (
                f"nothing left to send, but {failed:,} event(s) failed for good: "
                "--resume --retry-failed sends them again"
            )
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    run = report["thisRun"]
    rows = [
        ("events finished", f"{report['finished']:,} / {report['events']:,}"),
        ("requests sent", f"{report['sent']:,}"),
        ("acknowledged", f"{report['acknowledged']:,}"),
        ("retried", f"{report['retried']:,}"),
        ("failed permanently", f"{report['failedPermanently']:,}"),
        ("possible duplicates if keys ignored", f"{report['possibleDuplicatesIfKeysIgnored']:,}"),
        ("flow runs the target did not record", f"{report['flowRunsNotRecorded']:,}"),
        ("sessions closed at the target (FORCE_CLOSE)", f"{report['sessionsClosed']:,}"),
        ("browsers created", f"{report['browsersCreated']:,}"),
        ("this run", f"{run['requests']:,} requests, {run['requestsPerSecond']:,} req/s"),
        ("client key", report["clientKey"]),
        ("checkpoint", report["state"]),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for reason, n in sorted(report["failedByReason"].items(), key=lambda kv: -kv[1]):
        console.print(f"  failed {n:,} x {reason}", markup=False, highlight=False)
