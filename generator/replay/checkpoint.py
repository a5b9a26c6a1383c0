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
    line in `done`. Lines up to `horizon` may have been sent: the horizon is saved before a
    line past it is sent, which bounds the duplicates a crash can cause at a target that
    ignores idempotency keys.
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
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: checkpoint is incomplete ({exc!r})") from None

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
