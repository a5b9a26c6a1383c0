"""The `cdpsim generate` and `cdpsim merge` commands: a fixture dataset from a profile."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from generator.cli import loading_modules
from generator.cli.progress import progress_bar
from generator.cli.stopping import checked
from generator.errors import CdpsimError
from generator.profile import MAX_DAYS, MAX_GUESTS

if TYPE_CHECKING:
    from generator.dataset.writer import GenerateResult

__all__ = ["register"]


def _shard(value: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise CdpsimError(f"--shard {value!r}: expected I/N, e.g. 2/4", 2) from None
    if not 1 <= i <= n:
        raise CdpsimError(f"--shard {value!r}: I must be between 1 and N", 2)
    return i, n


def summarise(console: Console, result: GenerateResult, seconds: float) -> None:
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if not result.complete:
        console.print(f"shard written to {result.directory}/.parts")
        return
    rate = result.events / seconds if seconds > 0 else 0.0
    console.print(
        f"[green]wrote[/] {result.events:,} events for {result.guests:,} guests to "
        f"{result.directory} in {seconds:.1f}s ({rate:,.0f} events/s)"
    )
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(result.counts.items()) if v)
    console.print(f"  by type: {counts}")


def _test_pause(phase_at: str) -> Callable[[str, int, int], None]:
    """For tests that stop a run at a known phase (CDPSIM_TEST_PAUSE_AT=simulate, write or
    join): print a marker line to stderr there and wait, so the signal lands in that phase.
    `lost-PHASE` instead sends this process SIGINT there and swallows the KeyboardInterrupt, as
    a C extension may, and carries on: the run must stop at its next block all the same."""
    lose = phase_at.startswith("lost-")
    phase_at = phase_at.removeprefix("lost-")

    def update(phase: str, done: int, total: int) -> None:
        nonlocal lose
        at = "join" if phase == "write" and done >= total else phase
        if at != phase_at:
            return
        if lose:
            lose = False
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            except KeyboardInterrupt:
                print(f"cdpsim-test-lost {at}", file=sys.stderr, flush=True)
            return
        print(f"cdpsim-test-pause {at}", file=sys.stderr, flush=True)
        time.sleep(60)

    return update


@contextmanager
def _saying_what_is_left(out: Path, profile: str) -> Iterator[None]:
    """On a stop, or a failure that leaves parts: say what is left in `out` and how to go
    on (the writer has removed what cannot be resumed)."""
    try:
        yield
    except CdpsimError as exc:
        if not (out / ".parts").is_dir():
            raise
        from generator.dataset.writer import leftovers

        raise CdpsimError(f"{exc}\n{leftovers(out, profile)}", exc.code) from None
    except BaseException as exc:
        from generator.dataset.writer import leftovers

        if isinstance(exc, KeyboardInterrupt) or (out / ".parts").is_dir():
            print(leftovers(out, profile), file=sys.stderr)
        raise


def _json(result: GenerateResult, seconds: float) -> str:
    import orjson

    doc = {
        "directory": str(result.directory),
        "complete": result.complete,
        "events": result.events,
        "guests": result.guests,
        "counts": result.counts,
        "warnings": result.warnings,
        "seconds": round(seconds, 3),
    }
    return orjson.dumps(doc).decode()


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def _generate(
        profile: str = typer.Argument(
            ..., help="Profile YAML path, or the name of a bundled one (retail-ireland, smoke ...)."
        ),
        out: Path = typer.Option(..., "--out", help="Directory to write the dataset into."),
        events: int | None = typer.Option(
            None, "--events", min=1, help="Exactly this many events (the first, in time order)."
        ),
        days: float | None = typer.Option(
            None,
            "--days",
            min=0.001,
            max=MAX_DAYS,
            help="Simulate this many days from the profile's start.",
        ),
        guests: int | None = typer.Option(
            None, "--guests", min=1, max=MAX_GUESTS, help="Population size."
        ),
        seed: int | None = typer.Option(None, "--seed", min=0, help="Override the profile's seed."),
        fmt: str = typer.Option(
            "jsonl",
            "--format",
            help="jsonl or jsonl.gz; datalake (Parquet in DIR/datalake, no JSON lines); batch "
            "(JSON lines and Batch API files in DIR/batch).",
        ),
        snapshots: str = typer.Option(
            "last", "--snapshots", help="--format datalake: last (newest folder) or daily."
        ),
        shard: str = typer.Option("1/1", "--shard", help="Write only shard I of N (I/N)."),
        workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes."),
        faults: str | None = typer.Option(
            None,
            "--faults",
            metavar="KIND=SHARE,...",
            help="Also write DIR/dirty/events.jsonl, the events with labelled faults "
            "(dup, dup-changed, late, out-of-order, malformed; e.g. dup=0.01,late=0.005), "
            "and DIR/dirty/faults.jsonl listing each (kind, ref, line). The clean dataset "
            "is unchanged.",
        ),
        as_json: bool = typer.Option(False, "--json", help="One JSON line on stdout at the end."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
        allow_fewer: bool = typer.Option(
            False,
            "--allow-fewer",
            help="With --events: write what the window holds if it holds fewer (else exit 3).",
        ),
        force: bool = typer.Option(
            False, "--force", help="Go on even if the disk or memory looks too small for the run."
        ),
    ) -> None:
        """Write a fixture dataset: events.jsonl[.gz], guests.jsonl and manifest.json.

        The same profile and seed give the same bytes, whatever --workers or --shard split.
        Shards write parts under DIR/.parts; the last shard to finish joins them.
        """
        # Imported here so that `cdpsim --help` and other commands start fast.
        with loading_modules():
            from generator.dataset.writer import GenerateRequest, Progress, generate
            from generator.profile import load_profile, resolve_profile

        if fmt not in ("jsonl", "jsonl.gz", "datalake", "batch"):
            raise CdpsimError(f"--format {fmt!r}: use jsonl, jsonl.gz, datalake or batch", 2)
        if events is not None and days is not None:
            raise CdpsimError("give --events or --days, not both", 2)
        mix = None
        if faults is not None and fmt == "datalake":
            # The dirty copy is made from events.jsonl, which a data lake run does not write.
            raise CdpsimError("--faults needs JSON lines: --format jsonl, jsonl.gz or batch", 2)
        if faults is not None:
            from generator.fault_injection import FaultMix

            try:
                mix = FaultMix.parse(faults)
            except ValueError as exc:
                raise CdpsimError(f"--faults {exc}", 2) from None
        prof = load_profile(resolve_profile(profile))
        request = GenerateRequest(
            profile=prof,
            out=out,
            seed=seed,
            events=events,
            days=days,
            guests=guests,
            gzip=fmt == "jsonl.gz",
            shard=_shard(shard),
            workers=workers,
            tune_process=True,  # the CLI's own process: tuned for speed
            force=force,
            allow_fewer=allow_fewer,
        )
        console = Console(stderr=True, quiet=quiet or as_json)
        started = time.perf_counter()
        run = generate
        if fmt == "datalake":
            # The data lake straight from the simulation: no JSON lines in between.
            from generator.datalake.generate import generate_datalake

            # Tests force small parts (several parts from a few thousand events).
            per_part = int(os.environ.get("CDPSIM_TEST_EVENTS_PER_PART", 0)) or None

            def run(req: GenerateRequest, progress: Progress | None = None) -> GenerateResult:
                if per_part:
                    return generate_datalake(req, snapshots, progress, per_part)
                return generate_datalake(req, snapshots, progress)

        pause_at = os.environ.get("CDPSIM_TEST_PAUSE_AT")
        # Progress is reported at every block and chunk, where a stop signal whose
        # KeyboardInterrupt was lost on the way (`checked`) is raised again.
        with _saying_what_is_left(out, profile):
            if pause_at:
                result = run(request, progress=checked(_test_pause(pause_at)))
            else:
                with progress_bar(console) as bar:
                    result = run(request, progress=checked(bar))
        summarise(console, result, time.perf_counter() - started)
        if result.complete and mix is not None:
            from generator.fault_injection import write_dirty_copy

            dirty, listed, count = write_dirty_copy(
                out, mix, seed if seed is not None else prof.seed
            )
            console.print(f"wrote {count:,} labelled faults: {dirty} (listed in {listed})")
        if result.complete and fmt == "batch":
            from generator.cli.export import export_formats

            export_formats(out, fmt, workers=workers, console=console)
        if as_json:
            print(_json(result, time.perf_counter() - started))

    @app.command("merge")
    def _merge(
        out: Path = typer.Argument(..., help="Directory holding every shard's parts."),
        profile: str = typer.Option(
            ...,
            "--profile",
            help="The profile the shards were made from (checked against what their parts record).",
        ),
        workers: int = typer.Option(
            1, "--workers", min=1, max=64, help="Worker processes that render the chunks."
        ),
        allow_fewer: bool = typer.Option(
            False, "--allow-fewer", help="Write what the parts hold if fewer than asked."
        ),
        force: bool = typer.Option(
            False, "--force", help="Go on even if the disk looks too small for the dataset."
        ),
    ) -> None:
        """Join shards written with --shard into one dataset (when they were made apart)."""
        from generator.datalake.generate import finish_datalake, is_datalake_run
        from generator.dataset.writer import merge_parts
        from generator.profile import load_profile, resolve_profile

        console = Console(stderr=True)
        started = time.perf_counter()
        lake_only = not (out / ".parts").exists() and (out / "datalake").is_dir()
        if is_datalake_run(out) or lake_only:
            # Data lake shards wrote their parts in place: only the manifest is left to sum.
            result = finish_datalake(out, load_profile(resolve_profile(profile)))
            summarise(console, result, time.perf_counter() - started)
            return
        with _saying_what_is_left(out, profile), progress_bar(console) as bar:
            prof = load_profile(resolve_profile(profile))
            result = merge_parts(
                prof,
                out,
                workers,
                checked(bar),
                tune_process=True,
                force=force,
                allow_fewer=allow_fewer,
            )
        summarise(console, result, time.perf_counter() - started)
