"""The replay target: a Stream API base URL, loopback unless the user allows a remote one."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from generator.errors import CdpsimError

__all__ = ["Target", "TargetError"]


class TargetError(CdpsimError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code=1)


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    host: str
    port: int
    tls: bool
    base_path: str

    @classmethod
    def parse(cls, url: str, *, allow_remote: bool = False) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetError(f"--target {url!r}: expected a URL like http://127.0.0.1:8080")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise TargetError(f"--target {url!r}: bad port") from None
        target = cls(
            url=url.rstrip("/"),
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "https",
            base_path=parts.path.rstrip("/"),
        )
        if not allow_remote and not target.is_loopback():
            raise TargetError(
                f"--target {target.url} is not on this machine; replaying into a remote "
                "environment needs --allow-remote"
            )
        return target

    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError:
            return False
        # A name counts as local only if every address it resolves to is loopback.
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)

    def probe(self, timeout: float = 3.0) -> None:
        """Fail early, before anything is sent, when nothing listens at the target."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise TargetError(f"cannot reach the target {self.url}: {reason}") from None
