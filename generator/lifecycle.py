"""Child processes that end with their parent, however the parent ends (SIGKILL included)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["PARENT_PID_ENV", "child_env", "die_with_parent", "popen_child"]

# The launcher's pid, handed to the child: prctl cannot tell a child that its parent died
# before the child asked to be told, but a getppid() that no longer matches can.
PARENT_PID_ENV = "CDPSIM_PARENT_PID"
_PR_SET_PDEATHSIG = 1
_POLL_S = 0.5


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child that calls `die_with_parent`: names this process."""
    env = dict(os.environ if base is None else base)
    env[PARENT_PID_ENV] = str(os.getpid())
    return env


def popen_child(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen` for a child that will call `die_with_parent`. Call it from the main
    thread (or one that outlives the child): Linux signals the child when the *thread* that
    forked it ends, not the process."""
    kwargs["env"] = child_env(kwargs.get("env"))
    return subprocess.Popen(args, **kwargs)


def die_with_parent(parent: int | None = None) -> None:
    """Ask for SIGTERM when the parent ends; exit at once if it already has. `parent` is the
    expected parent pid (default: the launcher's, from the environment)."""
    if parent is None:
        named = os.environ.get(PARENT_PID_ENV, "")
        parent = int(named) if named.isdigit() else None
    # Our own children must not mistake us for the launcher named in the inherited environment.
    os.environ.pop(PARENT_PID_ENV, None)
    if parent is None:
        parent = os.getppid()
    if not _set_pdeathsig():
        threading.Thread(target=_watch, args=(parent,), name="die-with-parent", daemon=True).start()
    if os.getppid() != parent:
        # The parent ended before prctl took hold (we were reparented): nobody will signal us.
        os._exit(143)


def _set_pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    # Where prctl is missing: poll. A parent that ended leaves us to another (init or a reaper).
    while os.getppid() == parent:
        time.sleep(_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)


def _main(argv: list[str]) -> int:
    """`python -m generator.lifecycle MODULE ARGS`: run MODULE as `python -m MODULE ARGS` would,
    after `die_with_parent` (for programs we do not own, such as Locust)."""
    if not argv:
        print("usage: python -m generator.lifecycle MODULE [ARGS...]", file=sys.stderr)
        return 2
    die_with_parent()
    import runpy

    sys.argv = [argv[0], *argv[1:]]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
