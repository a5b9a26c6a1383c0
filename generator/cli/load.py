"""The `cdpsim load` command (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from generator.errors import CdpsimError


def register(app: typer.Typer) -> None:
    @app.command("load")
    def _load() -> None:
        """Not built yet."""
        raise CdpsimError("`cdpsim load` is not built yet", code=2)
