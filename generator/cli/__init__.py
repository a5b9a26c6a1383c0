"""The `cdpsim` command: thin; each sub-command module parses its flags and calls the package."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import typer
from rich.console import Console

from generator import __version__
from generator.cli import demo, export, generate, info, load, replay, report, serve, validate
from generator.errors import CdpsimError, ProfileError

__all__ = ["app", "main", "run"]

# Commands that only read and write files: once they return, nothing is left to clean up.
_FILE_COMMANDS = frozenset({"generate", "merge", "validate", "export"})

app = typer.Typer(
    name="cdpsim",
    help="Simulate a Sitecore CDP tenant's traffic: fixture datasets, load tests, demo seeding.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

for module in (generate, export, validate, serve, load, replay, demo, report, info):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        print(f"cdpsim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Simulate a Sitecore CDP tenant's traffic."""


# The stop signal a file command received (set by `_stop`), so that a KeyboardInterrupt
# swallowed on the way up (a finaliser, a library's `except`) cannot end the run as a success.
_stopped: int | None = None
_STOP_WORDS = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 143)}


def _stop(signum: int, frame: FrameType | None) -> None:
    global _stopped
    _stopped = signum
    raise KeyboardInterrupt  # unwinds like Ctrl-C: workers ended, files closed


def _catch_stop_signals() -> None:
    for signum in _STOP_WORDS:
        signal.signal(signum, _stop)


def _stopped_code(err: Console) -> int | None:
    if _stopped is None:
        return None
    word, code = _STOP_WORDS[signal.Signals(_stopped)]
    err.print(word)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors become a readable message and an exit code."""
    err = Console(stderr=True, soft_wrap=True)
    code = _main(argv, err)
    stopped = _stopped_code(err)
    return code if stopped is None else stopped


def _main(argv: list[str] | None, err: Console) -> int:
    try:
        # Without standalone mode click hands back the code of a typer.Exit instead of exiting.
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int):
            if code == 130 and _stopped is None:  # typer's answer to Ctrl-C
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
        if _stopped is None:
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


def run() -> None:
    """The `cdpsim` console script: `main`, then exit. After a file command the interpreter's
    own teardown (freeing every module and array one by one, some 50 ms after a default
    `generate`) is skipped: its files are closed and its workers gone, and the OS takes back
    the memory at once. Other commands (servers, Locust) exit the ordinary way."""
    file_command = len(sys.argv) > 1 and sys.argv[1] in _FILE_COMMANDS
    if file_command:
        # Servers and Locust handle their own signals; file commands stop on either.
        _catch_stop_signals()
    code = main()
    if file_command:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
