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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplayTotals:
        return cls(**data)
