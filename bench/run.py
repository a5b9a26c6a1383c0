"""`make bench`: every benchmark in turn, each against its baseline measured in the same run.

Each script prints a human summary and, last, one JSON line; this collects those lines into
`bench/results/latest.json` and prints them together. Never run as part of `make test`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("generate", "server", "load", "replay", "report", "formats", "realism")


def main() -> int:
    only = sys.argv[1:] or list(BENCHES)
    results: dict[str, object] = {}
    failed = []
    for name in only:
        print(f"\n=== bench/{name}.py", flush=True)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py")], stdout=subprocess.PIPE, text=True
        )
        print(proc.stdout, end="")
        print(f"({time.perf_counter() - started:.0f}s)")
        last = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not last:
            failed.append(name)
            continue
        results[name] = json.loads(last[-1])
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {out / 'latest.json'}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
