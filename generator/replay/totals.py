"""The replay's running totals: what was sent, acknowledged, retried, failed, possibly doubled."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["MAX_FAILURE_SAMPLES", "ReplayTotals"]

# Failures are counted by reason without limit; only the first few are kept in full.
MAX_FAILURE_SAMPLES = 50


@dataclass
class ReplayTotals:
    """Totals over every run of one replay (they live in the checkpoint, so a resume adds up)."""

    sent: int = 0  # requests sent at least once (events and browser creates)
    acknowledged: int = 0  # requests the target answered 2xx
    retried: int = 0  # extra attempts after a timeout, connection error, 429 or 5xx
    failed: int = 0  # events given up for good (a 4xx other than 429, or their browser's create)
    possible_duplicates: int = 0  # sends that a target ignoring idempotency keys may store twice
    # callFlows acknowledged without a flow run (the target put its guest outside the allocation)
    flow_runs_not_recorded: int = 0
    # FORCE_CLOSE requests sent to end a dataset session at the target (--sessions close); not
    # events of the dataset, so not in acknowledged_by_type.
    sessions_closed: int = 0
    session_closes_failed: int = 0  # refused: that session may merge with the next at the target
    acknowledged_by_type: dict[str, int] = field(default_factory=dict)
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    failure_samples: list[dict[str, Any]] = field(default_factory=list)
    runs: int = 0

    def ack(self, kind: str) -> None:
        self.acknowledged += 1
        self.acknowledged_by_type[kind] = self.acknowledged_by_type.get(kind, 0) + 1

    def fail(self, *, seq: int, ref: str, kind: str, reason: str) -> None:
        self.failed += 1
        self.failed_by_reason[reason] = self.failed_by_reason.get(reason, 0) + 1
        if len(self.failure_samples) < MAX_FAILURE_SAMPLES:
            self.failure_samples.append({"line": seq, "ref": ref, "type": kind, "reason": reason})

    def unfail(self, seq: int, reason: str) -> None:
        """Take back an earlier failure of line `seq` (it is being counted again after a retry)."""
        self.failed -= 1
        left = self.failed_by_reason.get(reason, 0) - 1
        if left > 0:
            self.failed_by_reason[reason] = left
        else:
            self.failed_by_reason.pop(reason, None)
        self.failure_samples = [s for s in self.failure_samples if s.get("line") != seq]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplayTotals:
        return cls(**data)
