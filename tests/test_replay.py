"""`cdpsim replay`: checkpoint, pacing and retry rules, bad input, replays into a real server."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from generator.endpoint import Endpoint, EndpointError, free_port, parse_endpoint
from generator.events.stored import envelope, iso_ms, tracking_event
from generator.replay.checkpoint import Checkpoint, CheckpointError
from generator.replay.pacing import RateLimit, Timeline
from generator.replay.plan import ReplayPlan, browser_key
from generator.replay.retry import RetryPolicy, parse_retry_after
from generator.replay.totals import ReplayTotals

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "profiles" / "smoke.yaml"
CLIENT_KEY = "SmokeTestKey0000000000000000000A"
POS = "smokeshop/ireland"
CDPSIM = [str(Path(sys.executable).with_name("cdpsim"))]
# Wide enough that rich does not wrap the messages the tests look for.
ENV = {**os.environ, "COLUMNS": "400"}
T0 = 1_740_960_000_000  # 2025-03-03T00:00:00Z


# --- a small handmade dataset in the smoke profile's tenant ------------------------------------


def make_dataset(directory: Path, guests: int = 6, seed: int = 1, gz: bool = False) -> Path:
    """A dataset like `cdpsim generate` writes: guests with one or two browsers, each browser a
    session of VIEW, TRACKING, maybe IDENTITY, ADD, CONFIRM, CHECKOUT, PAYMENT, FORCE_CLOSE."""
    rng = random.Random(seed)

    def ref() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    directory.mkdir(parents=True, exist_ok=True)
    events: list[dict[str, Any]] = []
    guest_lines = []
    for g in range(guests):
        guest_ref = ref()
        browsers = [ref() for _ in range(1 + g % 2)]
        guest_lines.append(
            {
                "guestRef": guest_ref,
                "type": "VISITOR",
                "browsers": [{"browserRef": b, "channel": "WEB"} for b in browsers],
                "pointOfSale": POS,
            }
        )
        for b in browsers:
            session = ref()
            t = T0 + rng.randrange(0, 3_600_000)
            common = {
                "client_key": CLIENT_KEY,
                "channel": "WEB",
                "point_of_sale": POS,
                "browser_ref": b,
                "session_ref": session,
            }

            def client(
                kind: str, data: dict[str, Any], at: int, common: dict[str, str] = common
            ) -> dict[str, Any]:
                base = {"language": "EN", "currency": "EUR", "page": "home", **data}
                return envelope(
                    ref=ref(),
                    created_at=iso_ms(at),
                    modified_at=iso_ms(at),
                    type=kind,
                    arbitrary_data=base,
                    **common,
                )

            events.append(client("VIEW", {}, t))
            t += rng.randrange(50, 5000)
            events.append(
                tracking_event(
                    ref=ref(),
                    created_at=iso_ms(t + 30),
                    modified_at=iso_ms(t + 40),
                    flow_execution_ref=ref(),
                    occurred_ms=t,
                    flow_ref=ref(),
                    flow_friendly_id="smoke_banner",
                    flow_variant_ref=ref(),
                    guest_ref=guest_ref,
                    execution_ms=20,
                    **common,
                )
            )
            t += rng.randrange(50, 5000)
            if g % 3 == 0:
                ident = {
                    "email": f"g{g}@example.com",
                    "identifiers": [{"provider": "email", "id": f"g{g}@example.com"}],
                }
                events.append(client("IDENTITY", ident, t))
                t += 100
            item = {"type": "apparel", "item_id": f"A{g}", "name": "Shirt", "quantity": 1}
            events.append(client("ADD", {"product": item}, t))
            t += rng.randrange(50, 5000)
            if g % 2 == 0:
                events.append(client("CONFIRM", {"product": [{"item_id": f"A{g}"}]}, t))
                events.append(
                    client("CHECKOUT", {"reference_id": ref(), "status": "PURCHASED"}, t + 10)
                )
                events.append(client("PAYMENT", {"pay_type": "Card"}, t + 20))
            events.append(client("FORCE_CLOSE", {}, t + 60_000))
    events.sort(key=lambda e: (e["createdAt"], e["ref"]))
    counts: dict[str, int] = {}
    for e in events:
        counts[e["type"]] = counts.get(e["type"], 0) + 1
    lines = b"".join(orjson.dumps(e) + b"\n" for e in events)
    if gz:
        (directory / "events.jsonl.gz").write_bytes(gzip.compress(lines))
    else:
        (directory / "events.jsonl").write_bytes(lines)
    (directory / "guests.jsonl").write_bytes(b"".join(orjson.dumps(g) + b"\n" for g in guest_lines))
    manifest = {
        "profile": {"name": "smoke", "sha256": hashlib.sha256(SMOKE.read_bytes()).hexdigest()},
        "seed": seed,
        "clientKey": CLIENT_KEY,
        "pointsOfSale": {
            POS: {
                "language": "EN",
                "currency": "EUR",
                "timezone": "Europe/Dublin",
                "sessionTimeoutMinutes": 20,
            }
        },
        "counts": counts,
    }
    (directory / "manifest.json").write_bytes(orjson.dumps(manifest))
    return directory


def dataset_counts(directory: Path) -> dict[str, int]:
    return {
        k: v
        for k, v in orjson.loads((directory / "manifest.json").read_bytes())["counts"].items()
        if v
    }


def stored_counts(stats: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in stats["stored"].items() if v}


def with_closes(counts: dict[str, int], report: dict[str, Any]) -> dict[str, int]:
    """A dataset's counts plus the FORCE_CLOSEs replay sent to end its sessions at the target."""
    closes = counts.get("FORCE_CLOSE", 0) + report["sessionsClosed"]
    return {**counts, "FORCE_CLOSE": closes} if closes else counts


def dataset_sessions(directory: Path) -> int:
    lines = (directory / "events.jsonl").read_bytes().splitlines()
    return len({orjson.loads(line)["sessionRef"] for line in lines})


def run_replay(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CDPSIM, "replay", *map(str, args), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=ENV,
    )


def report_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return orjson.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def server() -> Any:
    from generator.server.process import EmbeddedServer

    with EmbeddedServer(profile_path=SMOKE) as s:
        yield s


# --- checkpoint, pacing, retry, target: the rules, without a network ---------------------------


def test_checkpoint_watermark_advances_over_out_of_order_completions(tmp_path: Path) -> None:
    ckpt = Checkpoint("d", "http://127.0.0.1:1", total=6)
    for seq in (2, 3, 5):
        ckpt.mark_done(seq)
    assert (ckpt.watermark, ckpt.done, ckpt.finished) == (0, {2, 3, 5}, 3)
    ckpt.mark_done(1)
    assert (ckpt.watermark, ckpt.done) == (3, {5})
    assert ckpt.is_done(2) and ckpt.is_done(5) and not ckpt.is_done(4)
    ckpt.browsers["b"] = "server-b"
    ckpt.tally.fail(seq=9, ref="r", kind="VIEW", reason="404 unknown_browser")
    path = tmp_path / "state.json"
    ckpt.save(path)
    back = Checkpoint.load(path)
    assert back.to_bytes() == ckpt.to_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left
    ckpt.mark_done(4)
    ckpt.mark_done(6)
    assert ckpt.complete and ckpt.done == set()


def test_checkpoint_refuses_other_dataset_target_and_garbage(tmp_path: Path) -> None:
    ckpt = Checkpoint("dataset-a", "http://127.0.0.1:1", total=1)
    path = tmp_path / "s.json"
    ckpt.check_matches(path, "dataset-a", "http://127.0.0.1:1")
    with pytest.raises(CheckpointError, match="another dataset"):
        ckpt.check_matches(path, "dataset-b", "http://127.0.0.1:1")
    with pytest.raises(CheckpointError, match="browser ids are only valid there"):
        ckpt.check_matches(path, "dataset-a", "http://127.0.0.1:2")
    path.write_bytes(b'{"format": "cdpsim-replay-checkpoint/1", "dataset"')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Checkpoint.load(path)
    path.write_bytes(b'{"format": "cdpsim-replay-checkpoint/1"}')
    with pytest.raises(CheckpointError, match="incomplete"):
        Checkpoint.load(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Checkpoint.load(tmp_path / "absent.json")


def test_checkpoint_keeps_failed_lines_by_reason_and_reads_older_checkpoints(
    tmp_path: Path,
) -> None:
    ckpt = Checkpoint("d", "http://127.0.0.1:1", total=1000)
    for seq in (*range(1, 401), 500, 502):
        ckpt.fail(seq=seq, ref=f"r{seq}", kind="VIEW", reason="404 Not Found")
    ckpt.fail(seq=501, ref="r501", kind="ADD", reason="400 Bad Request: x")
    ckpt.sessions["b WEB"] = ("s", 1.5, "pos")
    path = tmp_path / "state.json"
    ckpt.save(path)
    saved = orjson.loads(path.read_bytes())
    # A target refusing everything fails whole stretches: kept as a few runs, not 400 numbers.
    assert saved["failed"]["404 Not Found"] == [[1, 400], [500, 500], [502, 502]]
    back = Checkpoint.load(path)
    assert back.failed == ckpt.failed and back.sessions == ckpt.sessions
    assert back.tally.failed == 403 and back.tally.failed_by_reason["404 Not Found"] == 402
    back.fail(seq=501, ref="r501", kind="ADD", reason="404 Not Found")  # failed again
    back.succeed(500)  # went through on a retry
    assert back.tally.failed == 402 and back.tally.failed_by_reason == {"404 Not Found": 402}
    assert 500 not in back.failed and back.failed[501] == "404 Not Found"
    for key in ("failed", "sessions", "generation"):  # a checkpoint from before these existed
        del saved[key]
    path.write_bytes(orjson.dumps(saved))
    old = Checkpoint.load(path)
    assert (old.failed, old.sessions, old.generation) == ({}, {}, 0)


def test_a_failed_answer_is_one_readable_line() -> None:
    from generator.endpoint import answer_reason

    page = b"<!DOCTYPE HTML>\n<html><head><title>Error response</title></head>" + b"x" * 5000
    reason = answer_reason(404, page, "text/html;charset=utf-8")
    assert reason == "404 Not Found: an HTML page (text/html), not a Stream API answer"
    error = b'{"status":"ERROR","error_msg":"no browser \\"b\\" on this tenant"}'
    assert answer_reason(404, error, "application/json") == (
        '404 Not Found: no browser "b" on this tenant'
    )
    long = orjson.dumps({"error_msg": "why " * 500})
    assert len(answer_reason(400, long)) <= 160 + 20 and "\n" not in answer_reason(400, long)
    assert answer_reason(502, b"") == "502 Bad Gateway"


def test_tally_keeps_counts_by_reason_and_a_bounded_sample() -> None:
    tally = ReplayTotals()
    for i in range(80):
        tally.fail(seq=i, ref=f"r{i}", kind="VIEW", reason="400 bad_type" if i % 2 else "404 x")
    assert tally.failed == 80
    assert tally.failed_by_reason == {"404 x": 40, "400 bad_type": 40}
    assert len(tally.failure_samples) == 50
    assert ReplayTotals.from_json(tally.to_json()) == tally


def test_backoff_grows_with_jitter_under_the_cap_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_retries=5, base_s=0.1, cap_s=1.0)
    rng = random.Random(3)
    for attempt in range(1, 12):
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        ceiling = min(1.0, 0.1 * 2 ** (attempt - 1))
        assert all(0 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered, not one fixed wait
    assert all(policy.delay(1, 2.0, rng) >= 2.0 for _ in range(50))
    assert policy.delay(1, 10_000.0, rng) == 120.0  # a huge Retry-After is capped
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def test_rate_limit_spaces_slots_evenly_and_timeline_scales_gaps() -> None:
    limit = RateLimit(100.0)
    first = limit.delay()
    assert first == 0.0
    waits = [limit.delay() for _ in range(9)]
    # Each slot is 10 ms after the previous one, so the 10th is at most 90 ms away.
    assert waits == sorted(waits) and 0.0 < waits[-1] <= 0.09
    assert RateLimit(0).delay() == 0.0
    assert Timeline(None).wait_for(10**12) == 0.0
    timeline = Timeline(1000.0)
    assert timeline.wait_for(T0) == 0.0  # the first step sets the origin
    assert 0.5 < timeline.wait_for(T0 + 3_600_000) <= 3.6  # an hour later, 1000x faster
    assert timeline.wait_for(T0 - 5_000) == 0.0


def test_target_must_be_loopback_unless_allowed() -> None:
    def target(url: str, allow_remote: bool = False) -> Endpoint:
        return parse_endpoint(
            url, option="--target", allow_remote=allow_remote, why_local="x", base_path=True
        )

    assert target("http://127.0.0.1:8080/").url == "http://127.0.0.1:8080"
    assert target("http://localhost:8080").loopback
    assert target("https://[::1]:9/base").base_path == "/base"
    with pytest.raises(EndpointError, match="--allow-remote"):
        target("http://192.0.2.10:8080")
    assert target("http://192.0.2.10:8080", allow_remote=True).host == "192.0.2.10"
    with pytest.raises(EndpointError, match="give a URL"):
        target("127.0.0.1:8080")


def test_plan_orders_steps_per_guest_and_builds_wire_requests(tmp_path: Path) -> None:
    plan = ReplayPlan.open(make_dataset(tmp_path / "ds", guests=5, gz=True))
    assert plan.check() == dataset_counts(tmp_path / "ds")
    steps = list(plan.steps())
    assert [s.seq for s in steps] == list(range(1, len(steps) + 1))
    assert [s.created_ms for s in steps] == sorted(s.created_ms for s in steps)
    assert {s.guest for s in steps} == set(plan.owner.values())
    tracking = next(s for s in steps if s.type == "TRACKING")
    flow = plan.request(tracking, "server-browser")
    assert (flow.method, flow.path) == ("POST", "/v2/callFlows")
    assert flow.body is not None
    assert (flow.body["browserId"], flow.body["friendlyId"]) == ("server-browser", "smoke_banner")
    assert (flow.body["language"], flow.body["currencyCode"]) == ("EN", "EUR")
    view = plan.request(steps[0], "server-browser")
    assert (view.path, view.body and view.body["browser_id"]) == ("/v1.2/events", "server-browser")
    assert browser_key("b1") == browser_key("b1") != browser_key("b2")
    assert plan.fingerprint == ReplayPlan.open(tmp_path / "ds").fingerprint


def test_a_flow_call_answered_without_a_run_is_told_apart() -> None:
    from generator.replay.run import _outside_allocation
    from generator.replay.sender import Outcome, Reply

    outside = b'{"friendlyId":"f","flowRef":"r","variant":null,"reason":"outside allocation"}'
    assert _outside_allocation(Reply(Outcome.ACKNOWLEDGED, "", 200, body=outside))
    ran = b'{"friendlyId":"f","variant":{"ref":"v","name":"popup"}}'
    assert not _outside_allocation(Reply(Outcome.ACKNOWLEDGED, "", 200, body=ran))
    assert not _outside_allocation(Reply(Outcome.ACKNOWLEDGED, "", 200, body=b"[]"))


# --- bad input: a clear error, a non-zero exit, nothing sent -----------------------------------


def corrupt(directory: Path, how: str) -> None:
    events = directory / "events.jsonl"
    data = events.read_bytes()
    if how == "truncated":
        events.write_bytes(data[: len(data) // 2])
    elif how == "bad json":
        lines = data.splitlines(keepends=True)
        lines[3] = b'{"ref": "x", "type":\n'
        events.write_bytes(b"".join(lines))
    elif how == "missing lines":
        events.write_bytes(b"".join(data.splitlines(keepends=True)[:-2]))
    elif how == "no guests":
        (directory / "guests.jsonl").unlink()
    elif how == "bad gzip":
        events.unlink()
        (directory / "events.jsonl.gz").write_bytes(gzip.compress(data)[:200])


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "truncated"),
        ("bad json", "line 4: not valid JSON"),
        ("missing lines", "do not match the manifest"),
        ("no guests", "guests.jsonl: missing"),
        ("bad gzip", "corrupted or truncated gzip"),
    ],
)
def test_a_corrupt_dataset_is_refused_before_anything_is_sent(
    server: Any, tmp_path: Path, how: str, message: str
) -> None:
    before = server.stats()
    ds = make_dataset(tmp_path / "ds")
    corrupt(ds, how)
    proc = run_replay(ds, "--target", server.url)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert server.stats()["total"] == before["total"]
    assert server.stats()["browsers"] == before["browsers"]


def test_missing_dataset_unreachable_and_remote_targets_are_clear_errors(tmp_path: Path) -> None:
    proc = run_replay(tmp_path / "nope", "--target", "http://127.0.0.1:9")
    assert proc.returncode == 1 and "not a directory" in proc.stderr
    ds = make_dataset(tmp_path / "ds")
    down = f"http://127.0.0.1:{free_port()}"
    # The same exit codes as `load` (README; tests/test_load_runs.py holds load to them): 4 for
    # a target nothing listens at, 2 for a URL that cannot be used; Stream replay and Batch alike.
    for via in (["--via", "stream"], ["--via", "batch", "--api-token", "t0ken"]):
        proc = run_replay(ds, "--target", down, *via)
        assert proc.returncode == 4, proc.stderr
        assert "cannot reach the target" in proc.stderr and "nothing was" in proc.stderr
        assert not (tmp_path / "ds.replay-state.json").exists()  # nothing started
        assert not (tmp_path / "ds.batch-state.json").exists()
        assert not (ds / "batch").exists()
    proc = run_replay(ds, "--target", "http://192.0.2.10:8080")
    assert proc.returncode == 2 and "--allow-remote" in proc.stderr
    proc = run_replay(ds, "--target", "127.0.0.1:8080")
    assert proc.returncode == 2 and "give a URL" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_checkpoint_of_another_dataset_or_an_existing_one_is_refused(
    server: Any, tmp_path: Path
) -> None:
    a = make_dataset(tmp_path / "a", guests=4, seed=11)
    b = make_dataset(tmp_path / "b", guests=4, seed=12)
    state = tmp_path / "a.replay-state.json"
    before = server.stats()
    done = run_replay(a, "--target", server.url, "--speed", "100000")
    assert done.returncode == 0, done.stderr
    assert report_of(done)["status"] == "complete"
    after_a = server.stats()
    assert after_a["total"] - before["total"] == sum(dataset_counts(a).values())
    for args in (
        (b, "--target", server.url, "--state", state, "--resume"),  # another dataset
        (a, "--target", server.url),  # a checkpoint is there and --resume was not asked
        (b, "--target", server.url, "--state", tmp_path / "none.json", "--resume"),  # none
    ):
        proc = run_replay(*args)
        assert proc.returncode == 1, proc.stderr
        assert "Nothing was sent" in proc.stderr
    again = run_replay(a, "--target", server.url, "--resume")
    assert again.returncode == 0 and report_of(again)["alreadyComplete"]
    assert server.stats()["total"] == after_a["total"]
    assert server.stats()["browsers"] == after_a["browsers"]


def test_permanent_failures_are_recorded_with_reasons_and_keys_stay_masked(
    server: Any, tmp_path: Path
) -> None:
    ds = make_dataset(tmp_path / "ds", guests=3)
    lines = (ds / "events.jsonl").read_bytes().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if b'"TRACKING"' in line)
    lines[i] = lines[i].replace(b'"flowFriendlyId":"smoke_banner"', b'"flowFriendlyId":"gone_flow"')
    (ds / "events.jsonl").write_bytes(b"".join(lines))
    proc = run_replay(ds, "--target", server.url)
    assert proc.returncode == 3, proc.stderr
    report = report_of(proc)
    assert report["status"] == "failed" and report["failedPermanently"] == 1
    (reason,) = report["failedByReason"]
    assert reason.startswith("404") and "gone_flow" in reason
    assert report["failureSamples"][0]["type"] == "TRACKING"
    assert report["acknowledged"] == report["sent"] - 1

    other = make_dataset(tmp_path / "other", guests=2, seed=2)
    manifest = orjson.loads((other / "manifest.json").read_bytes())
    manifest["clientKey"] = "WrongKey000000000000000000000XYZ"
    (other / "manifest.json").write_bytes(orjson.dumps(manifest))
    # The events carry the same other key: a consistent dataset of a tenant the server lacks.
    events = other / "events.jsonl"
    events.write_bytes(
        events.read_bytes().replace(CLIENT_KEY.encode(), manifest["clientKey"].encode())
    )
    proc = run_replay(other, "--target", server.url)
    assert proc.returncode == 1 and "401" in proc.stderr and "****0XYZ" in proc.stderr
    assert "WrongKey" not in proc.stderr + proc.stdout
    assert CLIENT_KEY not in proc.stderr + proc.stdout


def test_a_target_that_keeps_failing_stops_the_run_with_the_checkpoint_saved(
    tmp_path: Path,
) -> None:
    from generator.server.process import EmbeddedServer

    ds = make_dataset(tmp_path / "ds", guests=2, seed=21)
    with EmbeddedServer(profile_path=SMOKE, extra_args=["--fail-rate", "1"]) as server:
        proc = run_replay(ds, "--target", server.url, "--max-retries", "1")
        stats = server.stats()
    assert proc.returncode == 4, proc.stderr
    assert "gave up" in proc.stderr and "--resume" in proc.stderr
    report = report_of(proc)
    assert report["status"] == "stopped" and report["finished"] == 0
    assert report["failedPermanently"] == 0  # a target outage loses nothing: resume sends it
    # Every answer was a 503 (the target did not act): no send's outcome was unknown.
    assert report["retried"] >= 1 and report["possibleDuplicatesIfKeysIgnored"] == 0
    assert Checkpoint.load(tmp_path / "ds.replay-state.json").finished == 0
    assert stats["total"] == 0


@contextlib.contextmanager
def static_web_server(directory: Path, port: int) -> Iterator[str]:
    """A plain static web server (Python's http.server) on 127.0.0.1: a target that answers
    garbage, HTML 404s and 501s, to every Stream API call."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            httpd.shutdown()
            thread.join()


def test_a_target_answering_garbage_fails_readably_and_retry_failed_sends_those_again(
    tmp_path: Path,
) -> None:
    from generator.server.process import EmbeddedServer

    ds = make_dataset(tmp_path / "ds", guests=3, seed=31)
    events = sum(dataset_counts(ds).values())
    state = tmp_path / "ds.replay-state.json"
    port = free_port()
    (tmp_path / "www").mkdir()
    with static_web_server(tmp_path / "www", port) as url:
        proc = run_replay(ds, "--target", url)
        report = report_of(proc)
        assert proc.returncode == 3, proc.stderr
        assert report["status"] == "failed" and report["failedPermanently"] == events
        assert "replay complete" not in proc.stderr and "--retry-failed" in proc.stderr
        (reason,) = report["failedByReason"]  # one reason, said in a line, no page of HTML
        assert reason.startswith("browser create: 404 Not Found") and "HTML" in reason
        assert len(reason) < 120 and "<" not in proc.stderr + proc.stdout
        assert set(Checkpoint.load(state).failed) == set(range(1, events + 1))
        # A plain resume has nothing to send, and says what is left.
        again = run_replay(ds, "--target", url, "--resume")
        assert again.returncode == 3 and report_of(again)["thisRun"]["requests"] == 0
        assert "--retry-failed" in again.stderr
    # The right server comes up at that address: the failed events go through this time.
    with EmbeddedServer(profile_path=SMOKE, port=port) as server:
        retried = run_replay(ds, "--target", server.url, "--resume", "--retry-failed")
        stats = server.stats()
    assert retried.returncode == 0, retried.stderr
    report = report_of(retried)
    assert report["status"] == "complete" and report["failedPermanently"] == 0
    assert report["failedByReason"] == {} and report["failureSamples"] == []
    assert report["possibleDuplicatesIfKeysIgnored"] == 0  # all refused before: none unknown
    assert stored_counts(stats) == with_closes(dataset_counts(ds), report)
    assert stats["sessions"] == dataset_sessions(ds)
    assert Checkpoint.load(state).failed == {}


# --- the proof: faults, a SIGKILL midway, a resume, and exactly the dataset stored -------------


def wait_for_progress(proc: subprocess.Popen[bytes], state: Path, share: float) -> int:
    """Poll the checkpoint (always whole: it is replaced atomically) until `share` is finished."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the replay ended before it could be stopped midway"
        if state.exists():
            ckpt = Checkpoint.load(state)
            if ckpt.finished >= share * ckpt.total:
                return ckpt.finished
        time.sleep(0.02)
    raise AssertionError("no progress")


def generated_dataset(directory: Path, events: int) -> Path:
    """A real dataset from `cdpsim generate` (the smoke profile, first `events` events)."""
    proc = subprocess.run(
        [*CDPSIM, "generate", str(SMOKE), "--out", str(directory), "--events", str(events)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return directory


def test_sigkill_midway_then_resume_stores_every_event_exactly_once(tmp_path: Path) -> None:
    from generator.server.process import EmbeddedServer

    ds = generated_dataset(tmp_path / "ds", events=600)
    state = tmp_path / "state.json"
    faults = ["--fail-rate", "0.05", "--latency-ms", "5", "--throttle-rps", "250"]
    with EmbeddedServer(profile_path=SMOKE, extra_args=faults) as server:
        cmd = [*CDPSIM, "replay", str(ds), "--target", server.url, "--state", str(state)]
        # Over the throttle on purpose, so that 429s with Retry-After are part of the run.
        pace = ["--rate", "300", "--concurrency", "16", "--no-progress"]
        first = subprocess.Popen(
            [*cmd, *pace], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_progress(first, state, 0.3)
            os.kill(first.pid, signal.SIGKILL)
        finally:
            first.wait()
        assert first.returncode == -signal.SIGKILL
        killed = Checkpoint.load(state)
        assert not killed.complete
        assert server.stats()["total"] < sum(dataset_counts(ds).values())

        resumed = run_replay(*cmd[2:], "--resume", *pace[:-1])
        assert resumed.returncode == 0, resumed.stderr
        report = report_of(resumed)
        stats = server.stats()
    assert report["status"] == "complete" and report["runs"] == 2
    assert report["failedPermanently"] == 0 and report["retried"] > 0
    # TRACKING included, made by callFlows; and the FORCE_CLOSEs that ended sessions.
    assert stored_counts(stats) == with_closes(dataset_counts(ds), report)
    assert stats["total"] == sum(dataset_counts(ds).values()) + report["sessionsClosed"]
    assert stats["sessions"] == dataset_sessions(ds)  # none merged at --rate 300
    # Only the sends a killed run had started and not seen through are counted as possible
    # duplicates: at least every repeat the server recognised, and at most one per request that
    # might have been in flight (a browser create, a FORCE_CLOSE, the event, per guest in flight).
    assert stats["duplicates"] <= report["possibleDuplicatesIfKeysIgnored"]
    assert report["possibleDuplicatesIfKeysIgnored"] <= stats["duplicates"] + 3 * 16
    browsers = {
        orjson.loads(line)["browserRef"] for line in (ds / "events.jsonl").read_bytes().splitlines()
    }
    assert stats["browsers"] == len(browsers)  # a browser created again on resume is the same one


def test_sigint_stops_cleanly_with_the_checkpoint_saved(server: Any, tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", guests=30, seed=9, gz=True)
    state = tmp_path / "state.json"
    before = server.stats()
    cmd = [
        *CDPSIM,
        "replay",
        str(ds),
        "--target",
        server.url,
        "--state",
        str(state),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        [*cmd, "--rate", "80"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_for_progress(proc, state, 0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    report = orjson.loads(out.strip().splitlines()[-1])
    assert report["status"] == "interrupted" and 0 < report["finished"] < report["events"]
    saved = Checkpoint.load(state)
    assert saved.finished == report["finished"]
    rest = subprocess.run(
        [*cmd, "--resume"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60
    )
    assert rest.returncode == 0, rest.stderr
    after = server.stats()
    delta = {k: after["stored"][k] - before["stored"].get(k, 0) for k in after["stored"]}
    assert {k: v for k, v in delta.items() if v} == dataset_counts(ds)


def test_replay_keeps_guests_so_partial_flows_match_exactly(tmp_path: Path) -> None:
    """multi-region has a flow shown to 10% of guests: with the guest hint, the embedded server
    files each browser under the dataset's guest, so every flow assigns as in the dataset."""
    import sqlite3

    from generator.server.process import EmbeddedServer

    profile = ROOT / "profiles" / "multi-region.yaml"
    ds = tmp_path / "ds"
    gen = subprocess.run(
        [*CDPSIM, "generate", str(profile), "--out", str(ds), "--events", "2500"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert gen.returncode == 0, gen.stderr
    db = tmp_path / "ledger.sqlite3"
    with EmbeddedServer(profile_path=profile, db_path=db) as server:
        proc = run_replay(ds, "--target", server.url, "--state", tmp_path / "state.json")
        assert proc.returncode == 0, proc.stderr
        stats = server.stats()
    report = report_of(proc)
    assert stored_counts(stats) == with_closes(dataset_counts(ds), report)
    # At --speed max a browser's sessions come seconds apart, far under the timeout: each was
    # ended with a FORCE_CLOSE, so the target has exactly the dataset's sessions.
    assert report["sessionsClosed"] > 0
    assert stats["sessions"] == dataset_sessions(ds)
    want = {}
    for line in (ds / "events.jsonl").read_bytes().splitlines():
        event = orjson.loads(line)
        if event["type"] == "TRACKING":
            fx = event["arbitraryData"]["flowExecution"]
            want[(fx["guestRef"], fx["flowFriendlyId"])] = fx["flowVariantRef"]
    got = {}
    with sqlite3.connect(db) as conn:
        for (body,) in conn.execute("SELECT body FROM events WHERE type = 'TRACKING'"):
            fx = orjson.loads(body)["arbitraryData"]["flowExecution"]
            got[(fx["guestRef"], fx["flowFriendlyId"])] = fx["flowVariantRef"]
    assert got == want
    guests = {
        g["guestRef"] for g in map(orjson.loads, (ds / "guests.jsonl").read_bytes().splitlines())
    }
    with sqlite3.connect(db) as conn:
        assert {g for (g,) in conn.execute("SELECT DISTINCT guest_ref FROM browsers")} == guests
