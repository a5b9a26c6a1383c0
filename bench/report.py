"""Report speed: `cdpsim report` vs `cdpsim validate` on the same 1M-event dataset.

Run: .venv/bin/python bench/report.py [--events N] [--rounds R]
Prints a human summary and, last, one JSON line. The bar: a report takes under 3x validate's time.
Both read every event once; validate's time is the yardstick because it is the other command
that does, so the ratio holds on a slower or faster machine. Rounds are taken in turns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from common import CDPSIM, ROOT, run

BAR = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cdpsim-bench-report-") as tmp:
        data = Path(tmp) / "ds"
        run(
            [
                *CDPSIM,
                "generate",
                "retail-ireland",
                "--out",
                str(data),
                "--events",
                str(args.events),
                "--quiet",
            ],
            cwd=ROOT,
        )
        out = Path(tmp) / "report.html"
        validate_s, report_s, report_mb, validate_mb = [], [], [], []
        for _ in range(args.rounds):
            v = run([*CDPSIM, "validate", str(data), "--quiet"], cwd=ROOT)
            r = run([*CDPSIM, "report", str(data), "--out", str(out)], cwd=ROOT)
            validate_s.append(v.seconds)
            report_s.append(r.seconds)
            validate_mb.append(v.max_rss_mb)
            report_mb.append(r.max_rss_mb)
        size_mb = out.stat().st_size / 1e6
    v_med, r_med = statistics.median(validate_s), statistics.median(report_s)
    ratio = r_med / v_med
    print(f"dataset: retail-ireland, {args.events:,} events; medians of {args.rounds} in turns")
    print(
        f"validate: {v_med:.2f} s (runs {', '.join(f'{x:.2f}' for x in validate_s)}), "
        f"peak RSS {max(validate_mb):.0f} MB"
    )
    print(
        f"report:   {r_med:.2f} s (runs {', '.join(f'{x:.2f}' for x in report_s)}), "
        f"peak RSS {max(report_mb):.0f} MB, page {size_mb:.1f} MB"
    )
    print(
        f"report / validate: {ratio:.2f}x (bar: under {BAR:g}x) {'ok' if ratio < BAR else 'MISSED'}"
    )
    print(
        json.dumps(
            {
                "bench": "report",
                "events": args.events,
                "validate_s": round(v_med, 3),
                "report_s": round(r_med, 3),
                "ratio": round(ratio, 3),
                "bar": BAR,
                "report_peak_rss_mb": round(max(report_mb), 1),
                "validate_peak_rss_mb": round(max(validate_mb), 1),
                "ok": ratio < BAR,
            }
        )
    )
    return 0 if ratio < BAR else 1


if __name__ == "__main__":
    sys.exit(main())
