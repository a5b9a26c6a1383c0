"""The `cdpsim` command: thin; each sub-command module parses its flags and calls the package.

This module stays light (the standard library only): `run` is the console script, and it must
be able to answer a Ctrl-C before typer, rich, numpy and pydantic are imported (`root` holds
the command tree and imports them).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["app", "loading_modules", "main", "run"]

# Commands that only read and write files: once they return, nothing is left to clean up.
FILE_COMMANDS = frozenset({"generate", "merge", "validate", "export"})


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors become a readable message and an exit code."""
    from generator.cli.root import main as root_main

    return root_main(argv)


# Set by `run` for a file command: this process is the console script's own, to tune.
_own_process = False


@contextlib.contextmanager
def loading_modules() -> Iterator[None]:
    """While a command's modules load: they make some hundred thousand objects and no garbage,
    and the cyclic collector would walk them again and again (some 60 ms of a default
    generate's second). Loaded, they are frozen out of its reach. Only in the console script's
    own process (`run`), never in a caller's that calls `main`."""
    if not _own_process or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def run() -> None:
    """The `cdpsim` console script: `main`, then exit. After a file command the interpreter's
    own teardown (freeing every module and array one by one, some 50 ms after a default
    `generate`) is skipped: its files are closed and its workers gone, and the OS takes back
    the memory at once. Other commands (servers, Locust) exit the ordinary way."""
    global _own_process
    file_command = len(sys.argv) > 1 and sys.argv[1] in FILE_COMMANDS
    _own_process = file_command
    try:
        if file_command:
            from generator.cli.stopping import catch_stop_signals

            # Servers and Locust handle their own signals; file commands stop on either.
            catch_stop_signals()
        with loading_modules():
            from generator.cli.root import main as root_main
    except KeyboardInterrupt:
        # Ctrl-C while the CLI's modules load: nothing started, nothing to clean up.
        _leave(_stop_code(), file_command)
    _leave(root_main(), file_command)


def _stop_code() -> int:
    try:
        from generator.cli.stopping import stopped

        word, code = stopped() or ("interrupted", 130)
    except ImportError:  # the signal came while that very module loaded
        word, code = "interrupted", 130
    print(word, file=sys.stderr)
    return code


def _leave(code: int, file_command: bool) -> None:
    if file_command:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def __getattr__(name: str) -> Any:
    """`generator.cli.app`, the typer app, imported when first asked for."""
    if name == "app":
        from generator.cli.root import app

        return app
    raise AttributeError(f"module 'generator.cli' has no attribute {name!r}")
