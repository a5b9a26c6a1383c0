"""Faults on demand for testing clients: a failure share, a rate limit, added latency."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

__all__ = ["Faults"]


class Faults:
    """Decides, per request, whether to fail it, throttle it, and how long to hold it.

    `rng` is the server's own random source; `clock` is monotonic seconds (the throttle's bucket).
    """

    def __init__(
        self,
        *,
        fail_rate: float = 0.0,
        throttle_rps: float = 0.0,
        latency_ms: float = 0.0,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError(f"fail rate {fail_rate} must be between 0 and 1")
        if throttle_rps < 0 or latency_ms < 0:
            raise ValueError("throttle rate and latency must not be negative")
        self.fail_rate = fail_rate
        self.throttle_rps = throttle_rps
        self.latency_ms = latency_ms
        self._rng = rng
        self._clock = clock
        # A token bucket holding one second's worth of requests, so short bursts pass.
        self._tokens = throttle_rps
        self._refilled = clock()

    @property
    def active(self) -> bool:
        return self.fail_rate > 0 or self.throttle_rps > 0 or self.latency_ms > 0

    def delay_s(self) -> float:
        """Added latency for one request: the configured mean with +-50% uniform jitter."""
        if self.latency_ms <= 0:
            return 0.0
        return self.latency_ms * self._rng.uniform(0.5, 1.5) / 1000.0

    def failed(self) -> bool:
        return self.fail_rate > 0 and self._rng.random() < self.fail_rate

    def throttled(self) -> int:
        """0 if the request may pass, else the seconds to put in Retry-After."""
        if self.throttle_rps <= 0:
            return 0
        now = self._clock()
        self._tokens = min(
            self.throttle_rps, self._tokens + (now - self._refilled) * self.throttle_rps
        )
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self._tokens) / self.throttle_rps))
