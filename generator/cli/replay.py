"""The `cdpsim replay` command (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from generator.errors import CdpsimError


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def _replay() -> None:
        """Not built yet."""
        raise CdpsimError("`cdpsim replay` is not built yet", code=2)
