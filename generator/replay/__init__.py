"""Replay: a dataset sent to a Stream API endpoint at a controlled rate, resumable, exactly once."""

from __future__ import annotations

from generator.replay.checkpoint import Checkpoint, CheckpointError
from generator.replay.plan import Plan, Step
from generator.replay.run import ReplayOptions, replay
from generator.replay.tally import Tally
from generator.replay.target import Target

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "Plan",
    "ReplayOptions",
    "Step",
    "Tally",
    "Target",
    "replay",
]
