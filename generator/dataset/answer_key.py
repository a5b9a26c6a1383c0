"""The answer key: per flow and variant, exposures, exposed guests and converted guests.

A guest converted for a flow when, after their first exposure to it, within the flow's attribution
window, they completed an order (CHECKOUT, status PURCHASED) holding the flow's goal product. Times
are the events' createdAt. The generator computes this from tags it keeps while sorting; the
validator computes it again from the JSON events, and the two must agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.events.types import EventType

__all__ = ["AnswerTags", "VariantOutcome", "outcomes"]


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

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> AnswerTags:
        """From the writer's rows of TRACKING and CHECKOUT events."""
        t = rows[rows["type"] == EventType.TRACKING]
        o = rows[rows["type"] == EventType.CHECKOUT]
        del rows
        return cls(
            t["guest"].astype(np.int64),
            t["flow"].astype(np.int64),
            t["variant"].astype(np.int64),
            t["created"].astype(np.int64),
            o["guest"].astype(np.int64),
            o["goal"].astype(np.int64),
            o["created"].astype(np.int64),
        )


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
