"""The embedded Stream API target: an ASGI app over a SQLite ledger, and a launcher for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from generator.server.app import ServerConfig, StreamApp
    from generator.server.process import EmbeddedServer

__all__ = ["EmbeddedServer", "ServerConfig", "StreamApp"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that `cdpsim` (which lists `serve`) starts without the server.
    if name == "EmbeddedServer":
        from generator.server.process import EmbeddedServer

        return EmbeddedServer
    if name in ("ServerConfig", "StreamApp"):
        from generator.server import app

        return getattr(app, name)
    raise AttributeError(name)
