"""Proportions for experiments: Wilson intervals and the two-proportion z-test."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Z95", "Comparison", "compare", "wilson"]

Z95 = 1.959963984540054  # the normal quantile of 0.975


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sound at small counts and at 0 or 1)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    # At 0 or all successes the interval touches its bound exactly (rounding would miss it).
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= trials else min(1.0, centre + half)
    return (lo, hi)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A variant against control: the difference of rates, its 95% interval, the relative
    improvement, and the two-sided z-test (pooled) with `confidence` = 1 - p."""

    difference: float
    difference_ci: tuple[float, float]
    improvement: float | None  # (p_variant - p_control) / p_control; None when control is 0
    z: float
    p_value: float
    confidence: float


def compare(x_variant: int, n_variant: int, x_control: int, n_control: int) -> Comparison | None:
    """None when either side has no trial."""
    if n_variant <= 0 or n_control <= 0:
        return None
    pv, pc = x_variant / n_variant, x_control / n_control
    diff = pv - pc
    se = math.sqrt(pv * (1 - pv) / n_variant + pc * (1 - pc) / n_control)
    ci = (diff - Z95 * se, diff + Z95 * se)
    pooled = (x_variant + x_control) / (n_variant + n_control)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_variant + 1 / n_control))
    if se0 == 0:
        z, p = 0.0, 1.0
    else:
        z = diff / se0
        p = math.erfc(abs(z) / math.sqrt(2))
    return Comparison(
        difference=diff,
        difference_ci=ci,
        improvement=diff / pc if pc > 0 else None,
        z=z,
        p_value=p,
        confidence=1 - p,
    )
