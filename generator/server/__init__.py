"""The embedded Stream API target: an ASGI app over a SQLite ledger, and a launcher for it."""

from __future__ import annotations

from generator.server.app import ServerConfig, StreamApp
from generator.server.process import EmbeddedServer

__all__ = ["EmbeddedServer", "ServerConfig", "StreamApp"]
