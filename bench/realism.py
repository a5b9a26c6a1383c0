"""Calibration you can see: the default profile's shoppers beside published e-commerce figures.

Generates the default profile (its own window, a week) and the same profile over 30 days (for
sessions per guest a month), measures both with `generator.dataset.realism.measure` and prints
each figure beside the published one with its source. The README's calibration table is this
output. Not a timing: nothing here is compared against a baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CDPSIM, ROOT

sys.path.insert(0, str(ROOT))

from generator.dataset.realism import PUBLISHED, measure

PROFILE = "retail-ireland"


def _generate(out: Path, *extra: str) -> None:
    subprocess.run(
        [*CDPSIM, "generate", PROFILE, "--out", str(out), "--quiet", *extra],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _show(value: object, percent: bool) -> str:
    if isinstance(value, float):
        return f"{value:.1%}" if percent else f"{value:,.2f}"
    return str(value)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cdpsim-realism-") as tmp:
        week, month = Path(tmp) / "week", Path(tmp) / "month"
        _generate(week)
        _generate(month, "--days", "30")
        measured = measure(week)
        monthly = measure(month)
    figures = dict(measured.figures)
    figures["sessions_per_guest_30d"] = monthly.figures["sessions_per_guest"]
    rows = []
    for p in PUBLISHED:
        value = figures[p.key]
        rows.append((p.label, _show(value, p.percent), p.published, p.source))
        if p.key == "sessions_per_guest":
            rows.append(
                (
                    "sessions per guest over 30 days",
                    _show(figures["sessions_per_guest_30d"], False),
                    p.published,
                    p.source,
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{PROFILE}, its own window (a week) unless said")
    for label, value, published, source in rows:
        print(f"  {label:<{widths[0]}}  {value:>{widths[1]}}   {published:<{widths[2]}}  {source}")
    shares = ", ".join(f"{d[:3]} {s:.1%}" for d, s in measured.weekday_shares.items())
    print(f"  sessions by weekday: {shares}")
    print(f"  average order value by currency: {measured.order_values}")
    print(json.dumps({"bench": "realism", **figures, "counts": measured.counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
