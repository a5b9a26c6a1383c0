"""Conversions: each allocated guest's outcome drawn once, then its order placed after the first
exposure, at a lag of the configured shape.

A guest allocated to a flow converts with their variant's configured rate: the draw is made up
front, so it cannot depend on where or when the guest is first exposed (a journey page, or the
cart or checkout page of an order). First exposures are settled in time order, guest by guest:
the earliest pending one is final, since whatever is placed afterwards lies after it. A converting
guest then gets an order holding the flow's goal product within the attribution window (and
before the simulated window ends): in the exposure's own session (a share sameSessionConversion)
or in a later one, at a lag drawn from conversionLagHours cut to the window, on a visit the guest
makes anyway near that time or on one added for it. No other order holding the goal falls between
the exposure and that order, nor anywhere in the window of a guest who does not convert: such an
organic order is abandoned instead, or, when it also carries some flow's conversion, placed
without the goal item. So among exposed guests the answer key's converted share is a binomial
draw at the configured rate.

A session's checkout tail (a goal product's page and its ADD, the cart and checkout pages,
IDENTITY unless the guest identified earlier in the session or checks out as a guest, CONFIRM,
CHECKOUT, PAYMENT) runs in time reserved after its journey when the sessions
were pushed apart, and an item added to a tail later goes between two of its events: placing an
order never moves another event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from statistics import NormalDist

import numpy as np

from generator.model.assignment import BlockAssignment
from generator.model.world import PAGE_CODES, World
from generator.profile import Page

__all__ = ["TAIL_SLOTS", "ConversionPlan", "Slot", "Visits", "plan_conversions"]


class Slot(IntEnum):
    """Positions of a session's tail; each session draws one gap per slot up front."""

    CONV_VIEW = 0  # the goal product's page, for a tail a conversion opened
    CONV_ADD = 1
    CART = 2
    CHECKOUT_VIEW = 3
    IDENTITY = 4  # unless the guest identified earlier in the session, or checks out as a guest
    CONFIRM = 5
    CHECKOUT = 6
    PAYMENT = 7
    CLEAR_CART = 8  # end markers: timed at assembly, after the session's last event
    FORCE_CLOSE = 9


TAIL_SLOTS = len(Slot)
_TIMED = Slot.CLEAR_CART  # slots whose times a tail keeps

_PRODUCT = PAGE_CODES[Page.PRODUCT]
_CART = PAGE_CODES[Page.CART]
_CHECKOUT = PAGE_CODES[Page.CHECKOUT]
_NO = np.iinfo(np.int64).max
# Where a view sits, for placing an item after it: a journey page, a tail's product, cart or
# checkout page.
_AT_JOURNEY, _AT_CONV, _AT_CART, _AT_CHECKOUT = 0, 1, 2, 3
# A later purchase's session opens at least this long after the exposure's session.
_REVISIT_MS = 10 * 60_000
# The first exposure's TRACKING is stored up to about 1.4 s after its view, and an order's
# CHECKOUT up to about half a second after it happens: orders keep these margins to the window.
_AFTER_EXPOSURE_MS = 2_500
_BEFORE_LIMIT_MS = 1_000
_GUARD_MS = 2_000
# How many of a browser's sessions a search for free time looks past.
_FREE_TRIES = 6
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class Visits:
    """The block's sessions as the conversion model sees them (times in epoch ms)."""

    guest: np.ndarray
    browser: np.ndarray
    start: np.ndarray  # pushed apart
    end: np.ndarray  # start + journey + the tail's reserve: nothing of the session after it
    last: np.ndarray  # the last journey event's time
    timeout: np.ndarray
    identified: np.ndarray  # an IDENTITY in the journey (so none in the checkout)
    organic_buy: np.ndarray
    gaps: np.ndarray  # (sessions, TAIL_SLOTS) ms
    guest_browsers: np.ndarray  # per guest: first browser index
    guest_browser_count: np.ndarray
    guest_timeout: np.ndarray  # per guest: its point of sale's timeout
    guest_checkout: np.ndarray  # per guest: its orders go without IDENTITY (model.identity)
    by_guest: np.ndarray  # session indices grouped by guest
    by_browser: np.ndarray  # session indices by browser, then start


@dataclass(frozen=True, slots=True)
class ConversionPlan:
    """Tails, orders and added sessions; sessions from `len(visits)` on are the added ones."""

    assignments: BlockAssignment  # per flow: each guest's variant, or -1
    sessions: int
    new_guest: np.ndarray
    new_browser: np.ndarray
    gaps: np.ndarray  # (sessions, TAIL_SLOTS)
    tail: np.ndarray  # (sessions, CLEAR_CART): each tail event's time, or -1
    tail_item: np.ndarray  # the goal product a conversion's tail shows and adds, or -1
    order: np.ndarray  # per session: the tail places its order
    carries: np.ndarray  # per session: bit f set when its order is flow f's conversion
    extra_session: np.ndarray  # goal items added from a tail's cart or checkout page
    extra_time: np.ndarray
    extra_page: np.ndarray
    extra_item: np.ndarray
    keep_goal_add: np.ndarray  # over the journey's goal ADDs: False where one leaves the cart
    lost: int  # conversions that found no room before the window's end


def plan_conversions(
    world: World,
    rng: np.random.Generator,
    visits: Visits,
    views: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    goal_adds: tuple[np.ndarray, np.ndarray],
    assignments: BlockAssignment,
) -> ConversionPlan:
    """Decide and place every conversion of a block.

    `views` are the journeys' page views (session, time, page, item); `goal_adds` the journeys'
    ADDs of goal products (session, flow whose goal it is)."""
    book = _Book(world, rng, visits, assignments)
    book.open_tails(np.flatnonzero(visits.organic_buy), with_conv=False)
    book.set_base(*views)
    book.settle()
    return book.plan(goal_adds)


def _truncated_lognormal(
    u: np.ndarray, mu: float, sigma: float, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """exp(N(mu, sigma)) conditioned on [lo, hi], by inverting the CDF at u (one draw each)."""
    out = np.clip(np.exp(mu), lo, hi)
    if sigma < 1e-9 or len(u) == 0:  # no spread: the median, cut to the range
        return out
    za = (np.log(np.maximum(lo, 1.0)) - mu) / sigma
    zb = (np.log(np.maximum(hi, 1.0)) - mu) / sigma
    cdf = np.frompyfunc(_NORMAL.cdf, 1, 1)
    fa = cdf(za).astype(np.float64)
    fb = cdf(zb).astype(np.float64)
    p = fa + u * (fb - fa)
    ok = (fb - fa > 1e-12) & (p > 0) & (p < 1)
    z = np.array([_NORMAL.inv_cdf(float(x)) for x in p[ok]], dtype=np.float64)
    out[ok] = np.clip(np.exp(mu + sigma * z), lo[ok], hi[ok])
    return out


class _Book:
    """The block's tails and orders as they are placed; grows when sessions are added."""

    def __init__(
        self,
        world: World,
        rng: np.random.Generator,
        visits: Visits,
        assignments: BlockAssignment,
    ) -> None:
        self.world, self.rng, self.visits = world, rng, visits
        self.assignments = assignments
        flows, guests = len(world.profile.flows), len(visits.guest_browsers)
        self.flows, self.guests = flows, guests
        self.base_sessions = self.n = n = len(visits.guest)
        # Per session (added ones after the block's own), in arrays with room to grow.
        cap = n + max(64, n // 4)
        self.guest = _column(visits.guest, cap, -1)
        self.browser = _column(visits.browser, cap, -1)
        self.start = _column(visits.start, cap, 0)
        self.end = _column(visits.end, cap, 0)
        self.last = _column(visits.last, cap, 0)
        self.timeout = _column(visits.timeout, cap, 0)
        self.identified = _column(visits.identified, cap, False)
        self.gaps = _column(visits.gaps, cap, 0)
        self.tail = _column(np.full((n, _TIMED), -1, dtype=np.int64), cap, -1)
        self.item = _column(np.full(n, -1, dtype=np.int64), cap, -1)
        self.placed = _column(np.zeros(n, dtype=np.int64), cap, 0)
        # The latest item added after each tail's cart and checkout pages.
        self.after_cart = _column(np.full(n, -1, dtype=np.int64), cap, -1)
        self.after_checkout = _column(np.full(n, -1, dtype=np.int64), cap, -1)
        # The block's own sessions by browser and start, for finding free time on a browser;
        # added sessions are checked apart.
        self.by_browser = visits.by_browser
        self.browser_key = self._browser_key(
            visits.browser[self.by_browser], visits.start[self.by_browser]
        )
        # Per flow and guest: the time range in which no other order may hold the goal.
        self.forbid_lo = np.zeros((flows, guests), dtype=np.int64)
        self.forbid_hi = np.zeros((flows, guests), dtype=np.int64)
        # The draws every (flow, guest) may need, made up front in one fixed order.
        u = rng.random((4, flows, guests))
        self.u_convert, self.u_same, self.u_lag, self.u_item = u[0], u[1], u[2], u[3]
        self.extra: list[tuple[np.ndarray, ...]] = []
        self.added_views: list[tuple[np.ndarray, ...]] = []
        self.lost = 0
        self.new_guest: list[np.ndarray] = []
        self.new_browser: list[np.ndarray] = []

    # --- tails -----------------------------------------------------------------------------

    def _tail_times(
        self, sess: np.ndarray, base: np.ndarray, with_conv: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Times of a tail opened after `base`: one gap a slot, for the slots it holds."""
        present = np.ones((len(sess), _TIMED), dtype=bool)
        present[:, Slot.CONV_VIEW] = present[:, Slot.CONV_ADD] = with_conv
        present[:, Slot.IDENTITY] = (
            ~self.identified[sess] & ~self.visits.guest_checkout[self.guest[sess]]
        )
        steps = np.where(present, self.gaps[sess, :_TIMED], 0)
        times = base[:, None] + np.cumsum(steps, axis=1)
        return np.where(present, times, -1), present

    def would_be_checkout(self, sess: np.ndarray) -> np.ndarray:
        """When a tail opened now in these sessions (with a goal product's page) would check out,
        or the CHECKOUT of the tail they have."""
        times, _ = self._tail_times(sess, self.last[sess], with_conv=True)
        have = self.tail[sess, Slot.CHECKOUT] >= 0
        return np.where(have, self.tail[sess, Slot.CHECKOUT], times[:, Slot.CHECKOUT])

    def open_tails(
        self, sess: np.ndarray, *, with_conv: bool, item: np.ndarray | None = None
    ) -> None:
        """Give sessions without a tail one, after their journey (or, for added sessions, from
        their start); its pages join the views that can expose guests."""
        if len(sess) == 0:
            return
        times, _ = self._tail_times(sess, self.last[sess], with_conv)
        self.tail[sess] = times
        self.after_cart[sess] = times[:, Slot.CART]
        self.after_checkout[sess] = times[:, Slot.CHECKOUT_VIEW]
        g = self.guest[sess]
        parts = [
            (sess, times[:, Slot.CART], np.full(len(sess), _CART), np.full(len(sess), -1)),
            (
                sess,
                times[:, Slot.CHECKOUT_VIEW],
                np.full(len(sess), _CHECKOUT),
                np.full(len(sess), -1),
            ),
        ]
        kinds = [_AT_CART, _AT_CHECKOUT]
        if with_conv:
            assert item is not None
            self.item[sess] = item
            parts.insert(0, (sess, times[:, Slot.CONV_VIEW], np.full(len(sess), _PRODUCT), item))
            kinds.insert(0, _AT_CONV)
        for (s, t, page, it), kind in zip(parts, kinds, strict=True):
            self.added_views.append((g, s, t, page, it, np.full(len(s), kind)))

    def add_after(self, sess: np.ndarray, at_checkout: np.ndarray, item: np.ndarray) -> None:
        """Add a goal item to existing tails: from the cart page, or from the checkout page when
        that is where the guest was exposed; each goes half-way to the tail's next event."""
        if len(sess) == 0:
            return
        tail = self.tail[sess]
        after_checkout_next = np.where(
            tail[:, Slot.IDENTITY] >= 0, tail[:, Slot.IDENTITY], tail[:, Slot.CONFIRM]
        )
        prev = np.where(at_checkout, self.after_checkout[sess], self.after_cart[sess])
        nxt = np.where(at_checkout, after_checkout_next, tail[:, Slot.CHECKOUT_VIEW])
        t = prev + np.maximum((nxt - prev) // 2, 1)
        self.after_checkout[sess[at_checkout]] = t[at_checkout]
        self.after_cart[sess[~at_checkout]] = t[~at_checkout]
        page = np.where(at_checkout, _CHECKOUT, _CART)
        self.extra.append((sess, t, page, item))

    # --- first exposures -------------------------------------------------------------------

    def set_base(
        self, sess: np.ndarray, time: np.ndarray, page: np.ndarray, item: np.ndarray
    ) -> None:
        """The journeys' views and the organic tails' pages: each flow's first one per guest."""
        added = self._take_added()
        g = np.concatenate([self.guest[sess], added[0]])
        s = np.concatenate([sess, added[1]])
        t = np.concatenate([time, added[2]])
        p = np.concatenate([page, added[3]])
        it = np.concatenate([item, added[4]])
        k = np.concatenate([np.full(len(sess), _AT_JOURNEY), added[5]])
        self.base = self._firsts(g, s, t, p, it, k)

    def _take_added(self) -> tuple[np.ndarray, ...]:
        if not self.added_views:
            empty = np.zeros(0, dtype=np.int64)
            return (empty,) * 6
        cols = tuple(np.concatenate(c) for c in zip(*self.added_views, strict=True))
        self.added_views = []
        return cols

    def _firsts(
        self,
        g: np.ndarray,
        s: np.ndarray,
        t: np.ndarray,
        p: np.ndarray,
        it: np.ndarray,
        k: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(time, session, kind) of each flow's first view per guest, (flows, guests) each."""
        first_t = np.full((self.flows, self.guests), _NO, dtype=np.int64)
        first_s = np.full((self.flows, self.guests), -1, dtype=np.int64)
        first_k = np.full((self.flows, self.guests), -1, dtype=np.int64)
        if len(g) == 0:
            return first_t, first_s, first_k
        # Sorted on a key packing the guest over the time since the window's start.
        key = g.astype(np.int64) * (np.int64(1) << np.int64(42)) + (t - self.world.start_ms)
        for f in range(self.flows):
            hit = self.world.triggers(f, p, it) & (self.assignments[f][g] >= 0)
            rows = np.flatnonzero(hit)
            if len(rows) == 0:
                continue
            rows = rows[np.argsort(key[rows], kind="stable")]
            new = np.ones(len(rows), dtype=bool)
            new[1:] = g[rows[1:]] != g[rows[:-1]]
            rows = rows[new]
            first_t[f, g[rows]] = t[rows]
            first_s[f, g[rows]] = s[rows]
            first_k[f, g[rows]] = k[rows]
        return first_t, first_s, first_k

    def settle(self) -> None:
        """Settle first exposures in time order, a guest's earliest pending ones each round."""
        if self.flows == 0:
            return
        done = np.zeros((self.flows, self.guests), dtype=bool)
        t, s, k = (a.copy() for a in self.base)
        while True:
            added = self._take_added()
            if len(added[0]):
                at, as_, ak = self._firsts(*added)
                earlier = at < t
                t = np.where(earlier, at, t)
                s = np.where(earlier, as_, s)
                k = np.where(earlier, ak, k)
            pending = np.where(done, _NO, t)
            now = pending.min(axis=0)
            active = (pending == now[None, :]) & (pending != _NO)
            if not active.any():
                return
            for f in range(self.flows):
                gs = np.flatnonzero(active[f])
                if len(gs):
                    self._settle_flow(f, gs, t[f, gs], s[f, gs], k[f, gs])
            done |= active

    # --- placing one flow's conversions ----------------------------------------------------

    def _settle_flow(
        self, f: int, gs: np.ndarray, first: np.ndarray, s0: np.ndarray, kind: np.ndarray
    ) -> None:
        world = self.world
        window = int(world.attribution_ms[f])
        variant = self.assignments.at(f, gs, first)  # optimized: by the exposure's period
        converts = self.u_convert[f, gs] < world.conversion[f][variant]
        # Nobody's order holds the goal in the window, until a converting guest's own.
        self.forbid_lo[f, gs] = first - _GUARD_MS
        self.forbid_hi[f, gs] = first + window + _GUARD_MS
        c = np.flatnonzero(converts)
        if len(c) == 0:
            return
        gs, first, s0, kind = gs[c], first[c], s0[c], kind[c]
        latest = np.minimum(first + window, world.end_ms) - _BEFORE_LIMIT_MS
        goal = world.goal_type[f]
        item = world.catalog.type_first_item[goal] + (
            self.u_item[f, gs] * world.catalog.type_items[goal]
        ).astype(np.int64)
        order_at = np.full(len(gs), -1, dtype=np.int64)
        where = np.full(len(gs), -1, dtype=np.int64)
        later = self.u_same[f, gs] >= world.same_session[f]
        if later.any():
            li = np.flatnonzero(later)
            placed_at, placed_in = self._later(f, gs[li], first[li], s0[li], latest[li], item[li])
            order_at[li], where[li] = placed_at, placed_in
        same = where < 0  # asked for it, or no room later
        if same.any():
            si = np.flatnonzero(same)
            placed_at, placed_in = self._same(first[si], s0[si], kind[si], latest[si], item[si])
            order_at[si], where[si] = placed_at, placed_in
        ok = where >= 0
        self.lost += int((~ok).sum())
        self.placed[where[ok]] |= np.int64(1) << np.int64(f)
        self.forbid_hi[f, gs[ok]] = order_at[ok]

    def _same(
        self,
        first: np.ndarray,
        s0: np.ndarray,
        kind: np.ndarray,
        latest: np.ndarray,
        item: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Orders in the exposure's own session: the goal joins its tail (from the cart page,
        or the checkout page if the guest was exposed there), or opens one after the journey."""
        at = self.would_be_checkout(s0)
        fits = (at >= first + _AFTER_EXPOSURE_MS) & (at <= latest)
        have = self.tail[s0, Slot.CHECKOUT] >= 0
        join = fits & have
        self.add_after(s0[join], kind[join] == _AT_CHECKOUT, item[join])
        opens = fits & ~have
        self.open_tails(s0[opens], with_conv=True, item=item[opens])
        return np.where(fits, at, -1), np.where(fits, s0, -1)

    def _later(
        self,
        f: int,
        gs: np.ndarray,
        first: np.ndarray,
        s0: np.ndarray,
        latest: np.ndarray,
        item: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Orders in a later session, at a lag from the flow's shape cut to what the window
        leaves after the exposure's session; on a visit the guest makes near that time, or on
        one added for it. (-1, -1) where there is no room: those buy in the same session."""
        n = len(gs)
        gaps = self._draw_gaps(self.visits.guest_timeout[gs])
        # An added session opens on the goal product's page and checks out after these.
        offset = gaps[:, Slot.CONV_ADD : Slot.CHECKOUT + 1].sum(axis=1)
        earliest = self.end[s0] + _REVISIT_MS
        lo = (earliest + offset - first).astype(np.float64)
        hi = (latest - first).astype(np.float64)
        room = lo < hi
        lag = np.full(n, -1.0)
        world = self.world
        lag[room] = _truncated_lognormal(
            self.u_lag[f, gs[room]],
            float(world.lag_mu[f]),
            float(world.lag_sigma[f]),
            lo[room],
            hi[room],
        )
        target = first + lag.astype(np.int64)
        order_at = np.full(n, -1, dtype=np.int64)
        where = np.full(n, -1, dtype=np.int64)
        if not room.any():
            return order_at, where
        ri = np.flatnonzero(room)
        at, sess = self._visit_near(
            gs[ri], first[ri], earliest[ri], latest[ri], target[ri], lag[ri]
        )
        found = sess >= 0
        fi = ri[found]
        if len(fi):
            s = sess[found]
            have = self.tail[s, Slot.CHECKOUT] >= 0
            self.add_after(s[have], np.zeros(int(have.sum()), dtype=bool), item[fi[have]])
            self.open_tails(s[~have], with_conv=True, item=item[fi[~have]])
            order_at[fi], where[fi] = at[found], s
        ni = ri[~found]
        if len(ni):
            at, sess = self._add_sessions(
                gs[ni], s0[ni], target[ni] - offset[ni], latest[ni] - offset[ni], gaps[ni], item[ni]
            )
            order_at[ni], where[ni] = np.where(sess >= 0, at + offset[ni], -1), sess
        return order_at, where

    def _visit_near(
        self,
        gs: np.ndarray,
        first: np.ndarray,
        earliest: np.ndarray,
        latest: np.ndarray,
        target: np.ndarray,
        lag: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each guest, their own session (opening after `earliest`) whose checkout would
        come nearest the target, if within a quarter of the lag of it and inside the window."""
        n = len(gs)
        at = np.full(n, -1, dtype=np.int64)
        sess = np.full(n, -1, dtype=np.int64)
        by_guest = self.visits.by_guest
        sorted_guest = self.visits.guest[by_guest]
        lo = np.searchsorted(sorted_guest, gs, side="left")
        counts = np.searchsorted(sorted_guest, gs, side="right") - lo
        req = np.repeat(np.arange(n), counts)
        cand = by_guest[np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(len(req))]
        if self.n > self.base_sessions:  # and the sessions added so far
            r2, c2 = np.nonzero(gs[:, None] == self.guest[None, self.base_sessions : self.n])
            req = np.concatenate([req, r2])
            cand = np.concatenate([cand, c2 + self.base_sessions])
        if len(req) == 0:
            return at, sess
        cand_at = self.would_be_checkout(cand)
        ok = (
            (self.start[cand] >= earliest[req])
            & (cand_at >= earliest[req])
            & (cand_at <= latest[req])
            & (np.abs(cand_at - target[req]) <= (lag[req] / 4).astype(np.int64))
        )
        req, cand, cand_at = req[ok], cand[ok], cand_at[ok]
        if len(req) == 0:
            return at, sess
        order = np.lexsort((np.abs(cand_at - target[req]), req))
        req, cand, cand_at = req[order], cand[order], cand_at[order]
        new = np.ones(len(req), dtype=bool)
        new[1:] = req[1:] != req[:-1]
        at[req[new]] = cand_at[new]
        sess[req[new]] = cand[new]
        return at, sess

    def _draw_gaps(self, timeout: np.ndarray) -> np.ndarray:
        return tail_gaps(self.world, self.rng, timeout)

    def _add_sessions(
        self,
        gs: np.ndarray,
        s0: np.ndarray,
        start: np.ndarray,
        last_start: np.ndarray,
        gaps: np.ndarray,
        item: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Open a session at `start` (or as soon after as one of the guest's browsers is free,
        no later than `last_start`) that goes straight to the goal product and buys it."""
        n = len(gs)
        span = gaps[:, Slot.CONV_ADD :].sum(axis=1)
        timeout = self.visits.guest_timeout[gs]
        best = np.full(n, _NO, dtype=np.int64)
        best_browser = np.full(n, -1, dtype=np.int64)
        count = self.visits.guest_browser_count[gs]
        for j in range(int(count.max(initial=0))):
            has = j < count
            # The exposure's browser first, then the guest's others in order.
            first_b = self.visits.guest_browsers[gs]
            own = self.browser[s0] - first_b
            slot = np.where(j == 0, own, np.where(j <= own, j - 1, j))
            b = first_b + slot
            at = self._free_from(b, start, span, timeout)
            better = has & (at <= last_start) & (best == _NO)
            best = np.where(better, at, best)
            best_browser = np.where(better, b, best_browser)
        fits = best != _NO
        sess = np.full(n, -1, dtype=np.int64)
        k = int(fits.sum())
        if k == 0:
            return best, sess
        new = np.arange(self.n, self.n + k)
        sess[fits] = new
        x = best[fits]
        g = gaps[fits]
        self._grow(k)
        self.gaps[new] = g
        self.guest[new] = gs[fits]
        self.browser[new] = best_browser[fits]
        self.start[new] = x
        self.end[new] = x + span[fits]
        self.last[new] = x - g[:, Slot.CONV_VIEW]  # so that the tail's product page opens at x
        self.timeout[new] = timeout[fits]
        self.identified[new] = False
        self.new_guest.append(gs[fits])
        self.new_browser.append(best_browser[fits])
        self.open_tails(new, with_conv=True, item=item[fits])
        return best, sess

    @staticmethod
    def _browser_key(browser: np.ndarray, start: np.ndarray) -> np.ndarray:
        return browser.astype(np.int64) * (np.int64(1) << np.int64(42)) + start

    def _free_from(
        self, b: np.ndarray, start: np.ndarray, span: np.ndarray, timeout: np.ndarray
    ) -> np.ndarray:
        """The first time at or after `start` at which browser b can hold a session of this
        span (no overlap with its sessions, timeouts included), found by jumping past the
        sessions in the way a few times; _NO if still none."""
        order, key = self.by_browser, self.browser_key
        last = len(order) - 1
        added = slice(self.base_sessions, self.n)
        at = start.copy()
        free = np.zeros(len(b), dtype=bool)
        for _ in range(_FREE_TRIES):
            # Whatever opens before this session would be over (with its timeout) and is
            # not over itself when it opens is in the way; jump past the latest such one.
            until = at + span + timeout + _GUARD_MS
            pos = np.searchsorted(key, self._browser_key(b, until), side="left") - 1
            s = order[np.clip(pos, 0, last)]
            clear_at = self.end[s] + self.timeout[s] + _GUARD_MS
            blocked = (pos >= 0) & (self.browser[s] == b) & (clear_at > at)
            need = np.where(blocked, clear_at, at)
            if self.n > self.base_sessions:
                over = self.end[added] + self.timeout[added] + _GUARD_MS
                in_way = (
                    (b[:, None] == self.browser[None, added])
                    & (self.start[None, added] < until[:, None])
                    & (at[:, None] < over[None, :])
                )
                need = np.maximum(need, np.where(in_way, over[None, :], 0).max(axis=1))
            free |= need == at
            if free.all():
                break
            at = np.where(free, at, need)
        return np.where(free, at, _NO)

    def _grow(self, k: int) -> None:
        """Room for k more sessions (their columns are set by the caller)."""
        if self.n + k > len(self.guest):
            cap = max(2 * len(self.guest), self.n + k)
            for name in _SESSION_COLUMNS:
                old = getattr(self, name)
                grown = np.empty((cap, *old.shape[1:]), dtype=old.dtype)
                grown[: self.n] = old[: self.n]
                setattr(self, name, grown)
        n = self.n
        self.n += k
        self.tail[n : self.n] = -1
        self.item[n : self.n] = -1
        self.placed[n : self.n] = 0
        self.after_cart[n : self.n] = -1
        self.after_checkout[n : self.n] = -1

    # --- the outcome -----------------------------------------------------------------------

    def plan(self, goal_adds: tuple[np.ndarray, np.ndarray]) -> ConversionPlan:
        """Which tails place their order, and which goal ADDs leave the cart: an order inside a
        window where the goal is forbidden is abandoned, unless it carries a conversion (then
        it goes without the forbidden goal items)."""
        sess, flow = goal_adds
        g = self.guest[sess]
        at = self.tail[sess, Slot.CHECKOUT]
        forbidden = (
            (at >= 0) & (self.forbid_lo[flow, g] <= at) & (at < self.forbid_hi[flow, g])
            if len(sess)
            else np.zeros(0, dtype=bool)
        )
        n = self.n
        spoiled = np.zeros(n, dtype=bool)
        spoiled[sess[forbidden]] = True
        organic = np.zeros(n, dtype=bool)
        organic[: self.base_sessions] = self.visits.organic_buy
        have = self.tail[:n, Slot.CHECKOUT] >= 0
        order = have & ((self.placed[:n] != 0) | (organic & ~spoiled))
        keep = ~(forbidden & order[sess])
        if self.extra:
            es, et, ep, ei = (np.concatenate(c) for c in zip(*self.extra, strict=True))
        else:
            es = et = ep = ei = np.zeros(0, dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        return ConversionPlan(
            assignments=self.assignments,
            sessions=n,
            new_guest=np.concatenate(self.new_guest) if self.new_guest else empty,
            new_browser=np.concatenate(self.new_browser) if self.new_browser else empty,
            gaps=self.gaps[:n],
            tail=self.tail[:n],
            tail_item=self.item[:n],
            order=order,
            carries=self.placed[:n].copy(),
            extra_session=es,
            extra_time=et,
            extra_page=ep,
            extra_item=ei,
            keep_goal_add=keep,
            lost=self.lost,
        )


_SESSION_COLUMNS = (
    "guest",
    "browser",
    "start",
    "end",
    "last",
    "timeout",
    "identified",
    "gaps",
    "tail",
    "item",
    "placed",
    "after_cart",
    "after_checkout",
)


def _column(values: np.ndarray, cap: int, fill: int | bool) -> np.ndarray:
    """A per-session column of `cap` rows: the given values, then `fill`."""
    out = np.full((cap, *values.shape[1:]), fill, dtype=values.dtype)
    out[: len(values)] = values
    return out


def tail_gaps(world: World, rng: np.random.Generator, timeout: np.ndarray) -> np.ndarray:
    """A tail's gaps (ms), one per slot: pages at the profile's page gaps, other events at
    about ten seconds; each under a third of the timeout, so that a missing event never leaves
    a gap the timeout would close the session on."""
    behaviour = world.profile.behaviour
    n = len(timeout)
    pages = [Slot.CONV_VIEW, Slot.CART, Slot.CHECKOUT_VIEW]
    gap = np.empty((n, TAIL_SLOTS))
    page_gap = behaviour.page_gap_seconds
    gap[:, pages] = page_gap.median * np.exp(page_gap.sigma * rng.standard_normal((n, len(pages))))
    slow = [s for s in Slot if s not in pages and s is not Slot.FORCE_CLOSE]
    gap[:, slow] = 10.0 * np.exp(0.6 * rng.standard_normal((n, len(slow))))
    gap[:, Slot.FORCE_CLOSE] = 2.0 + 2.0 * rng.random(n)
    limit = (timeout[:, None] - 5_000) / 3_000.0
    return (np.clip(gap, 2.0, limit) * 1000).astype(np.int64)
