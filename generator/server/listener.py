"""Runs the app under uvicorn (httptools, uvloop) until SIGINT or SIGTERM, then drains."""

from __future__ import annotations

import socket
import sqlite3
import sys
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from generator.errors import CdpsimError
from generator.server.answers import error
from generator.server.app import ServerConfig, StreamApp
from generator.server.ledger import LedgerError

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
    except LedgerError as exc:
        raise CdpsimError(str(exc), code=1) from None
    except (OSError, sqlite3.Error) as exc:
        raise CdpsimError(f"cannot open the ledger {config.db_path}: {exc}", code=1) from None
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            loop="uvloop",
            http=_JsonErrorsProtocol,
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


# httptools keeps URL offsets in 16 bits, so a longer request line cannot be parsed at all.
_URL_LIMIT = 65_535


class _JsonErrorsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, answering a request it cannot parse as every other failure
    is answered: JSON in the documented error shape, not a plain-text line."""

    def send_400_response(self, msg: str) -> None:
        if len(getattr(self, "url", b"")) > _URL_LIMIT:  # set once a request line begins
            answer = error(
                400,
                "url_too_long",
                f"the URL (path and query string) is over {_URL_LIMIT:,} bytes; send a large "
                "message in the body of the POST form",
            )
        else:
            answer = error(400, "bad_request", "not a well-formed HTTP/1.1 request")
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in answer.raw_headers()]
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + answer.body)
        self.transport.close()


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
