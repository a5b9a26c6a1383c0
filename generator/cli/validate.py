"""The `cdpsim validate` command (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from generator.errors import CdpsimError


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def _validate() -> None:
        """Not built yet."""
        raise CdpsimError("`cdpsim validate` is not built yet", code=2)
