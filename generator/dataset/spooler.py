"""Writes handed to one background thread, in order, so the kernel's copying overlaps rendering."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["Spooler"]

DEPTH = 2  # writes that may wait their turn: bounds the memory held by the queue


class Spooler:
    """Runs the calls it is given (file writes, compression: both release the GIL) one after
    another on a thread of its own. A write to the page cache costs about as much as rendering
    the text did; on a thread it runs while the next slice is rendered. `submit` blocks once
    DEPTH calls are waiting, so memory stays bounded. The first error is raised again from the
    next `submit` and from `drain`; the calls after it are skipped."""

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue(
            DEPTH
        )
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise_error()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cdpsim-spooler", daemon=True)
            self._thread.start()
        self._calls.put((fn, args))

    def drain(self) -> None:
        """Wait until every call submitted so far has run; raise the first error, if any."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None
        self._raise_error()

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            if self._error is None:
                try:
                    call[0](*call[1])
                except BaseException as exc:  # handed to the submitting thread
                    self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Spooler:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.drain()
            return
        # Already failing: stop the thread, but let the first error stand.
        with contextlib.suppress(BaseException):
            self.drain()
