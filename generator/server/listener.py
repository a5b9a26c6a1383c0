"""Runs the app under uvicorn (httptools, uvloop) until SIGINT or SIGTERM, then drains."""

from __future__ import annotations

import socket
import sqlite3
import sys
from types import FrameType

import uvicorn

from generator.errors import CdpsimError
from generator.server.app import ServerConfig, StreamApp

__all__ = ["serve"]


def serve(config: ServerConfig) -> None:
    """Serve until a signal; uvicorn waits for in-flight requests, then the ledger closes."""
    _check_port_free(config.host, config.port)
    # The ledger's writer thread needs the GIL back after every SQLite call; by default the busy
    # event loop would keep it for up to 5 ms each time, stretching every group commit.
    sys.setswitchinterval(0.001)
    app = StreamApp(config)
    try:
        app.ledger.open()
    except (OSError, sqlite3.Error) as exc:
        raise CdpsimError(f"cannot open the ledger {config.db_path}: {exc}", code=1) from None
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            date_header=False,
            backlog=4096,
            timeout_keep_alive=30,
        )
    )
    server.run()
    if not server.started:
        raise CdpsimError("the server did not start (see the messages above)", code=1)


class _Server(uvicorn.Server):
    """uvicorn re-raises a handled SIGTERM after shutdown; a drained server exits 0 instead."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def _check_port_free(host: str, port: int) -> None:
    """A readable error for a taken port, before the ledger is opened."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CdpsimError(f"cannot listen on {host}:{port}: {exc.strerror}", code=1) from None
