"""The manifest's analysis of each flow, as Sitecore's experiment reports show it.

Per variant and window (1 h, 3 h, 1 d, 3 d, 7 d after the guest's first exposure): converted
guests and conversions (goal orders), the conversion rate per exposed guest and per exposed
session, revenue and average order value per currency; against the control, the % improvement
of the guest conversion rate with its confidence (the pooled two-proportion z-test, two-sided),
and a verdict. The sample size is Sitecore's default calculation: 2% base rate, 20% minimum
detectable (relative) difference, 95% confidence, 80% power. A variant is the Winner of a
window when both it and the control reached the sample size, its improvement is at least the
minimum detectable difference and the confidence at least 95%; otherwise Inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from generator.dataset.answer_key import WINDOW_HOURS, Tally

__all__ = [
    "BASE_RATE",
    "CONFIDENCE",
    "MINIMUM_DETECTABLE_DIFFERENCE",
    "POWER",
    "ZTest",
    "control_index",
    "flow_analysis",
    "sample_size",
    "window_label",
    "z_test",
]

# Sitecore Personalize's defaults for the minimum sample size.
BASE_RATE = 0.02
MINIMUM_DETECTABLE_DIFFERENCE = 0.20  # relative to the base rate
CONFIDENCE = 0.95
POWER = 0.80

WINNER, INCONCLUSIVE = "Winner", "Inconclusive"


@dataclass(frozen=True, slots=True)
class ZTest:
    """A variant's proportion against the control's: pooled z, two-sided p, 1 - p."""

    z: float
    p_value: float
    confidence: float


def z_test(x_variant: int, n_variant: int, x_control: int, n_control: int) -> ZTest | None:
    """The two-proportion z-test with the pooled proportion; None when a side has no trial."""
    if n_variant <= 0 or n_control <= 0:
        return None
    pooled = (x_variant + x_control) / (n_variant + n_control)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_variant + 1 / n_control))
    if se == 0:
        return ZTest(0.0, 1.0, 0.0)
    z = (x_variant / n_variant - x_control / n_control) / se
    p = math.erfc(abs(z) / math.sqrt(2))
    return ZTest(z, p, 1 - p)


def sample_size(
    base_rate: float = BASE_RATE,
    minimum_detectable_difference: float = MINIMUM_DETECTABLE_DIFFERENCE,
    confidence: float = CONFIDENCE,
    power: float = POWER,
) -> int:
    """Guests each variant needs to detect a relative lift of `minimum_detectable_difference`
    over `base_rate` (two-sided test at `confidence`, with `power`): the normal-approximation
    formula for two proportions (Fleiss), rounded up."""
    p1 = base_rate
    p2 = base_rate * (1 + minimum_detectable_difference)
    normal = NormalDist()
    z_alpha = normal.inv_cdf(1 - (1 - confidence) / 2)
    z_beta = normal.inv_cdf(power)
    mean = (p1 + p2) / 2
    root = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_beta * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    return math.ceil(root * root / ((p2 - p1) ** 2))


def window_label(hours: int) -> str:
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def control_index(names: list[str]) -> int:
    """The control: the variant named so (any case), else the first."""
    return next((i for i, n in enumerate(names) if n.lower() == "control"), 0)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _improvement(variant: float | None, control: float | None) -> float | None:
    if variant is None or control is None or control == 0:
        return None
    return (variant - control) / control


def flow_analysis(
    names: list[str],
    goal_product_type: str,
    attribution_hours: int,
    currencies: tuple[str, ...],
    tally: Tally,
    f: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the flow's analysis fields, each variant's) from the tally's counts of flow f."""
    n = len(names)
    control = control_index(names)
    needed = sample_size()
    rows: list[dict[str, Any]] = []
    for v in range(n):
        windows: dict[str, Any] = {}
        for w, hours in enumerate(WINDOW_HOURS):
            windows[window_label(hours)] = _window(tally, f, v, w, control, currencies, needed)
        rows.append(
            {
                "exposedSessions": int(tally.exposed_sessions[f, v]),
                "windows": windows,
            }
        )
    primary = window_label(attribution_hours)
    verdict = None
    if n > 1:
        winners = [
            (rows[v]["windows"][primary]["vsControl"], names[v])
            for v in range(n)
            if v != control and rows[v]["windows"][primary]["vsControl"]["verdict"] == WINNER
        ]
        best = max(winners, key=lambda x: x[0]["improvement"], default=None)
        verdict = {
            "window": primary,
            "result": WINNER if best else INCONCLUSIVE,
            "variant": best[1] if best else None,
            "improvement": best[0]["improvement"] if best else None,
            "confidence": best[0]["confidence"] if best else None,
        }
    flow = {
        "attributionWindows": [window_label(h) for h in WINDOW_HOURS],
        "goals": {
            "primary": {
                "name": "conversion",
                "goalProductType": goal_product_type,
                "measure": (
                    "guests with a completed order holding the goal product type within the "
                    "window after their first exposure, over exposed guests"
                ),
            },
            "secondary": [
                {
                    "name": "revenue",
                    "measure": (
                        "value of those orders (all their items), per currency; average order "
                        "value and revenue per exposed guest"
                    ),
                }
            ],
        },
        "control": names[control],
        "sampleSize": {
            "baseRate": BASE_RATE,
            "minimumDetectableDifference": MINIMUM_DETECTABLE_DIFFERENCE,
            "confidence": CONFIDENCE,
            "power": POWER,
            "guestsPerVariant": needed,
        },
        "verdict": verdict,
    }
    return flow, rows


def _window(
    tally: Tally,
    f: int,
    v: int,
    w: int,
    control: int,
    currencies: tuple[str, ...],
    needed: int,
) -> dict[str, Any]:
    exposed = int(tally.exposed_guests[f, v])
    sessions = int(tally.exposed_sessions[f, v])
    converted = int(tally.converted_guests[f, v, w])
    orders = tally.orders[f, v, w]
    milli = tally.revenue_milli[f, v, w]
    revenue = {c: int(milli[i]) / 1000 for i, c in enumerate(currencies)}
    per_guest = {c: _ratio(revenue[c], exposed) for c in currencies}
    row: dict[str, Any] = {
        "convertedGuests": converted,
        "conversions": int(orders.sum()),
        "guestConversionRate": _ratio(converted, exposed),
        "sessionConversionRate": _ratio(int(orders.sum()), sessions),
        "revenue": revenue,
        "averageOrderValue": {
            c: _ratio(revenue[c], int(orders[i])) for i, c in enumerate(currencies)
        },
        "revenuePerGuest": per_guest,
        "vsControl": None,
    }
    if v == control:
        return row
    c_exposed = int(tally.exposed_guests[f, control])
    c_converted = int(tally.converted_guests[f, control, w])
    c_milli = tally.revenue_milli[f, control, w]
    test = z_test(converted, exposed, c_converted, c_exposed)
    improvement = _improvement(_ratio(converted, exposed), _ratio(c_converted, c_exposed))
    winner = (
        test is not None
        and improvement is not None
        and min(exposed, c_exposed) >= needed
        and improvement >= MINIMUM_DETECTABLE_DIFFERENCE
        and test.confidence >= CONFIDENCE
    )
    row["vsControl"] = {
        "improvement": improvement,
        "z": None if test is None else test.z,
        "pValue": None if test is None else test.p_value,
        "confidence": None if test is None else test.confidence,
        "verdict": WINNER if winner else INCONCLUSIVE,
        "revenuePerGuestImprovement": {
            c: _improvement(per_guest[c], _ratio(int(c_milli[i]) / 1000, c_exposed))
            for i, c in enumerate(currencies)
        },
    }
    return row


def bandit_periods(tally: Tally, f: int) -> tuple[np.ndarray, np.ndarray] | None:
    """An optimized flow's realised (exposed, converted) guests by period and variant."""
    if f not in tally.period_exposed:
        return None
    return tally.period_exposed[f], tally.period_converted[f]
