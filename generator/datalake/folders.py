"""Which snapshot folders an export has, and the midnight (UTC) each one holds history up to."""

from __future__ import annotations

import datetime as dt

from generator.errors import CdpsimError

__all__ = ["DAY_MS", "SNAPSHOTS", "day_of", "midnight_ms", "snapshot_dates"]

DAY_MS = 86_400_000
SNAPSHOTS = ("last", "daily")


def day_of(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date()


def midnight_ms(folder: str) -> int:
    """Folder D holds everything before D 00:00 UTC."""
    day = dt.date.fromisoformat(folder)
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def snapshot_dates(
    start_ms: int, end_ms: int, last_event_ms: int | None, counted: bool, snapshots: str
) -> list[str]:
    """The folders to write. The newest is the day after the window's last day, or, for a run
    cut at an event count (`counted`), the day after its last event: it holds everything.
    `daily` adds one per day from the day after the window's first day."""
    if snapshots not in SNAPSHOTS:
        raise CdpsimError(f"--snapshots {snapshots!r}: use last or daily", 2)
    one = dt.timedelta(days=1)
    if counted:
        final = day_of(last_event_ms if last_event_ms is not None else start_ms) + one
    else:
        final = day_of(max(start_ms, end_ms - 1)) + one
    if snapshots == "last":
        return [final.isoformat()]
    first = day_of(start_ms) + one
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((final - first).days + 1)]
