"""Where each chunk goes when worker processes render them: straight into place in the output."""

from __future__ import annotations

import os
from multiprocessing.context import ForkContext
from pathlib import Path
from typing import Any

__all__ = ["ChunkFailed", "Placement"]

_UNKNOWN, _FAILED = -1, -2  # a chunk's size, before it is known / when it never will be
_POLL_S = 1.0  # how often a waiting worker checks that its parent still lives


class ChunkFailed(RuntimeError):
    """An earlier chunk failed, so this one has no place: the run stops with that chunk's error."""


class Placement:
    """The byte size of every chunk, shared by the workers of one run.

    A worker renders its chunk, publishes the size, waits for the sizes of the chunks before it,
    and writes at their sum: no chunk is copied a second time (by a parent appending chunk
    files, as it would otherwise). Chunks are handed out in order, so the first chunk without
    a size is always being rendered by someone, and the waits end."""

    def __init__(self, ctx: ForkContext, path: Path, chunks: int) -> None:
        self.path = path
        self._sizes: Any = ctx.RawArray("q", [_UNKNOWN] * chunks)
        self._changed = ctx.Condition()
        self._parent = os.getpid()

    def claim(self, k: int, size: int) -> int:
        """Publish chunk k's size; the offset it starts at, once every earlier size is known."""
        with self._changed:
            self._sizes[k] = size
            self._changed.notify_all()
            while True:
                before = self._sizes[:k]
                if _FAILED in before:
                    raise ChunkFailed(f"chunk {k}: an earlier chunk failed")
                if _UNKNOWN not in before:
                    return int(sum(before))
                # The parent gone (killed), nobody will ever publish: stop rather than hang.
                if os.getppid() != self._parent:
                    raise ChunkFailed(f"chunk {k}: the parent process is gone")
                self._changed.wait(_POLL_S)

    def fail(self, k: int) -> None:
        """Chunk k will never have a size: wake the chunks waiting on it, to stop."""
        with self._changed:
            self._sizes[k] = _FAILED
            self._changed.notify_all()

    def write(self, texts: list[bytes], offset: int) -> None:
        """Write texts one after another from `offset`."""
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for text in texts:
                view = memoryview(text)
                while view:  # a regular file may take a large write in pieces
                    n = os.pwrite(fd, view, offset)
                    view, offset = view[n:], offset + n
        finally:
            os.close(fd)
