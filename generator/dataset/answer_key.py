"""The answer key: per flow and variant, exposures, exposed guests and converted guests.

A guest converted for a flow when, after their first exposure to it, within the flow's attribution
window, they completed an order (CHECKOUT, status PURCHASED) holding the flow's goal product. Times
are the events' createdAt. The writer finds each guest's exposed pairs as it simulates them
(`exposed_pairs`) and counts them against the dataset's cut (`count_pairs`); the validator
computes the key again from the JSON events (`AnswerTags`, `outcomes`), and the two must agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from generator.events.types import EventType

__all__ = [
    "NEVER",
    "PAIR_DTYPE",
    "AnswerTags",
    "VariantOutcome",
    "at_or_before",
    "count_pairs",
    "exposed_pairs",
    "outcomes",
]


@dataclass(frozen=True)
class AnswerTags:
    """Exposures (guest, flow, variant, ms) and orders (guest, goal mask, ms) as arrays."""

    t_guest: np.ndarray
    t_flow: np.ndarray
    t_variant: np.ndarray
    t_ms: np.ndarray
    o_guest: np.ndarray
    o_mask: np.ndarray
    o_ms: np.ndarray


@dataclass(frozen=True)
class VariantOutcome:
    exposures: int
    exposed_guests: int
    converted_guests: int


def outcomes(
    tags: AnswerTags, variants_per_flow: list[int], window_ms: list[int]
) -> list[list[VariantOutcome]]:
    """[flow][variant] outcomes from the tags."""
    result = []
    for f, nvar in enumerate(variants_per_flow):
        sel = tags.t_flow == f
        g, v, ms = tags.t_guest[sel], tags.t_variant[sel], tags.t_ms[sel]
        exposures = np.bincount(v, minlength=nvar)
        # First exposure per guest (assignment is sticky, so one variant per guest and flow).
        order = np.lexsort((ms, g))
        g, v, ms = g[order], v[order], ms[order]
        first = np.ones(len(g), dtype=bool)
        first[1:] = g[1:] != g[:-1]
        fg, fv, fms = g[first], v[first], ms[first]
        exposed = np.bincount(fv, minlength=nvar)
        # Orders that hold this flow's goal.
        osel = (tags.o_mask >> f) & 1 == 1
        og, oms = tags.o_guest[osel], tags.o_ms[osel]
        pos = np.searchsorted(fg, og)
        pos_ok = pos < len(fg)
        matched = np.zeros(len(og), dtype=bool)
        matched[pos_ok] = fg[pos[pos_ok]] == og[pos_ok]
        pos, og, oms = pos[matched], og[matched], oms[matched]
        delta = oms - fms[pos]
        hit = (delta >= 0) & (delta <= window_ms[f])
        converted_guest_rows = np.unique(pos[hit])
        converted = np.bincount(fv[converted_guest_rows], minlength=nvar)
        result.append(
            [
                VariantOutcome(int(exposures[i]), int(exposed[i]), int(converted[i]))
                for i in range(nvar)
            ]
        )
    return result


# One exposed (guest, flow) pair: its first exposure's position (createdAt, ref) and variant, and
# the position of the first order that converts it (NEVER when none does).
PAIR_DTYPE = np.dtype(
    [
        ("first_ms", "<i8"),
        ("first_hi", "<u8"),
        ("first_lo", "<u8"),
        ("conv_ms", "<i8"),
        ("conv_hi", "<u8"),
        ("conv_lo", "<u8"),
        ("flow", "<i1"),
        ("variant", "<i1"),
    ]
)
NEVER = np.iinfo(np.int64).max


def exposed_pairs(
    guest: np.ndarray,
    kind: np.ndarray,
    created: np.ndarray,
    ref_hi: np.ndarray,
    ref_lo: np.ndarray,
    flow: np.ndarray,
    variant: np.ndarray,
    goal: np.ndarray,
    window_ms: np.ndarray,
) -> np.ndarray:
    """Every exposed pair of a set of guests, from all their events (fields by event, in
    (createdAt, ref) order). A guest's events all come from one block, so the writer takes
    them block by block; then, whatever cut the dataset gets, a pair is exposed in it when its
    first exposure is kept, and converted when its converting order is."""
    flows = len(window_ms)
    t = np.flatnonzero(kind == EventType.TRACKING)
    # A pair's first row: np.unique gives first indexes, and rows come in (createdAt, ref) order.
    pair, first = np.unique(guest[t].astype(np.int64) * flows + flow[t], return_index=True)
    at = t[first]
    out = np.empty(len(pair), dtype=PAIR_DTYPE)
    out["first_ms"], out["first_hi"], out["first_lo"] = created[at], ref_hi[at], ref_lo[at]
    out["flow"], out["variant"] = flow[at], variant[at]
    out["conv_ms"], out["conv_hi"], out["conv_lo"] = NEVER, 0, 0
    orders = np.flatnonzero((kind == EventType.CHECKOUT) & (goal != 0))
    for f in range(flows):
        of = orders[(goal[orders] >> f) & 1 == 1]
        keys = guest[of].astype(np.int64) * flows + f
        pos = np.searchsorted(pair, keys)
        found = pos < len(pair)
        found[found] = pair[pos[found]] == keys[found]
        of, pos = of[found], pos[found]
        delta = created[of] - out["first_ms"][pos]
        inside = (delta >= 0) & (delta <= window_ms[f])
        of, pos = of[inside], pos[inside]
        # The pair's first such order (orders too come in (createdAt, ref) order).
        pos, first = np.unique(pos, return_index=True)
        at = of[first]
        out["conv_ms"][pos], out["conv_hi"][pos], out["conv_lo"][pos] = (
            created[at],
            ref_hi[at],
            ref_lo[at],
        )
    return out


def count_pairs(
    batches: Iterable[np.ndarray], last: tuple[int, int, int], variants_per_flow: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Exposed and converted guests by [flow, variant], over batches of PAIR_DTYPE records, in a
    dataset whose last event sits at `last` (createdAt, ref hi, ref lo)."""
    shape = (len(variants_per_flow), max(variants_per_flow, default=1))
    exposed = np.zeros(shape, dtype=np.int64)
    converted = np.zeros(shape, dtype=np.int64)
    for batch in batches:
        for total, prefix in ((exposed, "first"), (converted, "conv")):
            kept = at_or_before(
                batch[f"{prefix}_ms"], batch[f"{prefix}_hi"], batch[f"{prefix}_lo"], last
            )
            np.add.at(total, (batch["flow"][kept], batch["variant"][kept]), 1)
    return exposed, converted


def at_or_before(
    ms: np.ndarray, hi: np.ndarray, lo: np.ndarray, last: tuple[int, int, int]
) -> np.ndarray:
    """Positions (ms, hi, lo) that sort at or before `last`."""
    l_ms, l_hi, l_lo = last
    l_hi_u, l_lo_u = np.uint64(l_hi), np.uint64(l_lo)
    return (ms < l_ms) | ((ms == l_ms) & ((hi < l_hi_u) | ((hi == l_hi_u) & (lo <= l_lo_u))))
