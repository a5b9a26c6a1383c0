"""The `cdpsim validate` command: check a dataset, print a readable report, exit 1 on problems."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from generator.cli.progress import progress_bar
from generator.cli.stopping import checked

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def _validate(
        directory: Path = typer.Argument(..., help="A dataset directory made by cdpsim generate."),
        as_json: bool = typer.Option(False, "--json", help="One JSON line on stdout."),
        quiet: bool = typer.Option(
            False, "--quiet", "-q", help="Print nothing; the exit code says."
        ),
    ) -> None:
        """Check every invariant of a dataset and its manifest; exit 1 with a report if any fail."""
        from generator.dataset.reader import EVENT_FILES
        from generator.dataset.validate import validate_dataset

        console = Console(stderr=True)
        lake_dir = directory / "datalake"
        if lake_dir.is_dir() and not any((directory / n).is_file() for n in EVENT_FILES):
            _validate_lake(console, directory, as_json, quiet)
            return
        # The bar counts lines against the manifest's event count (quiet or --json: none).
        bar_console = Console(stderr=True, quiet=quiet or as_json)
        with progress_bar(bar_console) as bar:
            report = validate_dataset(directory, progress=checked(bar))
        if (directory / "datalake").is_dir():
            from generator.datalake.check import check_datalake
            from generator.dataset.reader import open_dataset

            lake = check_datalake(directory / "datalake", open_dataset(directory).manifest())
            for problem in lake:
                console.print(f"[red]data lake:[/] {problem}", highlight=False, markup=False)
            if lake:
                raise typer.Exit(1)
            console.print("[green]data lake[/]: files, parts and row counts agree")
        if as_json:
            import orjson

            doc = {"ok": report.ok, "events": report.events, "problems": dict(report.problems)}
            doc["examples"] = {k: report.examples[k] for k in report.problems}
            print(orjson.dumps(doc).decode())
        if as_json or quiet:
            if not report.ok:
                raise typer.Exit(1)
            return
        if report.ok:
            console.print(f"[green]valid[/]: {report.events:,} events, every invariant holds")
            return
        from rich.table import Table

        table = Table(title=f"{directory}: {sum(report.problems.values()):,} problems")
        table.add_column("check")
        table.add_column("count", justify="right")
        table.add_column("examples")
        for kind, count in report.problems.most_common():
            table.add_row(kind, f"{count:,}", "\n".join(report.examples[kind]))
        console.print(table)
        raise typer.Exit(1)


def _validate_lake(console: Console, directory: Path, as_json: bool, quiet: bool) -> None:
    """A dataset written as the data lake alone (`generate --format datalake`): its files, parts
    and row counts, and the answer key recomputed by the README's SQL from the newest folder."""
    import orjson

    from generator.datalake.check import check_answer_key, check_datalake
    from generator.dataset.reader import DatasetError

    path = directory / "manifest.json"
    try:
        manifest = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing (not a finished dataset)") from None
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    lake = directory / "datalake"
    problems = check_datalake(lake, manifest)
    if not problems:
        newest = sorted(p for p in lake.iterdir() if p.is_dir())[-1]
        problems = check_answer_key(newest, manifest)
    if as_json:
        doc = {
            "ok": not problems,
            "events": manifest.get("events", 0),
            "problems": {"datalake": len(problems)} if problems else {},
            "examples": {"datalake": problems[:5]} if problems else {},
        }
        print(orjson.dumps(doc).decode())
    elif not quiet:
        for problem in problems:
            console.print(f"[red]data lake:[/] {problem}", highlight=False, markup=False)
        if not problems:
            console.print(
                f"[green]valid[/]: data lake of {manifest.get('events', 0):,} events; files, "
                "parts and row counts agree, and its SQL gives the manifest's answer key"
            )
    if problems:
        raise typer.Exit(1)
