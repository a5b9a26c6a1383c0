"""The `cdpsim serve` command: the embedded Stream API target on loopback, with a SQLite ledger."""

from __future__ import annotations

from pathlib import Path

import typer

import generator
from generator.errors import CdpsimError
from generator.profile import load_profile

__all__ = ["DEFAULT_PROFILE", "register"]

DEFAULT_PROFILE = Path(generator.__file__).parent / "defaults" / "retail-ireland.yaml"


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def _serve(
        host: str = typer.Option(
            "127.0.0.1", help="Address to listen on (loopback only by default)."
        ),
        port: int = typer.Option(8080, min=1, max=65535, help="Port to listen on."),
        db: Path = typer.Option(
            Path("cdpsim-ledger.sqlite3"), help="SQLite ledger file (WAL); reused across restarts."
        ),
        profile: Path = typer.Option(
            DEFAULT_PROFILE,
            help="Profile whose tenant (client key, points of sale, flows) to serve.",
        ),
        fail_rate: float = typer.Option(
            0.0, min=0.0, max=1.0, help="Share of requests answered 503 with Retry-After."
        ),
        throttle_rps: float = typer.Option(
            0.0, min=0.0, help="Answer 429 with Retry-After above this many requests/s (0: off)."
        ),
        latency_ms: float = typer.Option(
            0.0, min=0.0, help="Added delay per request in ms (uniform jitter of +-50%)."
        ),
        queue_limit: int = typer.Option(
            20_000, min=1, help="Events waiting for commit before new writes get 503."
        ),
        sync: str = typer.Option(
            "full",
            help="SQLite synchronous mode: full (survives power loss) or normal "
            "(survives a process crash; faster on slow disks).",
        ),
        seed: int | None = typer.Option(
            None, help="Seed the server's random source (refs, faults, decision times)."
        ),
        allow_remote: bool = typer.Option(
            False, "--allow-remote", help="Permit a non-loopback --host."
        ),
    ) -> None:
        """Serve the Stream API (browser create, events, callFlows, ingest) over a ledger."""
        from generator.server.app import ServerConfig
        from generator.server.listener import is_loopback, serve

        if not is_loopback(host) and not allow_remote:
            raise CdpsimError(
                f"--host {host} is not a loopback address; the embedded server has no "
                "authentication, so pass --allow-remote if you really mean to expose it",
                code=2,
            )
        if sync.lower() not in ("full", "normal"):
            raise CdpsimError(f"--sync {sync!r}: use full or normal", code=2)
        serve(
            ServerConfig(
                profile=load_profile(profile),
                db_path=db,
                host=host,
                port=port,
                fail_rate=fail_rate,
                throttle_rps=throttle_rps,
                latency_ms=latency_ms,
                queue_limit=queue_limit,
                synchronous=sync.upper(),
                seed=seed,
            )
        )
