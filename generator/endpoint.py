"""Network endpoints: one rule for what counts as loopback, one URL parser, one free-port helper,
and one way to say what a failed HTTP answer was."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import orjson

from generator.errors import CdpsimError
from generator.redaction import shorten, shown

__all__ = [
    "LOCAL_NAMES",
    "Endpoint",
    "EndpointError",
    "answer_reason",
    "free_port",
    "is_loopback",
    "parse_endpoint",
]

# Names that mean this machine on every system we run on. Any other name is not taken as local,
# whatever it resolves to today: resolution can change between the check and the traffic.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class EndpointError(CdpsimError):
    """A target URL that cannot be used, or nothing listening there."""


def is_loopback(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1) or one of the local names."""
    host = host.strip("[]")
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A checked base URL: scheme://host[:port][/base], no trailing slash."""

    url: str
    host: str
    port: int
    tls: bool
    base_path: str
    loopback: bool

    def check_reachable(self, *, timeout: float = 5.0, code: int = 4, what: str = "") -> None:
        """Fail early and plainly, before anything is sent, when nothing listens there."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout):
                return
        except ConnectionRefusedError:
            problem = "refused the connection (is the server running, on that port?)"
        except TimeoutError:
            problem = f"did not accept a connection within {timeout:g}s"
        except socket.gaierror as exc:
            problem = f"cannot be resolved ({exc.strerror})"
        except OSError as exc:
            problem = f"cannot be reached ({exc.strerror or exc})"
        raise EndpointError(f"cannot reach the target {self.url}: it {problem}{what}", code=code)


def parse_endpoint(
    url: str,
    *,
    option: str,
    allow_remote: bool,
    why_local: str,
    base_path: bool = False,
    code: int = 2,
) -> Endpoint:
    """Check a target URL given as `option`; a host that is not loopback needs `allow_remote`.

    `why_local` finishes the sentence that refuses a remote host; `base_path` allows a path
    prefix in front of the API paths (a proxy mounted under /cdp, say).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(
            f"{option} {url!r}: give a URL such as http://127.0.0.1:8080", code=code
        )
    if (parts.path not in ("", "/") and not base_path) or parts.query or parts.fragment:
        raise EndpointError(
            f"{option} {url!r}: give the base URL only (the API paths are added to it)", code=code
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise EndpointError(
            f"{option} {url!r}: the port is not a number from 1 to 65535", code=code
        ) from None
    host = parts.hostname
    loopback = is_loopback(host)
    if not loopback and not allow_remote:
        raise EndpointError(
            f"{option} {url!r} is not a loopback address; {why_local}, so pointing it at "
            "another machine needs --allow-remote",
            code=code,
        )
    path = parts.path.rstrip("/")
    return Endpoint(
        url=f"{parts.scheme}://{parts.netloc}{path}",
        host=host,
        port=port,
        tls=parts.scheme == "https",
        base_path=path,
        loopback=loopback,
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on `host` a moment ago (the caller binds it soon after)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def answer_reason(status: int, body: bytes, content_type: str = "") -> str:
    """A short, stable reason for a failed answer: the status, and the target's own message when
    it gave one in JSON; a page of HTML (a target that is no Stream API) is named, not dumped."""
    phrase = _phrase(status)
    message = ""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        found = data.get("error_msg") or data.get("message") or data.get("detail") or ""
        message = found if isinstance(found, str) else shown(found)
    elif body.strip():
        what = (content_type.split(";")[0].strip() or "no content type") if content_type else ""
        looks_html = body.lstrip()[:1] == b"<" or "html" in what
        message = (
            f"an HTML page ({what or 'text/html'}), not a Stream API answer"
            if looks_html
            else f"not JSON ({what or 'no content type'}): {body[:80].decode('utf-8', 'replace')}"
        )
    return shorten(f"{status} {phrase}: {message}" if message else f"{status} {phrase}", 160)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "(no standard name)"
