"""The target of a load run: checking its URL (loopback unless allowed) and that it answers."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from generator.errors import CdpsimError

__all__ = ["Target", "check_reachable", "parse_target"]

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # scheme://host[:port], no trailing slash
    host: str
    port: int
    loopback: bool


def parse_target(url: str, *, allow_remote: bool) -> Target:
    """Validate `--host`; a host that is not loopback needs `allow_remote`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CdpsimError(f"--host {url!r}: give a URL such as http://127.0.0.1:8080", code=2)
    if parts.path not in ("", "/") or parts.query:
        raise CdpsimError(
            f"--host {url!r}: give the base URL only (the scenarios add the API paths)", code=2
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise CdpsimError(
            f"--host {url!r}: the port is not a number from 1 to 65535", code=2
        ) from None
    host = parts.hostname
    loopback = _is_loopback(host)
    if not loopback and not allow_remote:
        raise CdpsimError(
            f"--host {url!r} is not a loopback address; a load test sends a lot of traffic, so "
            "pointing it at another machine needs --allow-remote",
            code=2,
        )
    return Target(url=f"{parts.scheme}://{parts.netloc}", host=host, port=port, loopback=loopback)


def _is_loopback(host: str) -> bool:
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it could resolve anywhere, so it is not taken as local


def check_reachable(target: Target, timeout: float = 5.0) -> None:
    """Fail early and plainly if nothing listens at the target."""
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout):
            return
    except ConnectionRefusedError:
        problem = "refused the connection (is the server running, on that port?)"
    except TimeoutError:
        problem = f"did not accept a connection within {timeout:g}s"
    except socket.gaierror as exc:
        problem = f"cannot be resolved ({exc.strerror})"
    except OSError as exc:
        problem = f"cannot be reached ({exc.strerror or exc})"
    raise CdpsimError(f"target {target.url} {problem}; no load was sent", code=4)
