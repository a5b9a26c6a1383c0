"""`cdpsim load` end to end: short real Locust runs against the embedded server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from generator.cli import main
from generator.endpoint import free_port
from generator.load.loadtest import LoadTest

SMOKE = Path(__file__).resolve().parents[1] / "profiles" / "smoke.yaml"
MULTI = SMOKE.with_name("multi-region.yaml")
QUIET = Console(quiet=True)


def _exact(summary: dict) -> None:
    rec = summary["reconciliation"]
    assert rec["lost"] == 0 and rec["duplicated"] == 0
    assert rec["acknowledged"] == summary["events_acknowledged"] > 0
    # What the end of the run cut off mid-request may or may not have arrived; nothing else.
    assert rec["acknowledged"] <= rec["stored"] <= rec["acknowledged"] + rec["cut_at_stop"]


def test_journeys_one_process_report_and_exact_reconciliation(
    journeys_report: tuple[int, Path],
) -> None:
    code, report = journeys_report  # multi-region, 6 users, 4 s (conftest)
    assert code == 0
    summary = orjson.loads((report / "summary.json").read_bytes())
    _exact(summary)
    assert summary["shape"] == "diurnal"  # the profile's shape
    # Browsers carry the model's guest, so every flow the model ran runs at the server too
    # (multi-region shows one flow to 10% of guests: a server's own draw would differ).
    assert summary["flows_not_run"] == 0
    assert summary["exit_code"] == 0 and summary["verdict"] == "held"
    for name in ("locust.html", "locust_stats.csv", "locust_failures.csv"):
        assert (report / name).is_file()
    assert summary["scenario"] == "journeys" and summary["processes"] == 1
    assert summary["failures"] == 0 and summary["journeys"] >= 6
    # Browser creates are requests but not events; every event answered was acknowledged.
    rec = summary["reconciliation"]
    assert summary["events_sent"] == summary["events_acknowledged"] + rec["cut_at_stop"]
    assert summary["requests"] > summary["events_acknowledged"]
    assert summary["events_per_s"] > 0 and summary["rps"] > 0
    assert set(summary["status_codes"]) <= {"200", "201"}
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["p999"] <= lat["max"]


# Slow: its claims are held fast by the one-process run above (diurnal shape, flows all run,
# exact reconciliation, held) and the two-process ingest run below (two counter sets merged).
@pytest.mark.slow
def test_journeys_two_worker_processes_merge_their_tallies() -> None:
    # Four points of sale, a flow shown to 10% of guests, and the diurnal shape.
    test = LoadTest(
        profile=MULTI,
        run_time=3,
        users=6,
        processes=2,
        think_time_scale=0.0,
        max_fail_ratio=0.0,
        max_p95_ms=10_000,
    )
    summary = test.run(QUIET)
    assert summary["counter_sets"] == 2  # one per worker: both sent, both were merged
    assert summary["shape"] == "diurnal"
    # Browsers carry the model's guest, so every flow the model ran runs at the server too.
    assert summary["flows_not_run"] == 0
    _exact(summary)
    assert summary["exit_code"] == 0 and summary["verdict"] == "held"


def test_ingest_batches_at_a_fixed_rate_on_two_processes() -> None:
    test = LoadTest(
        profile=SMOKE,
        scenario="ingest",
        run_time=3,
        users=4,
        processes=2,
        batch_size=25,
        rate=2000,
    )
    summary = test.run(QUIET)
    assert summary["counter_sets"] == 2  # one per worker: both sent, both were merged
    _exact(summary)
    assert summary["events_sent"] % 25 == 0
    assert summary["requests"] * 25 >= summary["events_acknowledged"]
    # An open model at 2000 events/s: near that over the traffic's span, never far beyond it.
    assert 1500 < summary["events_per_s"] < 2000 * 1.2


def test_injected_failures_breach_the_slo_and_nothing_is_lost() -> None:
    test = LoadTest(
        profile=SMOKE,
        scenario="ingest",
        run_time=3,
        users=3,
        # A throttle far under what 3 users send even on a busy machine, so 429s always come.
        server_args=("--fail-rate", "0.2", "--throttle-rps", "30"),
    )
    summary = test.run(QUIET)
    _exact(summary)  # failed requests were not stored, acknowledged ones were
    assert summary["unavailable_503"] > 0 and summary["throttled_429"] > 0
    assert summary["failures"] == summary["unavailable_503"] + summary["throttled_429"]
    assert summary["verdict"] == "slo_breach" and summary["exit_code"] == 1
    assert any("--max-fail-ratio" in b for b in summary["slo"]["breaches"])


def test_p95_slo_breach_gives_exit_code_1(tmp_path: Path) -> None:
    args = ["load", str(SMOKE), "--scenario", "ingest", "--run-time", "2s", "--users", "2"]
    code = main([*args, "--max-p95-ms", "0.001", "--report", str(tmp_path)])
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert code == 1 and summary["verdict"] == "slo_breach"
    assert summary["latency_ms"]["p95"] > 0.001
    _exact(summary)


def test_remote_host_is_refused_without_allow_remote(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["load", str(SMOKE), "--host", "http://192.0.2.10:8080", "--run-time", "2s"])
    assert code == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_a_target_that_refuses_gives_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code = main(["load", str(SMOKE), "--host", f"http://127.0.0.1:{port}", "--run-time", "2s"])
    assert code == 4
    assert "refused the connection" in capsys.readouterr().err


class _Garbage(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"<garbage>")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def garbage_target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_target_answering_garbage_gives_a_report_not_a_crash(garbage_target: str) -> None:
    summary = LoadTest(profile=SMOKE, host=garbage_target, run_time=2, users=2).run(QUIET)
    assert summary["requests"] > 0 and summary["failures"] == summary["requests"]
    assert summary["events_sent"] == 0  # no browser id, so no event was ever sent
    assert any("garbage answer to browser create" in e for e in summary["errors"])
    assert summary["reconciliation"] is None and "foreign" in summary["reconciliation_omitted"]
    assert summary["verdict"] == "slo_breach" and summary["exit_code"] == 1
