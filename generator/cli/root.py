"""The command tree (the typer app and every sub-command) and `main`, which runs it and turns
user errors into a readable message and an exit code."""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Any

import typer
from rich.console import Console

from generator import __version__
from generator.cli.help import tidy
from generator.cli.stopping import stopped
from generator.errors import CdpsimError, ProfileError

__all__ = ["build_app", "command", "main"]  # and `app`, built when asked for

if os.environ.get("CDPSIM_TEST_PAUSE_AT") == "import":
    # For tests of a Ctrl-C while the CLI's modules load (typer, rich and the package are in).
    print("cdpsim-test-pause import", file=sys.stderr, flush=True)
    time.sleep(60)

# Each command's module, by the names of the commands it registers. A run registers only the
# module of the command it was asked for: the others' imports (Locust's options, the server)
# were some 50 ms of a default `generate`'s second. Help, an unknown name or no name: all.
_MODULES = {
    "generate": "generate",
    "merge": "generate",
    "export": "export",
    "validate": "validate",
    "serve": "serve",
    "load": "load",
    "replay": "replay",
    "demo": "demo",
    "report": "report",
    "info": "info",
}


_HELP = "Simulate a Sitecore CDP tenant's traffic: fixture datasets, load tests, demo seeding."


def _version(value: bool) -> None:
    if value:
        print(f"cdpsim {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Simulate a Sitecore CDP tenant's traffic."""


def build_app(only: str | None = None) -> typer.Typer:
    """The typer app: every command, or only those of the module that registers `only`."""
    app = typer.Typer(
        name="cdpsim",
        help=_HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        # Sub-commands inherit it from the root context: `cdpsim generate -h` too.
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    names = dict.fromkeys(_MODULES.values()) if only is None else [_MODULES[only]]
    for name in names:
        importlib.import_module(f"generator.cli.{name}").register(app)
    app.callback()(_root)
    return app


def command(only: str | None = None) -> Any:
    """The click command tree typer builds from the app, its help tidied (`help.tidy`)."""
    return tidy(typer.main.get_command(build_app(only)))


def __getattr__(name: str) -> Any:
    """`app`: the whole typer app, built when first asked for."""
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _stopped_code(err: Console) -> int | None:
    said = stopped()
    if said is None:
        return None
    err.print(said[0])
    return said[1]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors become a readable message and an exit code."""
    err = Console(stderr=True, soft_wrap=True)
    code = _main(argv, err)
    said = _stopped_code(err)
    return code if said is None else said


def _main(argv: list[str] | None, err: Console) -> int:
    try:
        # Without standalone mode click hands back the code of a typer.Exit instead of exiting.
        args = sys.argv[1:] if argv is None else argv
        only = args[0] if args and args[0] in _MODULES else None
        code = command(only)(args=args, standalone_mode=False)
        if isinstance(code, int):
            if code == 130 and stopped() is None:  # typer's answer to Ctrl-C
                err.print("interrupted")
            return code
    except ProfileError as exc:
        err.print("[bold red]profile error[/]", highlight=False)
        for problem in exc.problems:
            err.print(f"  {exc.source}: {problem}", highlight=False, markup=False)
        return 2
    except CdpsimError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return exc.code
    except OSError as exc:
        # The file system said no (a path that cannot be made, no space, no permission).
        where = f" {exc.filename}" if exc.filename else ""
        err.print(f"[bold red]error:[/]{where}: {exc.strerror or exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        if stopped() is None:
            err.print("interrupted")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err.print("aborted")
        return 1
    except Exception as exc:
        # Usage errors from the parser (typer vendors its own click): they know how to show
        # themselves. Anything else is a bug and keeps its traceback.
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            return int(exc.exit_code)  # type: ignore[attr-defined]
        raise
    return 0
