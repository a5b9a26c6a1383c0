"""The `cdpsim generate` command (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from generator.errors import CdpsimError


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def _generate() -> None:
        """Not built yet."""
        raise CdpsimError("`cdpsim generate` is not built yet", code=2)
