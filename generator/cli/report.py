"""The `cdpsim report` command: a dataset or a load run as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from generator.errors import CdpsimError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("report")
    def _report(
        directory: Path = typer.Argument(
            ...,
            help="A dataset directory (cdpsim generate) or a load report (cdpsim load --report).",
        ),
        out: Path | None = typer.Option(
            None, "--out", help="Where to write the page (default DIR/cdpsim-report.html)."
        ),
        open_it: bool = typer.Option(False, "--open", help="Open the page in a browser."),
    ) -> None:
        """Write one HTML page that opens offline: traffic, behaviour, experiments and realism of
        a dataset, or a load run's throughput, latency, status codes and reconciliation."""
        from generator.report.build import build_report

        if not directory.is_dir():
            raise CdpsimError(f"{directory}: not a directory", 1)
        console = Console(stderr=True)
        path, figures = build_report(directory, out)
        what = "load run" if figures["kind"] == "load" else "dataset"
        console.print(f"[green]wrote[/] {what} report {path}", highlight=False)
        if open_it:
            import webbrowser

            webbrowser.open(path.resolve().as_uri())
