"""One block of guests simulated at once: browsers, sessions, journeys, flow runs and purchases.

Everything is numpy arrays over the whole block (no per-event Python), built in this order:
guests -> browsers -> sessions (start times from the local curves) -> page journeys (a Markov
chain) -> organic carts -> first flow exposures and the conversions they cause -> purchase tails
-> action times -> sessions pushed apart so one browser's sessions never overlap -> TRACKING for
every trigger-page view -> the event table, cut at the window's end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.events.types import EventType
from generator.model.assignment import assign
from generator.model.pools import POOL_SIZE
from generator.model.refs import halves_strings, uuid_bytes, uuid_halves, uuid_u64
from generator.model.world import BLOCK_GUESTS, EXIT, PAGE_CODES, World
from generator.profile import JOURNEY_PAGES, Page

__all__ = ["BlockFacts", "simulate_block"]

_JOURNEY_CODES = np.array([PAGE_CODES[p] for p in JOURNEY_PAGES])
_PRODUCT = PAGE_CODES[Page.PRODUCT]
_SEARCH = PAGE_CODES[Page.SEARCH]
_CATEGORY = PAGE_CODES[Page.CATEGORY]
_CART = PAGE_CODES[Page.CART]
_CHECKOUT = PAGE_CODES[Page.CHECKOUT]
_NONE = -1

# Ordinals place actions inside a session: journey steps first (4 slots a step), then tails.
_SLOT = 4
_TAIL = 100_000
PAY_TYPES = ("Card", "PayPal", "Voucher", "Other")
_PAY_WEIGHTS = np.array([0.7, 0.2, 0.05, 0.05])


@dataclass(frozen=True, slots=True)
class BlockFacts:
    """A block's simulated facts as columns. Indices are local to the block."""

    block: int
    first_guest: int  # global index of the block's first guest
    # refs are kept as (n, 2) uint64 hi/lo ("halves"); the *_ref properties format them
    guest_halves: np.ndarray
    guest_pos: np.ndarray
    guest_first_name: np.ndarray  # index into the POS name pool
    guest_last_name: np.ndarray
    guest_domain: np.ndarray
    guest_browsers: np.ndarray  # first browser index, count in guest_browser_count
    guest_browser_count: np.ndarray
    # browsers
    browser_halves: np.ndarray
    browser_guest: np.ndarray
    browser_channel: np.ndarray  # index into the POS's channels
    browser_agent: np.ndarray
    # sessions
    session_halves: np.ndarray
    session_browser: np.ndarray
    session_order_halves: np.ndarray  # the order's reference if the session buys
    session_pay_type: np.ndarray
    # events, sorted by (created_ms, ref)
    ref_hi: np.ndarray  # the ref's 128 bits as two uint64: sorting them sorts the ref strings
    ref_lo: np.ndarray
    type: np.ndarray
    session: np.ndarray
    created_ms: np.ndarray
    modified_ms: np.ndarray
    page: np.ndarray
    item: np.ndarray  # product item (ADD, product views), or product type for search/category
    flow: np.ndarray
    variant: np.ndarray
    occurred_ms: np.ndarray
    execution_ms: np.ndarray
    execution_halves: np.ndarray
    goal_mask: np.ndarray  # on CHECKOUT: bit f set when the order holds flow f's goal product

    def __len__(self) -> int:
        return len(self.type)

    # String forms, for the dict renderer (the file path never needs them).
    @property
    def guest_ref(self) -> np.ndarray:
        return halves_strings(self.guest_halves)

    @property
    def browser_ref(self) -> np.ndarray:
        return halves_strings(self.browser_halves)

    @property
    def session_ref(self) -> np.ndarray:
        return halves_strings(self.session_halves)

    @property
    def session_order_ref(self) -> np.ndarray:
        return halves_strings(self.session_order_halves)

    @property
    def ref(self) -> np.ndarray:
        return halves_strings(np.stack([self.ref_hi, self.ref_lo], axis=1))

    @property
    def execution_ref(self) -> np.ndarray:
        return halves_strings(self.execution_halves)


def _lognormal(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(n))


def _segment_starts(keys: np.ndarray) -> np.ndarray:
    """For a sorted key array, the index where each element's run of equal keys starts."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(len(keys), dtype=bool)
    new[0] = True
    new[1:] = keys[1:] != keys[:-1]
    return np.maximum.accumulate(np.where(new, np.arange(len(keys)), 0))


def _journeys(world: World, rng: np.random.Generator, sessions: int) -> tuple[np.ndarray, ...]:
    """Page sequences for every session: (session, step, page code)."""
    cum = world.chain_cumulative
    landing = np.cumsum(world.landing)
    state = np.minimum(np.searchsorted(landing, rng.random(sessions), side="right"), EXIT - 1)
    alive = np.arange(sessions)
    out_s, out_k, out_p = [], [], []
    for step in range(world.profile.behaviour.max_pages):
        out_s.append(alive)
        out_k.append(np.full(len(alive), step))
        out_p.append(state)
        u = rng.random(len(alive))
        nxt = (u[:, None] >= cum[state]).sum(axis=1)
        keep = nxt < EXIT
        alive, state = alive[keep], nxt[keep]
        if len(alive) == 0:
            break
    s = np.concatenate(out_s)
    k = np.concatenate(out_k)
    p = _JOURNEY_CODES[np.concatenate(out_p)]
    order = np.lexsort((k, s))
    return s[order], k[order], p[order]


def simulate_block(world: World, block: int) -> BlockFacts:
    """Simulate block `block` of the world's population."""
    profile = world.profile
    behaviour = profile.behaviour
    rng = world.block_rng(block)
    n = world.block_size(block)
    catalog = world.catalog

    # Guests.
    graw = uuid_bytes(rng, n)
    gkey = uuid_u64(graw)
    gpos = rng.choice(len(world.pos_shares), size=n, p=world.pos_shares)
    first_name = rng.integers(0, POOL_SIZE, n)
    last_name = rng.integers(0, POOL_SIZE, n)
    domain = rng.integers(0, 3, n)
    nbrowsers = 1 + rng.choice(len(world.browser_shares), size=n, p=world.browser_shares)
    sigma = profile.population.activity_sigma
    daily_rate = (
        profile.population.sessions_per_week
        / 7.0
        * np.exp(sigma * rng.standard_normal(n) - sigma * sigma / 2)
    )
    identifies = rng.random(n) < profile.population.identify_share

    # Browsers.
    nb = int(nbrowsers.sum())
    browser_guest = np.repeat(np.arange(n), nbrowsers)
    gfirst_browser = np.concatenate([[0], np.cumsum(nbrowsers)[:-1]])
    braw = uuid_bytes(rng, nb)
    nchannels = np.array([len(p.channels) for p in profile.points_of_sale])
    browser_channel = (rng.random(nb) * nchannels[gpos[browser_guest]]).astype(np.int64)
    browser_agent = rng.integers(0, POOL_SIZE, nb)

    # Sessions: how many, on which browser, when they start.
    nsess = rng.poisson(daily_rate * world.days)
    S = int(nsess.sum())
    sguest = np.repeat(np.arange(n), nsess)
    sbrowser = gfirst_browser[sguest] + (rng.random(S) * nbrowsers[sguest]).astype(np.int64)
    spos = gpos[sguest]
    sstart = np.empty(S, dtype=np.int64)
    for p, clock in enumerate(world.clocks):
        mask = spos == p
        sstart[mask] = clock.sample(rng, int(mask.sum()))
    stimeout = world.timeout_ms[spos]

    # Journeys and what happens on each page.
    a_sess, a_step, a_page = _journeys(world, rng, S)
    npages = len(a_sess)
    ptype = rng.choice(len(catalog.type_names), size=npages, p=catalog.type_weights)
    a_item = np.full(npages, _NONE, dtype=np.int64)
    is_product = a_page == _PRODUCT
    a_item[is_product] = catalog.sample_items(rng, ptype[is_product])
    on_type = (a_page == _SEARCH) | (a_page == _CATEGORY)
    a_item[on_type] = ptype[on_type]
    a_ord = a_step * _SLOT
    a_type = np.full(npages, EventType.VIEW, dtype=np.int8)

    # Organic carts: items of non-goal types added from product pages.
    adds = is_product & world.organic_type[catalog.item_type[np.maximum(a_item, 0)]]
    adds &= rng.random(npages) < behaviour.add_to_cart_rate
    searches = a_page == _SEARCH
    has_add = np.bincount(a_sess[adds], minlength=S) > 0
    organic_buy = has_add & (rng.random(S) < behaviour.organic_purchase_rate)

    # First exposure of each guest to each flow, and whether it converts.
    journey_guest = sguest[a_sess]
    view_time_guess = sstart[a_sess] + a_step * 30_000
    buy_into = organic_buy.copy()
    conv_sess: list[np.ndarray] = []
    conv_flow: list[np.ndarray] = []
    # Sessions of a guest in time order, to find "the next session" for delayed conversions.
    by_guest = np.lexsort((sstart, sguest))
    next_session = np.full(S, _NONE, dtype=np.int64)
    same_guest = sguest[by_guest[1:]] == sguest[by_guest[:-1]]
    next_session[by_guest[:-1][same_guest]] = by_guest[1:][same_guest]
    assignments = [assign(world.flows, f, gkey) for f in range(len(profile.flows))]
    for f in range(len(profile.flows)):
        exposed = _triggers(world, f, a_page, a_item) & (assignments[f][journey_guest] >= 0)
        idx = np.flatnonzero(exposed)
        if len(idx) == 0:
            continue
        order = idx[np.lexsort((view_time_guess[idx], journey_guest[idx]))]
        firsts = order[_first_of_runs(journey_guest[order])]
        g = journey_guest[firsts]
        variant = assignments[f][g]
        converts = rng.random(len(firsts)) < world.conversion[f][variant]
        target = a_sess[firsts[converts]]
        later = rng.random(len(target)) >= behaviour.same_session_conversion
        nxt = next_session[target]
        ok = later & (nxt >= 0)
        ok[ok] &= sstart[nxt[ok]] - sstart[target[ok]] < world.attribution_ms[f] // 2
        target = np.where(ok, nxt, target)
        conv_sess.append(target)
        conv_flow.append(np.full(len(target), f))
        buy_into[target] = True

    # Tail actions: conversion items (view + add), then checkout, clear cart, force close.
    csess = np.concatenate(conv_sess) if conv_sess else np.zeros(0, dtype=np.int64)
    cflow = np.concatenate(conv_flow) if conv_flow else np.zeros(0, dtype=np.int64)
    citem = catalog.sample_items(rng, world.goal_type[cflow]) if len(cflow) else csess
    crank = np.arange(len(csess)) * 2
    clear = has_add & ~buy_into & (rng.random(S) < behaviour.clear_cart_rate)
    force = rng.random(S) < behaviour.force_close_rate
    buyers = np.flatnonzero(buy_into)
    # Identity: identifying guests say who they are in their first session; every buyer does
    # at checkout.
    first_sess = by_guest[_first_of_runs(sguest[by_guest])] if S else by_guest
    identify_sess = first_sess[identifies[sguest[first_sess]]]
    identify_step = (rng.random(len(identify_sess)) * 3).astype(np.int64)

    parts_sess = [
        a_sess,
        a_sess[searches],
        a_sess[adds],
        identify_sess,
        csess,
        csess,
        *([buyers] * 6),
        np.flatnonzero(clear),
        np.flatnonzero(force),
    ]
    nb_ = len(buyers)
    parts_ord = [
        a_ord,
        a_ord[searches] + 1,
        a_ord[adds] + 2,
        identify_step * _SLOT + 3,
        _TAIL + crank,
        _TAIL + crank + 1,
        *[np.full(nb_, 2 * _TAIL + k) for k in range(6)],
        np.full(int(clear.sum()), 2 * _TAIL),
        np.full(int(force.sum()), 3 * _TAIL),
    ]
    E = EventType
    parts_type = [
        a_type,
        np.full(int(searches.sum()), E.SEARCH),
        np.full(int(adds.sum()), E.ADD),
        np.full(len(identify_sess), E.IDENTITY),
        np.full(len(csess), E.VIEW),
        np.full(len(csess), E.ADD),
        np.full(nb_, E.VIEW),
        np.full(nb_, E.IDENTITY),
        np.full(nb_, E.CONFIRM),
        np.full(nb_, E.VIEW),
        np.full(nb_, E.CHECKOUT),
        np.full(nb_, E.PAYMENT),
        np.full(int(clear.sum()), E.CLEAR_CART),
        np.full(int(force.sum()), E.FORCE_CLOSE),
    ]
    none = np.full(nb_, _NONE)
    parts_page = [
        a_page,
        a_page[searches],
        a_page[adds],
        np.full(len(identify_sess), _NONE),
        np.full(len(csess), _PRODUCT),
        np.full(len(csess), _PRODUCT),
        np.full(nb_, _CART),
        none,
        none,
        np.full(nb_, _CHECKOUT),
        none,
        none,
        np.full(int(clear.sum()), _NONE),
        np.full(int(force.sum()), _NONE),
    ]
    parts_item = [
        a_item,
        a_item[searches],
        a_item[adds],
        np.full(len(identify_sess), _NONE),
        citem,
        citem,
        *([none] * 6),
        np.full(int(clear.sum()), _NONE),
        np.full(int(force.sum()), _NONE),
    ]
    x_sess = np.concatenate(parts_sess)
    x_ord = np.concatenate(parts_ord)
    x_type = np.concatenate(parts_type).astype(np.int8)
    x_page = np.concatenate(parts_page).astype(np.int8)
    x_item = np.concatenate(parts_item).astype(np.int64)
    order = np.lexsort((x_ord, x_sess))
    x_sess, x_type, x_page, x_item = x_sess[order], x_type[order], x_page[order], x_item[order]

    # Identity in the checkout tail only for buyers who have not identified earlier that session.
    dup_identity = (x_type == E.IDENTITY) & _repeats_in_session(x_sess, x_type == E.IDENTITY)
    keep = ~dup_identity
    x_sess, x_type, x_page, x_item = x_sess[keep], x_type[keep], x_page[keep], x_item[keep]

    # Gaps between a session's actions; the first action of a session starts it.
    m = len(x_sess)
    limit = (stimeout[x_sess] - 5_000) / 1000.0
    gap = np.empty(m)
    view = x_type == E.VIEW
    gap[view] = _lognormal(
        rng, behaviour.page_gap_seconds.median, behaviour.page_gap_seconds.sigma, int(view.sum())
    )
    quick = (x_type == E.SEARCH) | (x_type == E.FORCE_CLOSE)
    gap[quick] = 1.0 + 3.0 * rng.random(int(quick.sum()))
    slow = ~view & ~quick
    gap[slow] = _lognormal(rng, 10.0, 0.6, int(slow.sum()))
    gap = np.clip(gap, 2.0, limit)
    gap[quick] = np.minimum(gap[quick], 4.0)
    starts = _segment_starts(x_sess)
    gap[starts == np.arange(m)] = 0.0
    gap_ms = (gap * 1000).astype(np.int64)
    csum = np.cumsum(gap_ms)
    offset = csum - csum[starts]
    x_time = sstart[x_sess] + offset

    # Push sessions apart so that on each browser the next one opens only after the previous
    # one has timed out: s'_i = D_i + max_{j<=i}(s_j - D_j), D the running sum of
    # (duration + timeout) over the browser's earlier sessions.
    last = np.zeros(S, dtype=np.int64)
    np.maximum.at(last, x_sess, offset)
    span = last + 1_000 + stimeout + 1_000
    border = np.lexsort((sstart, sbrowser))
    b_sorted = sbrowser[border]
    run_start = _segment_starts(b_sorted)
    d = span[border]
    excl = np.cumsum(d) - d
    excl -= excl[run_start]
    big = np.int64(1) << np.int64(42)
    base = (sstart[border] - world.start_ms) - excl + b_sorted.astype(np.int64) * big
    shifted = np.maximum.accumulate(base) - b_sorted.astype(np.int64) * big + excl
    new_start = np.empty(S, dtype=np.int64)
    new_start[border] = shifted + world.start_ms
    x_time = x_time + (new_start - sstart)[x_sess]

    # Client events are stored a little after they happen.
    x_created = x_time + rng.integers(20, 400, m)

    # TRACKING: every view of a trigger page runs each flow the guest is allocated to.
    t_parts: list[tuple[np.ndarray, ...]] = []
    vidx = np.flatnonzero(x_type == E.VIEW)
    vguest = sguest[x_sess[vidx]]
    for f, flow in enumerate(profile.flows):
        hit = _triggers(world, f, x_page[vidx], x_item[vidx]) & (assignments[f][vguest] >= 0)
        src = vidx[hit]
        k = len(src)
        if k == 0:
            continue
        occurred = x_time[src] + rng.integers(30, 250, k)
        execution = np.clip(
            np.rint(_lognormal(rng, flow.decision_time_ms.median, flow.decision_time_ms.sigma, k)),
            1,
            400,
        ).astype(np.int64)
        created = occurred + execution + rng.integers(5, 300, k)
        t_parts.append(
            (src, occurred, execution, created, np.full(k, f), assignments[f][vguest[hit]])
        )
    if t_parts:
        t_src, t_occ, t_exe, t_created, t_flow, t_var = (
            np.concatenate(c) for c in zip(*t_parts, strict=True)
        )
    else:
        t_src = t_occ = t_exe = t_created = t_flow = t_var = np.zeros(0, dtype=np.int64)
    k = len(t_src)

    # The event table: client events then TRACKING, cut at the window's end.
    e_type = np.concatenate([x_type, np.full(k, E.TRACKING, dtype=np.int8)])
    e_sess = np.concatenate([x_sess, x_sess[t_src]])
    e_created = np.concatenate([x_created, t_created])
    e_page = np.concatenate([x_page, np.full(k, _NONE, dtype=np.int8)])
    e_item = np.concatenate([x_item, np.full(k, _NONE)])
    e_flow = np.concatenate([np.full(m, _NONE), t_flow]).astype(np.int16)
    e_var = np.concatenate([np.full(m, _NONE), t_var]).astype(np.int16)
    e_occ = np.concatenate([np.zeros(m, dtype=np.int64), t_occ])
    e_exe = np.concatenate([np.zeros(m, dtype=np.int64), t_exe])
    total = m + k
    ref_raw = uuid_bytes(rng, total)
    ref_halves = uuid_halves(ref_raw)
    ref_hi, ref_lo = ref_halves[:, 0], ref_halves[:, 1]
    exec_raw = uuid_bytes(rng, total)
    modified = e_created + rng.integers(0, 20, total)

    # Goal mask of each order: flows whose goal type was added to the session's cart.
    goal_mask = np.zeros(S, dtype=np.int64)
    add_rows = np.flatnonzero(x_type == E.ADD)
    add_types = catalog.item_type[x_item[add_rows]]
    for f in range(len(profile.flows)):
        rows = add_rows[add_types == world.goal_type[f]]
        # Repeated sessions are fine: each write ORs the same bit into the same old value.
        goal_mask[x_sess[rows]] |= np.int64(1) << np.int64(f)
    e_goal = np.where(e_type == E.CHECKOUT, goal_mask[e_sess], 0)

    order = _time_order(e_created, ref_hi, ref_lo, e_created < world.end_ms)

    sraw = uuid_bytes(rng, S)
    oraw = uuid_bytes(rng, S)
    kept_exec = exec_raw[order]
    return BlockFacts(
        block=block,
        first_guest=block * BLOCK_GUESTS,
        guest_halves=uuid_halves(graw),
        guest_pos=gpos,
        guest_first_name=first_name,
        guest_last_name=last_name,
        guest_domain=domain,
        guest_browsers=gfirst_browser,
        guest_browser_count=nbrowsers,
        browser_halves=uuid_halves(braw),
        browser_guest=browser_guest,
        browser_channel=browser_channel,
        browser_agent=browser_agent,
        session_halves=uuid_halves(sraw),
        session_browser=sbrowser,
        session_order_halves=uuid_halves(oraw),
        session_pay_type=rng.choice(len(PAY_TYPES), size=S, p=_PAY_WEIGHTS),
        ref_hi=ref_hi[order],
        ref_lo=ref_lo[order],
        type=e_type[order],
        session=e_sess[order],
        created_ms=e_created[order],
        modified_ms=modified[order],
        page=e_page[order],
        item=e_item[order],
        flow=e_flow[order],
        variant=e_var[order],
        occurred_ms=e_occ[order],
        execution_ms=e_exe[order],
        execution_halves=uuid_halves(kept_exec),
        goal_mask=e_goal[order],
    )


def _time_order(
    created: np.ndarray, hi: np.ndarray, lo: np.ndarray, keep: np.ndarray
) -> np.ndarray:
    """Indices of the kept events in (createdAt, ref) order. One argsort on a key that packs
    createdAt with the ref's top bits; a full three-key sort only if that key ever ties."""
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return idx
    c = created[idx]
    rel = (c - c.min()).astype(np.uint64)
    if int(rel.max()) < 1 << 40:
        key = (rel << np.uint64(24)) | (hi[idx] >> np.uint64(40))
        order = np.argsort(key, kind="stable")
        k = key[order]
        if not (k[1:] == k[:-1]).any():
            return idx[order]
    return idx[np.lexsort((lo[idx], hi[idx], c))]


def _triggers(world: World, f: int, page: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Which page views run flow f (its trigger pages, and product types if it names any)."""
    hit = np.isin(page, world.trigger_pages[f])
    types = world.trigger_types[f]
    if len(types):
        on_product = page == _PRODUCT
        typed = np.isin(world.catalog.item_type[np.maximum(item, 0)], types)
        hit &= ~on_product | typed
    return hit


def _first_of_runs(keys: np.ndarray) -> np.ndarray:
    """Indices of the first element of each run of equal keys in a sorted array."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(len(keys), dtype=bool)
    new[0] = True
    new[1:] = keys[1:] != keys[:-1]
    return np.flatnonzero(new)


def _repeats_in_session(sess: np.ndarray, flag: np.ndarray) -> np.ndarray:
    """True where `flag` is set and an earlier row of the same session also had it set."""
    count = np.cumsum(flag)
    starts = _segment_starts(sess)
    before = count - flag - (count[starts] - flag[starts])
    return flag & (before > 0)
