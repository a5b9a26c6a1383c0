"""A rich progress bar with events/s for long commands, shown only on a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(console: Console) -> Iterator[Callable[[str, int, int], None]]:
    """Yields update(phase, done, total); a no-op when output is not a terminal, or quiet."""
    if console.quiet or not console.is_terminal:
        yield lambda phase, done, total: None
        return
    # Imported only when a bar is drawn: a run into a pipe or a file never needs them.
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        Task,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class _Rate(ProgressColumn):
        """Events per second, over rich's recent window."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:>10,.0f} events/s" if speed else " " * 19, style="cyan")

    with Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        TextColumn("{task.completed:>12,.0f} / {task.total:,.0f}"),
        _Rate(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done, total=total)

        yield update
