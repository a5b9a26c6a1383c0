"""Replay: a dataset sent to a Stream API endpoint at a controlled rate, resumable, exactly once."""

from __future__ import annotations

from generator.replay.checkpoint import Checkpoint, CheckpointError
from generator.replay.plan import ReplayPlan, ReplayStep
from generator.replay.run import ReplayOptions, replay
from generator.replay.totals import ReplayTotals

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ReplayOptions",
    "ReplayPlan",
    "ReplayStep",
    "ReplayTotals",
    "replay",
]
