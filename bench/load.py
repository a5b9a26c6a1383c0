"""Benchmark: journeys-scenario events/s against a bare FastHttpUser posting one constant event.

Run: .venv/bin/python bench/load.py [--users 16] [--seconds 8] [--rounds 2]

Both run against the same embedded server in the same run, each in one Locust process with the
same users and no think time; rounds alternate (A B B A ...) so a ledger that grows over the run
favours neither side. Figures come from Locust's own stats CSV for both. The last line printed
is JSON. When Locust imports this file (`locust -f bench/load.py`) it is the baseline locustfile.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "retail-ireland.yaml"
TARGET_RATIO = 0.7
EVENT_NAMES = ("events", "callFlows")

if __name__ != "__main__":  # imported by Locust: the baseline user
    import orjson
    from locust import task
    from locust.contrib.fasthttp import FastHttpUser

    from generator.events.wire import LIBRARY_VERSION
    from generator.profile import load_profile

    _TENANT = load_profile(PROFILE)
    _KEY = _TENANT.client_key
    _POS = _TENANT.points_of_sale[0]

    class ConstantEvent(FastHttpUser):
        """Creates one browser, then posts the same VIEW event as fast as it is answered."""

        def on_start(self) -> None:
            path = f"/v1.2/browser/create.json?client_key={_KEY}&message={{}}"
            with self.client.get(path, name="browser/create") as response:
                browser = orjson.loads(response.content or b"{}")["ref"]
            self.body = orjson.dumps(
                {
                    "type": "VIEW",
                    "browser_id": browser,
                    "channel": "WEB",
                    "client_key": _KEY,
                    "pos": _POS.name,
                    "language": _POS.language,
                    "currency": _POS.currency,
                    "page": "home",
                }
            )
            self.headers = {
                "Content-Type": "application/json",
                "X-Library-Version": LIBRARY_VERSION,
            }

        @task
        def view(self) -> None:
            self.client.post("/v1.2/events", data=self.body, headers=self.headers, name="events")  # type: ignore[arg-type]


def _per_s(stats_csv: Path, names: tuple[str, ...]) -> float:
    with stats_csv.open() as f:
        return sum(float(row["Requests/s"]) for row in csv.DictReader(f) if row["Name"] in names)


def _baseline(url: str, users: int, seconds: int, out: Path) -> float:
    prefix = out / "baseline"
    command = [sys.executable, "-m", "locust", "-f", __file__, "--headless", "--only-summary"]
    command += ["--host", url, "-u", str(users), "-r", str(users), "-t", f"{seconds}s"]
    command += ["--csv", str(prefix), "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    subprocess.run(command, check=True, capture_output=True, timeout=seconds + 120)
    return _per_s(Path(f"{prefix}_stats.csv"), ("events",))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from rich.console import Console

    from generator.load.loadtest import LoadTest
    from generator.server.process import EmbeddedServer

    baseline: list[float] = []
    journeys: list[float] = []
    own: list[float] = []
    started = time.monotonic()
    with EmbeddedServer(profile_path=PROFILE) as server, tempfile.TemporaryDirectory() as tmp:
        url = server.url
        order = ["baseline", "journeys", "journeys", "baseline"] * args.rounds
        for i, side in enumerate(order[: 2 * args.rounds]):
            out = Path(tmp) / str(i)
            out.mkdir()
            if side == "baseline":
                baseline.append(_baseline(url, args.users, args.seconds, out))
            else:
                summary = LoadTest(
                    profile=PROFILE,
                    host=url,
                    users=args.users,
                    spawn_rate=args.users,
                    run_time=args.seconds,
                    think_time_scale=0.0,
                    report=out / "journeys",
                ).run(Console(quiet=True))
                journeys.append(_per_s(out / "journeys" / "locust_stats.csv", EVENT_NAMES))
                own.append(summary["events_per_s"])
            figure = (baseline if side == "baseline" else journeys)[-1]
            print(f"  round {i + 1}: {side:9s} {figure:8.1f}/s")
        stats = server.stats()
    base = statistics.median(baseline)
    jour = statistics.median(journeys)
    ratio = jour / base if base else 0.0
    print(f"bare FastHttpUser, one constant event: {base:8.1f} requests/s")
    print(f"journeys scenario (model's guests):    {jour:8.1f} events/s  ({ratio:.2f}x)")
    print(f"target >= {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}")
    result = {
        "bench": "load",
        "users": args.users,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "baseline_requests_per_s": round(base, 1),
        "journeys_events_per_s": round(jour, 1),
        "journeys_events_per_s_hdr_tally": round(statistics.median(own), 1),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
        "server_stored": stats.get("total"),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
