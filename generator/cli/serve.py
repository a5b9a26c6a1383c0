"""The `cdpsim serve` command (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from generator.errors import CdpsimError


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def _serve() -> None:
        """Not built yet."""
        raise CdpsimError("`cdpsim serve` is not built yet", code=2)
