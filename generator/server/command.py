"""The `cdpsim serve` flags, kept here so `python -m generator.server` needs no other command."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from generator.errors import CdpsimError, ProfileError
from generator.profile import DEFAULT_PROFILE, resolve_profile

__all__ = ["DEFAULT_PROFILE", "run_alone", "serve_command"]


def serve_command(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback unless allowed)."),
    port: int = typer.Option(8080, min=1, max=65535, help="Port to listen on."),
    db: Path = typer.Option(
        Path("cdpsim-ledger.sqlite3"), help="SQLite ledger file (WAL); reused across restarts."
    ),
    profile: Path = typer.Option(
        DEFAULT_PROFILE, help="Profile (YAML or bundled name) whose tenant it serves."
    ),
    fail_rate: float = typer.Option(
        0.0, min=0.0, max=1.0, help="Share of requests answered 503 with Retry-After."
    ),
    throttle_rps: float = typer.Option(
        0.0, min=0.0, help="Response 429 with Retry-After above this many requests/s (0: off)."
    ),
    latency_ms: float = typer.Option(
        0.0, min=0.0, help="Added delay per request in ms (uniform jitter of +-50%)."
    ),
    queue_limit: int = typer.Option(
        20_000, min=1, help="Events waiting for commit before new writes get 503."
    ),
    sync: str = typer.Option(
        "normal",
        help="SQLite synchronous mode: normal (an acknowledged event survives the server "
        "being killed) or full (also survives the machine losing power; slower).",
    ),
    seed: int | None = typer.Option(
        None, help="Seed the server's random source (refs, faults, decision times)."
    ),
    api_token: str | None = typer.Option(
        None,
        envvar="CDPSIM_API_TOKEN",
        help="Enable the Batch API with this token (Basic auth: client key and token).",
    ),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Permit a non-loopback --host."
    ),
) -> None:
    """Serve the Stream API (browser create, events, callFlows, ingest) over a ledger."""
    from generator.endpoint import is_loopback
    from generator.profile import load_profile
    from generator.server.app import ServerConfig
    from generator.server.listener import serve

    if not is_loopback(host) and not allow_remote:
        raise CdpsimError(
            f"--host {host} is not a loopback address; the embedded server has no "
            "authentication, so pass --allow-remote if you really mean to expose it",
            code=2,
        )
    if sync.lower() not in ("full", "normal"):
        raise CdpsimError(f"--sync {sync!r}: use normal or full", code=2)
    serve(
        ServerConfig(
            profile=load_profile(resolve_profile(profile)),
            db_path=db,
            host=host,
            port=port,
            fail_rate=fail_rate,
            throttle_rps=throttle_rps,
            latency_ms=latency_ms,
            queue_limit=queue_limit,
            synchronous=sync.upper(),
            seed=seed,
            api_token=api_token,
        )
    )


def run_alone(argv: list[str]) -> int:
    """`serve` as its own program, with the CLI's readable errors (no traceback)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(serve_command)
    try:
        app(args=argv, prog_name="cdpsim serve", standalone_mode=False)
    except ProfileError as exc:
        print("profile error", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {exc.source}: {problem}", file=sys.stderr)
        return 2
    except CdpsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        show = getattr(exc, "show", None)
        code = getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    return 0
