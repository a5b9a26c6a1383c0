"""The demo: the main job on the bundled default profile, explained as it runs."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.json import JSON
from rich.table import Table

from generator.dataset.reader import open_dataset
from generator.dataset.validate import validate_dataset
from generator.dataset.writer import GenerateRequest, generate
from generator.errors import CdpsimError
from generator.profile import DEFAULT_PROFILE, load_profile
from generator.redaction import mask_key

__all__ = ["run_demo"]


def run_demo(out: Path, console: Console) -> None:
    """Generate the default tenant's week, validate it, and show the answer key."""
    dataset = out / "dataset"
    if dataset.exists():
        if not (dataset / "manifest.json").exists() and any(dataset.iterdir()):
            raise CdpsimError(f"{dataset} exists and is not a demo dataset; pass another --out", 2)
        shutil.rmtree(dataset)
    profile = load_profile(DEFAULT_PROFILE)
    console.rule("[bold]cdpsim demo")
    console.print(
        f"Profile [bold]{profile.name}[/]: {profile.population.guests:,} guests of "
        f"{', '.join(p.name for p in profile.points_of_sale)}, {profile.days:g} days from "
        f"{profile.start:%Y-%m-%d}, flows: {', '.join(f.friendly_id for f in profile.flows)}"
    )
    started = time.perf_counter()
    result = generate(GenerateRequest(profile=profile, out=dataset, tune_process=True))
    took = time.perf_counter() - started
    console.print(
        f"\n[green]1. generated[/] {result.events:,} events for {result.guests:,} guests in "
        f"{took:.1f}s ({result.events / took:,.0f} events/s) -> {dataset}"
    )
    by_count = sorted(result.counts.items(), key=lambda kv: -kv[1])
    console.print("   " + ", ".join(f"{name} {n:,}" for name, n in by_count if n))

    started = time.perf_counter()
    report = validate_dataset(dataset)
    verdict = "[green]every invariant holds[/]" if report.ok else "[red]problems found[/]"
    console.print(
        f"\n[green]2. validated[/] {report.events:,} events in "
        f"{time.perf_counter() - started:.1f}s: {verdict}"
    )
    manifest = orjson.loads((dataset / "manifest.json").read_bytes())
    key = Table(title="3. the answer key (manifest.json: flows)", header_style="bold")
    for col in (
        "flow",
        "variant",
        "weight",
        "configured rate",
        "exposures",
        "exposed",
        "converted",
        "realised rate",
    ):
        key.add_column(
            col, justify="left" if col in ("flow", "variant") else "right", no_wrap=col == "flow"
        )
    for name, flow in manifest["flows"].items():
        for v in flow["variants"]:
            realised = v["convertedGuests"] / v["exposedGuests"] if v["exposedGuests"] else 0.0
            key.add_row(
                name,
                v["name"],
                f"{v['weight']:g}",
                f"{v['conversionRate']:.1%}",
                f"{v['exposures']:,}",
                f"{v['exposedGuests']:,}",
                f"{v['convertedGuests']:,}",
                f"{realised:.1%}",
            )
    console.print(key)
    sample = next(e for _, e in open_dataset(dataset).events() if e["type"] == "TRACKING")
    sample["clientKey"] = mask_key(sample["clientKey"])  # shown, so never whole
    console.print("\n4. one TRACKING event, as CDP stores it when a flow runs (key masked):")
    console.print(JSON.from_data(sample))
    console.print(
        "\nNext: [bold]cdpsim serve[/] (a Stream API target), [bold]cdpsim load retail-ireland[/] "
        "(a load test against it), [bold]cdpsim replay "
        f"{dataset} --target URL[/] (seed an environment). Every command has --help."
    )
    if not report.ok:
        raise CdpsimError("the demo dataset did not validate", 1)
