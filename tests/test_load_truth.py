"""Load runs that tell the truth: the open model, latency from the intended send time, the
default failure threshold, named connection failures, a `cdpsim serve` at --host reconciled."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from generator.errors import CdpsimError
from generator.load.counters import Counters, connection_failure
from generator.load.loadtest import LoadTest
from generator.server.process import EmbeddedServer

SMOKE = Path(__file__).resolve().parents[1] / "profiles" / "smoke.yaml"
QUIET = Console(quiet=True)


def test_a_slowed_target_makes_late_starts_and_latency_from_due_shows_it() -> None:
    # A `cdpsim serve` given as --host (not started by the run), slowed by --latency-ms; few
    # guests may be in flight, so arrivals queue: late starts, and the intended-time latency
    # counts the wait that the plain latency (from the actual send) leaves out.
    with EmbeddedServer(profile_path=SMOKE, extra_args=("--latency-ms", "150")) as server:
        summary = LoadTest(
            profile=SMOKE,
            host=server.url,
            arrivals=10,
            max_guests=2,
            run_time=2,
            think_time_scale=0.01,
        ).run(QUIET)
    assert summary["target_kind"] == "cdpsim serve"
    rec = summary["reconciliation"]  # asked of its /_cdpsim/stats, before and after
    assert rec is not None and rec["lost"] == 0 and rec["duplicated"] == 0
    assert rec["acknowledged"] <= rec["stored"] <= rec["acknowledged"] + rec["cut_at_stop"]
    assert summary["guests_due"] > summary["journeys"] > 0
    assert summary["late_starts"] > 0 and summary["peak_guests"] <= 2
    assert summary["late_ratio"] == round(summary["late_starts"] / summary["guests_due"], 6)
    plain, due = summary["latency_ms"], summary["latency_intended_ms"]
    assert due["p95"] > plain["p95"] and due["max"] > plain["max"]
    assert summary["verdict"] == "slo_breach" and summary["exit_code"] == 1
    assert any("--max-late-ratio" in b for b in summary["slo"]["breaches"])


@pytest.mark.slow
def test_the_open_model_starts_guests_on_schedule(tmp_path: Path) -> None:
    summary = LoadTest(
        profile=SMOKE, arrivals=8, run_time=3, think_time_scale=0.01, report=tmp_path
    ).run(QUIET)
    # 8 a second for 3 seconds, each started when due (whatever earlier guests are doing).
    assert 20 <= summary["guests_due"] <= 25
    assert summary["journeys"] == summary["guests_due"] - 0  # every due guest started
    assert summary["late_ratio"] <= 0.2
    rec = summary["reconciliation"]
    assert rec["lost"] == 0 and rec["duplicated"] == 0
    series = orjson.loads((tmp_path / "latency_series.json").read_bytes())
    assert sum(row["requests"] for row in series) == summary["requests"]
    assert all(row["intended_p50_ms"] >= row["p50_ms"] for row in series)
    assert (tmp_path / "latency_series.csv").read_text().startswith("t,elapsed_s,requests")
    page = (tmp_path / "locust.html").read_text()
    assert "cdpsim verdict: held" in page and "reconciliation" in page


@pytest.mark.slow
def test_the_default_failure_threshold_fails_a_target_that_refuses() -> None:
    summary = LoadTest(
        profile=SMOKE,
        scenario="ingest",
        run_time=2,
        users=1,
        server_args=("--fail-rate", "0.3"),
    ).run(QUIET)
    assert summary["fail_ratio"] > 0.01 and summary["slo"]["max_fail_ratio"] == 0.01
    assert summary["verdict"] == "slo_breach" and summary["exit_code"] == 1


def test_connection_failures_are_named_not_status_zero() -> None:
    counters = Counters()
    for error in (ConnectionRefusedError(), ConnectionResetError(), TimeoutError(), OSError()):
        counters.record(
            status=0,
            response_time_ms=1.0,
            start_s=1.0,
            error="x",
            no_answer=connection_failure(error),
        )
    assert "0" not in counters.status_codes
    assert dict(counters.connection_failures) == {
        "connection refused": 1,
        "connection reset": 1,
        "timeout": 1,
        "connection error": 1,
    }


def test_a_taken_web_port_is_said_plainly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CdpsimError, match=f"--web-port {port}: the port is taken") as caught:
            LoadTest(profile=SMOKE, web=True, web_port=port).run(QUIET)
    assert caught.value.code == 2
