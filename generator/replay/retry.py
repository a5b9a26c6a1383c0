"""When to try a request again: exponential backoff with full jitter, at least any Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

__all__ = ["RetryPolicy", "parse_retry_after"]

# A target asking for longer than this is treated as asking for this (a run should not stall).
MAX_RETRY_AFTER_S = 120.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 8
    base_s: float = 0.05
    cap_s: float = 10.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Wait before retry number `attempt` (1-based)."""
        # Full jitter spreads many guests' retries so they do not hit a recovering target at once.
        backoff = rng.uniform(0.0, min(self.cap_s, self.base_s * (2 ** (attempt - 1))))
        if retry_after is not None:
            return max(min(retry_after, MAX_RETRY_AFTER_S), backoff)
        return backoff


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
