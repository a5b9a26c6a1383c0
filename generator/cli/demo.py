"""The `cdpsim demo` command: what `make demo` runs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def _demo(
        out: Path = typer.Option(Path("demo-out"), "--out", help="Where the demo writes."),
    ) -> None:
        """Generate the default tenant's week, validate it, and show the answer key."""
        from generator.demo import run_demo

        console = Console()
        if not console.is_terminal:  # piped or in CI: wide enough for the answer-key table
            console = Console(width=120)
        run_demo(out, console)
