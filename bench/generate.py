"""Generator speed and memory against the hand-written Faker+json baseline, in the same run.

Figures (issue 2): events/s of `cdpsim generate profiles/retail-ireland.yaml` vs the baseline
(target >= 5x), `--workers 2` vs one worker (>= 1.6x), peak RSS at 5M vs 1M events (within 20%).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import orjson
from common import CDPSIM, PYTHON, ROOT, Run, baseline_script, run

SPIN = "s = 0\nfor i in range(15_000_000):\n    s += i\n"


def parallel_capacity() -> float:
    """How many cores' worth of work this machine gives two busy processes right now: 2.0 on two
    idle cores, nearer 1.0 when the host or other work takes the second. The ceiling for
    --workers 2, measured in the same run."""
    one = run([PYTHON, "-c", SPIN]).seconds
    started = time.perf_counter()
    procs = [subprocess.Popen([PYTHON, "-c", SPIN]) for _ in range(2)]
    for p in procs:
        p.wait()
    two = time.perf_counter() - started
    return round(2 * one / two, 2)


def timed(cmd: list[str]) -> Run:
    """Run a command after flushing earlier runs' writes, so none pays for another's."""
    os.sync()
    return run(cmd)


def digest(d: Path) -> str:
    """A dataset's events, hashed (then it can be removed before the next timed run)."""
    h = hashlib.sha256()
    with open(d / "events.jsonl", "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    shutil.rmtree(d)
    return h.hexdigest()


def _spread(runs: list[Run]) -> str:
    seconds = sorted(r.seconds for r in runs)
    return f"{statistics.median(seconds):.2f} s (runs {seconds[0]:.2f}-{seconds[-1]:.2f})"


def events_in(d: Path) -> int:
    return int(orjson.loads((d / "manifest.json").read_bytes())["events"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", type=int, default=5_000_000, help="events for the RSS check")
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--baseline-events", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each side, median")
    args = parser.parse_args()
    profile = str(ROOT / "profiles/retail-ireland.yaml")
    work = Path(tempfile.mkdtemp(prefix="cdpsim-bench-"))
    try:
        # The median of a few runs each, taken alike for both sides: the default profile's
        # run is short enough (about a second) for one run to be noisy.
        base_runs, our_runs = [], []
        for _ in range(args.repeats):
            base_runs.append(
                timed([PYTHON, str(baseline_script()), str(args.baseline_events), str(work / "b")])
            )
            (work / "b").unlink()
            d = work / "default"
            our_runs.append(timed([*CDPSIM, "generate", profile, "--out", str(d)]))
            default_events = events_in(d)
            shutil.rmtree(d)
        base_rate = args.baseline_events / statistics.median(r.seconds for r in base_runs)
        ours_rate = default_events / statistics.median(r.seconds for r in our_runs)

        capacity = parallel_capacity()
        small = ["--events", str(args.small)]
        # Taken in turns, a median of each: on a VM the cost of first touching memory (the
        # page cache's included) swings a run by tenths of a second.
        ones, twos, digests = [], [], set()
        gen = [*CDPSIM, "generate", profile, *small, "--out"]
        for _ in range(args.repeats):
            ones.append(timed([*gen, str(work / "w1")]))
            digests.add(digest(work / "w1"))
            twos.append(timed([*gen, str(work / "w2"), "--workers", "2"]))
            digests.add(digest(work / "w2"))
        same = len(digests) == 1
        one = min(ones, key=lambda r: abs(r.seconds - statistics.median(x.seconds for x in ones)))
        two = min(twos, key=lambda r: abs(r.seconds - statistics.median(x.seconds for x in twos)))
        big_events = ["--events", str(args.big)]
        big = timed([*CDPSIM, "generate", profile, "--out", str(work / "big"), *big_events])
        shutil.rmtree(work / "big")

        result = {
            "baseline_events_per_s": round(base_rate),
            "generate_events_per_s": round(ours_rate),
            "generate_vs_baseline": round(ours_rate / base_rate, 2),
            "one_worker_events_per_s": round(args.small / one.seconds),
            "one_worker_vs_baseline": round(args.small / one.seconds / base_rate, 2),
            "two_workers_events_per_s": round(args.small / two.seconds),
            "workers2_vs_1": round(one.seconds / two.seconds, 2),
            "workers_same_bytes": same,
            "parallel_capacity": capacity,
            "rss_mb_small": round(one.max_rss_mb, 1),
            "rss_mb_big": round(big.max_rss_mb, 1),
            "rss_big_vs_small": round(big.max_rss_mb / one.max_rss_mb, 3),
            "small_events": args.small,
            "big_events": args.big,
        }
        print(f"baseline (Faker+json)     {base_rate:>12,.0f} events/s")
        print(
            f"cdpsim generate (default) {ours_rate:>12,.0f} events/s   "
            f"{result['generate_vs_baseline']}x baseline (target >= 5x)"
        )
        print(
            f"  medians of {args.repeats} runs each: {_spread(our_runs)} ({default_events:,} "
            f"events) vs {_spread(base_runs)} ({args.baseline_events:,} events)"
        )
        print(
            f"--events {args.small:,}: 1 worker {result['one_worker_events_per_s']:,}/s "
            f"({result['one_worker_vs_baseline']}x baseline), "
            f"2 workers {result['two_workers_events_per_s']:,}/s = {result['workers2_vs_1']}x "
            f"(target >= 1.6x), same bytes: {same}"
        )
        print(
            f"  control: two busy processes got {capacity} cores' worth of CPU on this machine "
            "(2.0 = two idle cores): the ceiling for that ratio"
        )
        print(
            f"peak RSS {args.small:,} events {result['rss_mb_small']} MB, {args.big:,} events "
            f"{result['rss_mb_big']} MB = {result['rss_big_vs_small']}x (target <= 1.2x)"
        )
        print(json.dumps({"bench": "generate", **result}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
