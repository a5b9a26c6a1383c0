"""The `cdpsim serve` command: the embedded Stream API target (flags in server.command)."""

from __future__ import annotations

import typer

from generator.server.command import serve_command

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
