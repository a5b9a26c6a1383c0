"""Replay speed: `cdpsim replay --speed max` vs a bare Locust FastHttpUser, same server, same run.

Run: .venv/bin/python bench/replay.py [--events N] [--users N] [--seconds S] [--rounds R]
Prints a human summary and, last, one JSON line. The bar: replay reaches >= 0.7x Locust's req/s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.events.stored import envelope, iso_ms, tracking_event  # noqa: E402
from generator.server.process import EmbeddedServer  # noqa: E402

BIN = Path(sys.executable).parent
PROFILE = ROOT / "profiles" / "smoke.yaml"
CLIENT_KEY = "SmokeTestKey0000000000000000000A"
POS = "smokeshop/ireland"
BAR = 0.7

# The bare baseline: one browser per user, then the same VIEW posted as fast as answers come.
# It times itself (first request sent to last answer) rather than trusting Locust's rounded
# request timestamps, which overstate short runs.
LOCUSTFILE = textwrap.dedent(
    f"""
    import json, os, time
    import orjson
    from locust import FastHttpUser, constant, events, task

    KEY = "{CLIENT_KEY}"
    SEEN = {{"n": 0, "failures": 0, "first": None, "last": None}}

    @events.test_stop.add_listener
    def _write(**_):
        with open(os.environ["CDPSIM_BENCH_OUT"], "w") as fh:
            json.dump(SEEN, fh)

    class ConstantEvent(FastHttpUser):
        wait_time = constant(0)

        def on_start(self):
            r = self.client.get(
                f"/v1.2/browser/create.json?client_key={{KEY}}&message={{{{}}}}", name="create"
            )
            self.body = orjson.dumps({{
                "type": "VIEW", "browser_id": r.json()["ref"], "channel": "WEB",
                "client_key": KEY, "pos": "{POS}", "language": "EN", "currency": "EUR",
                "page": "home",
            }})

        @task
        def post(self):
            start = time.perf_counter()
            if SEEN["first"] is None:
                SEEN["first"] = start
            with self.client.post(
                "/v1.2/events", data=self.body, name="events", catch_response=True,
                headers={{"Content-Type": "application/json", "X-Library-Version": "1.4.3"}},
            ) as r:
                if r.status_code != 201:
                    SEEN["failures"] += 1
            SEEN["n"] += 1
            SEEN["last"] = time.perf_counter()
    """
)


def generated_dataset(out: Path, events: int, seed: int) -> bool:
    """A dataset from `cdpsim generate` when it is available (it is the real thing)."""
    sizes = ["--events", str(events), "--guests", str(max(10, events // 10)), "--seed", str(seed)]
    proc = subprocess.run(
        [BIN / "cdpsim", "generate", str(PROFILE), "--out", str(out), *sizes],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0 and (out / "manifest.json").exists()


def synthetic_dataset(out: Path, events: int) -> None:
    """Stand-in with the same shape (VIEW, TRACKING, ADD, FORCE_CLOSE per browser)."""
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    guests = []
    t = 1_740_960_000_000
    n = 0
    while len(rows) < events:
        guest, browser, session = (str(uuid.uuid4()) for _ in range(3))
        guests.append({"guestRef": guest, "browsers": [{"browserRef": browser, "channel": "WEB"}]})
        common = {
            "client_key": CLIENT_KEY,
            "channel": "WEB",
            "point_of_sale": POS,
            "browser_ref": browser,
            "session_ref": session,
        }
        data = {"language": "EN", "currency": "EUR", "page": "home"}
        for kind in ("VIEW", "TRACKING", "ADD", "FORCE_CLOSE"):
            t += 7
            if kind == "TRACKING":
                rows.append(
                    tracking_event(
                        ref=str(uuid.uuid4()),
                        created_at=iso_ms(t),
                        modified_at=iso_ms(t),
                        flow_execution_ref=str(uuid.uuid4()),
                        occurred_ms=t - 20,
                        flow_ref=str(uuid.uuid4()),
                        flow_friendly_id="smoke_banner",
                        flow_variant_ref=str(uuid.uuid4()),
                        guest_ref=guest,
                        execution_ms=20,
                        **common,
                    )
                )
            else:
                rows.append(
                    envelope(
                        ref=str(uuid.uuid4()),
                        created_at=iso_ms(t),
                        modified_at=iso_ms(t),
                        type=kind,
                        arbitrary_data=data,
                        **common,
                    )
                )
        n += 1
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["type"]] = counts.get(r["type"], 0) + 1
    (out / "events.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (out / "guests.jsonl").write_bytes(b"".join(orjson.dumps(g) + b"\n" for g in guests))
    manifest = {
        "profile": {"name": "smoke", "sha256": hashlib.sha256(PROFILE.read_bytes()).hexdigest()},
        "clientKey": CLIENT_KEY,
        "pointsOfSale": {POS: {"language": "EN", "currency": "EUR"}},
        "counts": counts,
    }
    (out / "manifest.json").write_bytes(orjson.dumps(manifest))


def locust_rps(url: str, users: int, seconds: float, work: Path, keyed: bool = False) -> float:
    locustfile = work / ("keyed_event.py" if keyed else "constant_event.py")
    source = LOCUSTFILE
    if keyed:
        # The same user sending a fresh X-Idempotency-Key per request, as replay must: it shows
        # how much of the gap is the target's cost of honouring keys, not the client's.
        source = source.replace("import orjson", "import orjson, uuid").replace(
            '"X-Library-Version": "1.4.3"}',
            '"X-Library-Version": "1.4.3", "X-Idempotency-Key": str(uuid.uuid4())}',
        )
    locustfile.write_text(source)
    out = work / "locust-result.json"
    proc = subprocess.run(
        [
            BIN / "locust",
            "-f",
            str(locustfile),
            "--headless",
            "--skip-log",
            "--only-summary",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{seconds:g}s",
            "--host",
            url,
        ],
        capture_output=True,
        text=True,
        cwd=work,
        env={**os.environ, "CDPSIM_BENCH_OUT": str(out)},
    )
    if not out.exists():
        raise SystemExit(f"the Locust baseline did not run: {proc.stderr[-2000:]}")
    seen = orjson.loads(out.read_bytes())
    out.unlink()
    if seen["failures"] or not seen["n"]:
        raise SystemExit(f"the Locust baseline had failures: {proc.stderr[-2000:]}")
    return float(seen["n"] / (seen["last"] - seen["first"]))


def replay_rps(url: str, dataset: Path, users: int, work: Path) -> dict[str, Any]:
    state = work / f"state-{time.monotonic_ns()}.json"
    proc = subprocess.run(
        [
            BIN / "cdpsim",
            "replay",
            str(dataset),
            "--target",
            url,
            "--speed",
            "max",
            "--concurrency",
            str(users),
            "--state",
            str(state),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"replay failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report: dict[str, Any] = orjson.loads(proc.stdout.strip().splitlines()[-1])
    return report


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=12_000, help="events per replay round")
    parser.add_argument("--users", type=int, default=32, help="Locust users = replay concurrency")
    parser.add_argument("--seconds", type=float, default=3.0, help="Locust run time per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians)")
    args = parser.parse_args()
    locust: list[float] = []
    keyed: list[float] = []
    replay: list[float] = []
    complete = True
    with tempfile.TemporaryDirectory(prefix="cdpsim-bench-replay-") as tmp:
        work = Path(tmp)
        kind = "generated"
        datasets = []
        # A fresh dataset per round: replaying keys the server already holds would only
        # measure its cached answers.
        for r in range(args.rounds):
            dataset = work / f"dataset-{r}"
            if not generated_dataset(dataset, args.events, seed=100 + r):
                kind = "synthetic"
                synthetic_dataset(dataset, args.events)
            datasets.append(dataset)
        with EmbeddedServer(profile_path=PROFILE) as server:
            # Alternate which client goes first, round by round, so that noise from other work
            # on the machine and the server's growing ledger fall on both alike; each round's
            # ratio compares neighbours in time.
            for r, dataset in enumerate(datasets):
                if r % 2:
                    report = replay_rps(server.url, dataset, args.users, work)
                    locust.append(locust_rps(server.url, args.users, args.seconds, work))
                else:
                    locust.append(locust_rps(server.url, args.users, args.seconds, work))
                    report = replay_rps(server.url, dataset, args.users, work)
                replay.append(float(report["thisRun"]["requestsPerSecond"]))
                complete = complete and report["status"] == "complete"
                keyed.append(locust_rps(server.url, args.users, args.seconds, work, keyed=True))
    ratios = [a / b for a, b in zip(replay, locust, strict=True) if b]
    ratio = median(ratios)
    print(f"dataset: {kind}, {args.events:,} events per round, {args.rounds} rounds")
    print(f"{args.users} users / guests in flight; cpus {os.cpu_count()}")
    print(f"locust FastHttpUser, constant VIEW:         {_fmt(locust)}")
    print(f"cdpsim replay --speed max:                  {_fmt(replay)}")
    print(f"locust, same VIEW + fresh idempotency key:  {_fmt(keyed)}  (reference)")
    verdict = "PASS" if ratio >= BAR else "FAIL"
    per_round = ", ".join(f"{x:.2f}" for x in ratios)
    print(
        f"ratio replay / locust, median of rounds: {ratio:.2f}x ({per_round}); "
        f"bar {BAR}x: {verdict}"
    )
    result = {
        "bench": "replay",
        "dataset": kind,
        "eventsPerRound": args.events,
        "rounds": args.rounds,
        "users": args.users,
        "locustRps": [round(x) for x in locust],
        "replayRps": [round(x) for x in replay],
        "locustKeyedRps": [round(x) for x in keyed],
        "ratios": [round(x, 3) for x in ratios],
        "ratio": round(ratio, 3),
        "ratioToKeyedLocust": round(median(replay) / median(keyed), 3) if keyed else 0.0,
        "bar": BAR,
        "pass": ratio >= BAR,
        "replayComplete": complete,
    }
    print(orjson.dumps(result).decode())


def _fmt(values: list[float]) -> str:
    rounds = ", ".join(f"{v:,.0f}" for v in values)
    return f"{median(values):>7,.0f} req/s median ({rounds})"


if __name__ == "__main__":
    main()
