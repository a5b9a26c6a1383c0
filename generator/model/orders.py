"""What becomes of an order after its CHECKOUT: failures, and the statuses after the sale.

An order's session goes CONFIRM, CHECKOUT (PAYMENT_PENDING: the sale), PAYMENT, CHECKOUT
(CONFIRMED). A share of the organic orders that carry no flow's conversion fails instead: its
CONFIRM lists an item never added (stored FAILED), so its CHECKOUT is FAILED too and no
PAYMENT follows; the answer key is untouched, since a failed order converts nobody and none
that was drawn to convert fails. After the sale a share is CANCELLED (hours later) or REFUNDED
(days later): a CHECKOUT of the same reference_id, sent in a session of its own on the buyer's
browser and channel (the guest's account page), placed where that browser has no session open
and cut at the window's end like every event.
"""

from __future__ import annotations

import numpy as np

from generator.profile import LogNormal, Orders
from generator.vocabulary import ORDER_STATUSES, EventType

__all__ = [
    "CANCELLED",
    "CONFIRMED",
    "PENDING",
    "REFUNDED",
    "after_sale",
    "by_status",
    "failures",
    "status_counts",
]

PENDING = ORDER_STATUSES.index("PAYMENT_PENDING")
CONFIRMED = ORDER_STATUSES.index("CONFIRMED")
CANCELLED = ORDER_STATUSES.index("CANCELLED")
REFUNDED = ORDER_STATUSES.index("REFUNDED")

# Room kept around a session of one event: TRACKING after a browser's last view and the store
# delays stay inside it.
_GUARD_MS = 5_000
_TRIES = 6


def failures(
    rng: np.random.Generator, orders: Orders, order: np.ndarray, carries: np.ndarray
) -> np.ndarray:
    """Per session: its order fails (only organic orders that carry no conversion)."""
    u = rng.random(len(order))
    return order & (carries == 0) & (u < orders.failed_share)


def _lag_ms(rng: np.random.Generator, lag: LogNormal, n: int) -> np.ndarray:
    hours = lag.median * np.exp(lag.sigma * rng.standard_normal(n))
    return np.maximum(hours * 3_600_000, 60_000).astype(np.int64)


def after_sale(
    rng: np.random.Generator,
    orders: Orders,
    origin: np.ndarray,
    sold_at: np.ndarray,
    browser: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    timeout: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The after-sale changes of the orders placed in sessions `origin` (confirmed at
    `sold_at`): which of them change, when, and to what (CANCELLED or REFUNDED). `browser`,
    `first`, `last`, `timeout` describe every session of the block (first < 0: no events).
    Returns (origin, time, status) of those placed on a free stretch of their browser."""
    n = len(origin)
    u = rng.random(n)
    cancel_lag = _lag_ms(rng, orders.cancel_lag_hours, n)
    refund_lag = _lag_ms(rng, orders.refund_lag_hours, n)
    cancelled = u < orders.cancelled_share
    refunded = ~cancelled & (u < orders.cancelled_share + orders.refunded_share)
    change = cancelled | refunded
    status = np.where(cancelled, CANCELLED, REFUNDED)[change]
    origin, b = origin[change], browser[origin[change]]
    at = sold_at[change] + np.where(cancelled, cancel_lag, refund_lag)[change]
    own_timeout = timeout[origin]
    # The block's sessions by browser, then first event.
    has = np.flatnonzero(first >= 0)
    order = has[np.lexsort((first[has], browser[has]))]
    sb, sf = browser[order], first[order]
    free = np.zeros(len(origin), dtype=bool)
    for _ in range(_TRIES):
        pos = _before(sb, sf, b, at)
        prev = order[np.clip(pos, 0, max(len(order) - 1, 0))] if len(order) else pos
        has_prev = (pos >= 0) & (sb[np.clip(pos, 0, None)] == b) if len(order) else pos >= 0
        prev_open = has_prev & (last[prev] + timeout[prev] + _GUARD_MS >= at)
        nxt_pos = pos + 1
        inside = nxt_pos < len(order)
        nxt = order[np.clip(nxt_pos, 0, max(len(order) - 1, 0))] if len(order) else nxt_pos
        has_next = inside & (sb[np.clip(nxt_pos, 0, max(len(order) - 1, 0))] == b)
        next_soon = has_next & (first[nxt] <= at + own_timeout + _GUARD_MS)
        free = ~prev_open & ~next_soon
        if free.all():
            break
        at = np.where(
            prev_open,
            last[prev] + timeout[prev] + _GUARD_MS + 1,
            np.where(next_soon, last[nxt] + timeout[nxt] + _GUARD_MS + 1, at),
        )
    origin, at, status, b = origin[free], at[free], status[free], b[free]
    # Two changes on one browser close together: the later one waits for no one, it is dropped.
    o = np.lexsort((at, b))
    origin, at, status, b = origin[o], at[o], status[o], b[o]
    keep = np.ones(len(o), dtype=bool)
    if len(o) > 1:
        close = (b[1:] == b[:-1]) & (at[1:] - at[:-1] <= timeout[origin[:-1]] + _GUARD_MS)
        keep[1:] = ~close
    return origin[keep], at[keep], status[keep]


def _before(sb: np.ndarray, sf: np.ndarray, b: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per query, the index (into the sessions sorted by browser, then first event) of the
    last one at or before (browser b, time at); -1 when there is none (the caller checks that
    it is b's)."""
    if len(sb) == 0:
        return np.full(len(b), -1, dtype=np.int64)
    # One int64 key: the browser over the time since the earliest first event (2**43 ms is
    # 278 years; a block has far fewer than 2**20 browsers).
    base = int(sf.min())
    shift = np.int64(1) << np.int64(43)
    key = sb.astype(np.int64) * shift + (sf - base)
    query = b.astype(np.int64) * shift + np.clip(at - base, 0, int(shift) - 1)
    return np.searchsorted(key, query, side="right") - 1


def status_counts(kind: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """Events by type code, then FAILED events by type code (2 x len(EventType) counts)."""
    n = len(EventType)
    return np.bincount(kind.astype(np.int64) + n * failed.astype(np.int64), minlength=2 * n).astype(
        np.int64
    )


def by_status(counts: np.ndarray) -> tuple[dict[str, int], dict[str, int]]:
    """status_counts as the manifest has them: all events by type name, and FAILED ones."""
    n = len(EventType)
    every = {t.name: int(counts[t] + counts[n + t]) for t in EventType}
    failed = {t.name: int(counts[n + t]) for t in EventType}
    return every, failed
