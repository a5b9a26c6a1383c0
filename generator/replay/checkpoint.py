"""The durable replay checkpoint: which events are finished, the browser map, and the totals."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from generator.errors import CdpsimError
from generator.replay.totals import ReplayTotals

__all__ = ["Checkpoint", "CheckpointError", "default_state_path"]

FORMAT = "cdpsim-replay-checkpoint/1"


class CheckpointError(CdpsimError):
    """A checkpoint that cannot be used for this replay."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=1)


def default_state_path(dataset_dir: str | Path) -> Path:
    """Beside the dataset, not inside it, so the dataset directory stays as generated."""
    d = Path(dataset_dir).resolve()
    return d.parent / f"{d.name}.replay-state.json"


@dataclass
class Checkpoint:
    """Replay progress. Events are numbered by their line in the events file.

    Every line up to `watermark` is finished (acknowledged or failed for good), and so is every
    line in `done`; `failed` holds the finished lines that failed for good, so that
    `--retry-failed` can send them again. Lines up to `horizon` may have been sent: the horizon
    is saved before a line past it is sent, which bounds the duplicates a crash can cause at a
    target that ignores idempotency keys (the journal beside the checkpoint narrows that bound
    to the lines really started). `sessions` holds, per (dataset browser, channel), the dataset
    session last sent there that the target may still hold open, and when (epoch seconds).
    """

    dataset: str
    target: str
    total: int
    watermark: int = 0
    done: set[int] = field(default_factory=set)
    horizon: int = 0
    browsers: dict[str, str] = field(default_factory=dict)
    failed_browsers: dict[str, str] = field(default_factory=dict)
    tally: ReplayTotals = field(default_factory=ReplayTotals)
    failed: dict[int, str] = field(default_factory=dict)  # line -> why it failed for good
    sessions: dict[str, tuple[str, float, str]] = field(default_factory=dict)
    generation: int = 0  # saves so far: ties the journal of started lines to this checkpoint

    @property
    def finished(self) -> int:
        return self.watermark + len(self.done)

    @property
    def complete(self) -> bool:
        return self.finished >= self.total

    def is_done(self, seq: int) -> bool:
        return seq <= self.watermark or seq in self.done

    def mark_done(self, seq: int) -> None:
        if seq == self.watermark + 1:
            self.watermark = seq
            done = self.done
            while self.watermark + 1 in done:
                self.watermark += 1
                done.discard(self.watermark)
        elif seq > self.watermark:
            self.done.add(seq)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "format": FORMAT,
                "dataset": self.dataset,
                "target": self.target,
                "total": self.total,
                "watermark": self.watermark,
                "done": sorted(self.done),
                "horizon": self.horizon,
                "browsers": self.browsers,
                "failedBrowsers": self.failed_browsers,
                "tally": self.tally.to_json(),
                "failed": _by_reason(self.failed),
                "sessions": self.sessions,
                "generation": self.generation,
            }
        )

    def save(self, path: Path) -> None:
        """Write atomically and durably: a temporary file, fsync, rename, fsync the directory."""
        data = self.to_bytes()
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise CheckpointError(
                f"{path}: no checkpoint to resume from. Nothing was sent."
            ) from None
        except orjson.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: checkpoint is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a replay checkpoint (expected format {FORMAT})")
        try:
            return cls(
                dataset=str(data["dataset"]),
                target=str(data["target"]),
                total=int(data["total"]),
                watermark=int(data["watermark"]),
                done={int(s) for s in data["done"]},
                horizon=int(data["horizon"]),
                browsers=dict(data["browsers"]),
                failed_browsers=dict(data["failedBrowsers"]),
                tally=ReplayTotals.from_json(data["tally"]),
                # Absent from checkpoints written before failed lines and sessions were kept.
                failed=_from_reasons(data.get("failed", {})),
                sessions={
                    str(k): (str(v[0]), float(v[1]), str(v[2]))
                    for k, v in data.get("sessions", {}).items()
                },
                generation=int(data.get("generation", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: checkpoint is incomplete ({exc!r})") from None

    def fail(self, *, seq: int, ref: str, kind: str, reason: str) -> None:
        """The line failed for good: counted, and kept so that --retry-failed can send it."""
        before = self.failed.get(seq)
        if before is not None:  # failed again, on a retry
            self.tally.unfail(seq, before)
        self.failed[seq] = reason
        self.tally.fail(seq=seq, ref=ref, kind=kind, reason=reason)

    def succeed(self, seq: int) -> None:
        """A line sent again with --retry-failed that went through this time."""
        before = self.failed.pop(seq, None)
        if before is not None:
            self.tally.unfail(seq, before)

    def check_matches(self, path: Path, dataset: str, target: str) -> None:
        """Refuse to resume a checkpoint made for another dataset or another target."""
        if self.dataset != dataset:
            raise CheckpointError(
                f"{path}: this checkpoint belongs to another dataset (or the dataset changed "
                "since). Nothing was sent; use another --state path to replay this dataset."
            )
        if self.target != target:
            raise CheckpointError(
                f"{path}: this checkpoint was made replaying to {self.target}, not {target}; "
                "its browser ids are only valid there. Nothing was sent."
            )


def _by_reason(failed: dict[int, str]) -> dict[str, list[list[int]]]:
    """Failed lines grouped by reason, each group as sorted [first, last] runs: a target that
    refuses everything fails whole stretches, which stay a few numbers long."""
    groups: dict[str, list[list[int]]] = {}
    for line in sorted(failed):
        runs = groups.setdefault(failed[line], [])
        if runs and runs[-1][1] == line - 1:
            runs[-1][1] = line
        else:
            runs.append([line, line])
    return groups


def _from_reasons(groups: dict[str, list[list[int]]]) -> dict[int, str]:
    return {
        line: str(reason)
        for reason, runs in groups.items()
        for first, last in runs
        for line in range(int(first), int(last) + 1)
    }
