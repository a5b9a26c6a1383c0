"""Sessions as CDP keeps them: per browser and channel, closed by inactivity or FORCE_CLOSE."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Session", "SessionBook"]


@dataclass(slots=True)
class Session:
    ref: str
    last_ms: int
    closed: bool = False

    def is_open(self, now_ms: int, timeout_ms: int) -> bool:
        return not self.closed and now_ms - self.last_ms <= timeout_ms


class SessionBook:
    """The current session of every (browser, channel); `new_ref` makes a session ref."""

    def __init__(self, new_ref: Callable[[], str]) -> None:
        self._new_ref = new_ref
        self._current: dict[tuple[str, str], Session] = {}
        self.opened = 0

    def touch(
        self, browser_ref: str, channel: str, now_ms: int, timeout_ms: int, *, close: bool = False
    ) -> str:
        """The session an event at `now_ms` lands in, opening a new one when the last is over.

        `close` (a FORCE_CLOSE event) ends the session after this event, which still belongs to it.
        """
        key = (browser_ref, channel)
        session = self._current.get(key)
        if session is None or not session.is_open(now_ms, timeout_ms):
            session = Session(self._new_ref(), now_ms)
            self._current[key] = session
            self.opened += 1
        else:
            session.last_ms = max(session.last_ms, now_ms)
        if close:
            session.closed = True
        return session.ref

    def restore(
        self, browser_ref: str, channel: str, session_ref: str, last_ms: int, closed: bool
    ) -> None:
        """Put back a session read from the ledger after a restart (counted elsewhere)."""
        self._current[(browser_ref, channel)] = Session(session_ref, last_ms, closed)
