"""The stop signals of the file commands (SIGINT, SIGTERM): recorded, raised, and raised again.

Imports nothing heavy: `run` installs the handler before the CLI's own imports, so a Ctrl-C
while numpy, pydantic and typer load ends the process quietly with 130 like any other.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

__all__ = ["STOP_WORDS", "catch_stop_signals", "checked", "raise_if_stopped", "stopped"]

STOP_WORDS = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 143)}

# The stop signal received, so that a KeyboardInterrupt swallowed on its way up (a C extension
# that clears the errors of what it calls, a finaliser, a library's `except`) can neither end
# the run as a success nor let it carry on: `raise_if_stopped` raises it again.
_stopped: int | None = None


def _stop(signum: int, frame: FrameType | None) -> None:
    global _stopped
    _stopped = signum
    raise KeyboardInterrupt  # unwinds like Ctrl-C: workers ended, files closed


def catch_stop_signals() -> None:
    for signum in STOP_WORDS:
        signal.signal(signum, _stop)


def stopped() -> tuple[str, int] | None:
    """What to say and the exit code, once a stop signal came; else None."""
    if _stopped is None:
        return None
    return STOP_WORDS[signal.Signals(_stopped)]


def raise_if_stopped() -> None:
    """Raise KeyboardInterrupt again if a stop signal came (its first raise may be lost)."""
    if _stopped is not None:
        raise KeyboardInterrupt


def checked(progress: Callable[[str, int, int], None]) -> Callable[[str, int, int], None]:
    """A progress callback that first stops the run if a stop signal came: called at every
    block and chunk, it bounds how far a run goes after a lost KeyboardInterrupt."""

    def update(phase: str, done: int, total: int) -> None:
        raise_if_stopped()
        progress(phase, done, total)

    return update
