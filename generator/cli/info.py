"""The `cdpsim info` command: a dataset's summary and answer key, for people or machines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

__all__ = ["dataset_info", "register"]


def dataset_info(directory: Path) -> dict[str, Any]:
    """What the manifest says, with each variant's realised rate and its 95% interval."""
    from generator.dataset.reader import open_dataset
    from generator.report.stats import wilson

    ds = open_dataset(directory)
    m = ds.manifest()
    flows = []
    for name, flow in (m.get("flows") or {}).items():
        variants = []
        for v in flow.get("variants", []):
            n, x = int(v.get("exposedGuests", 0)), int(v.get("convertedGuests", 0))
            lo, hi = wilson(x, n)
            variants.append(
                {
                    "name": v.get("name"),
                    "weight": v.get("weight"),
                    "configuredRate": v.get("conversionRate"),
                    "exposures": v.get("exposures"),
                    "exposedGuests": n,
                    "convertedGuests": x,
                    "rate": x / n if n else None,
                    "ci95": [lo, hi],
                }
            )
        flows.append(
            {
                "flow": name,
                "kind": flow.get("kind"),
                "goalProductType": flow.get("goalProductType"),
                "attributionHours": flow.get("attributionHours"),
                "trafficAllocation": flow.get("trafficAllocation"),
                "variants": variants,
            }
        )
    return {
        "directory": str(ds.directory),
        "eventsFile": ds.events_path.name,
        "profile": m.get("profile"),
        "seed": m.get("seed"),
        "generator": m.get("generator"),
        "start": m.get("start"),
        "end": m.get("end"),
        "requestedEvents": m.get("requestedEvents"),
        "events": m.get("events"),
        "counts": m.get("counts"),
        "guests": m.get("guests"),
        "pointsOfSale": m.get("pointsOfSale"),
        "answerKey": flows,
    }


def _pct(x: Any) -> str:
    return "–" if not isinstance(x, int | float) else f"{x:.1%}"


def register(app: typer.Typer) -> None:
    @app.command("info")
    def _info(
        directory: Path = typer.Argument(..., help="A dataset directory made by cdpsim generate."),
        as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    ) -> None:
        """Show a dataset's summary and its answer key (from manifest.json; reads no event)."""
        info = dataset_info(directory)
        if as_json:
            import orjson

            sys.stdout.write(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        from rich.table import Table

        console = Console()
        prof = info["profile"] or {}
        guests = info["guests"] or {}
        head = Table(show_header=False, box=None, pad_edge=False)
        head.add_column(style="bold")
        head.add_column()
        head.add_row("dataset", f"{info['directory']} ({info['eventsFile']})")
        head.add_row("profile", f"{prof.get('name')} (seed {info['seed']})")
        head.add_row("window", f"{info['start']} to {info['end']}")
        head.add_row("events", f"{info['events']:,}" if isinstance(info["events"], int) else "–")
        head.add_row(
            "guests",
            f"{guests.get('seen', 0):,} seen, {guests.get('customers', 0):,} customers, "
            f"{guests.get('simulated', 0):,} simulated",
        )
        head.add_row("points of sale", ", ".join(info["pointsOfSale"] or {}))
        counts = info["counts"] or {}
        head.add_row("by type", ", ".join(f"{k} {v:,}" for k, v in counts.items() if v))
        console.print(head, highlight=False)
        table = Table(title="answer key")
        for col in ("flow", "variant", "configured", "exposures", "exposed", "converted"):
            table.add_column(col, justify="left" if col in ("flow", "variant") else "right")
        table.add_column("realised [95% CI]", justify="right")
        for flow in info["answerKey"]:
            for v in flow["variants"]:
                table.add_row(
                    f"{flow['flow']} ({flow['attributionHours']}h)",
                    str(v["name"]),
                    _pct(v["configuredRate"]),
                    f"{v['exposures']:,}",
                    f"{v['exposedGuests']:,}",
                    f"{v['convertedGuests']:,}",
                    f"{_pct(v['rate'])} [{_pct(v['ci95'][0])}, {_pct(v['ci95'][1])}]",
                )
        console.print(table)
