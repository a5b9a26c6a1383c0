"""The `cdpsim demo` command (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from generator.errors import CdpsimError


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def _demo() -> None:
        """Not built yet."""
        raise CdpsimError("`cdpsim demo` is not built yet", code=2)
