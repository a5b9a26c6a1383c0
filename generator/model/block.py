"""One block of guests simulated at once: browsers, sessions, journeys, flow runs and purchases.

Everything is numpy arrays over the whole block (no per-event Python). `simulate_block` runs
named stages in a fixed order on the block's one random stream, each returning a frozen result:
guests -> browsers -> sessions (start times from the local curves) -> page views (a Markov
chain) -> organic carts (goal products too, at the baseline rate) -> journeys, timed (sessions
pushed apart so one browser's sessions never overlap, with room kept after each journey for a
checkout tail) -> conversions (`conversion.py`: each allocated guest's outcome drawn once, its
order placed after the first exposure) -> actions (journeys, checkout tails and end markers,
with the times they are stored) -> flow runs (TRACKING for every trigger-page view, stored after
it) -> the event table, cut at the window's end and time-ordered -> purchases (session and order
refs, pay types, goal masks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.model import orders as order_model
from generator.model.arrivals import GuestVisits
from generator.model.assignment import assign_block
from generator.model.baskets import basket_rng, extra_items, quantities
from generator.model.conversion import ConversionPlan, Slot, Visits, plan_conversions, tail_gaps
from generator.model.identity import guest_checkout
from generator.model.pools import POOL_SIZE
from generator.model.refs import halves_strings, uuid_bytes, uuid_halves, uuid_u64
from generator.model.world import BLOCK_GUESTS, EXIT, PAGE_CODES, World
from generator.profile import JOURNEY_PAGES, Page
from generator.vocabulary import EMAIL_DOMAINS, PAY_TYPES, EventType

__all__ = ["BlockFacts", "simulate_block"]

_JOURNEY_CODES = np.array([PAGE_CODES[p] for p in JOURNEY_PAGES])
_PRODUCT = PAGE_CODES[Page.PRODUCT]
_SEARCH = PAGE_CODES[Page.SEARCH]
_CATEGORY = PAGE_CODES[Page.CATEGORY]
_CART = PAGE_CODES[Page.CART]
_CHECKOUT = PAGE_CODES[Page.CHECKOUT]
_NONE = -1

# Ordinals place a journey's events inside its session: 4 slots a step.
_SLOT = 4
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
    guest_since_ms: np.ndarray  # first seen: its first visit, or before the window (returning)
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
    quantity: np.ndarray  # on ADD: the quantity added
    failed: np.ndarray  # stored FAILED (a CONFIRM and its CHECKOUT)
    order_status: np.ndarray  # on CHECKOUT: index into ORDER_STATUSES; on a FAILED CONFIRM,
    # `item` is the item it lists that was never added

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
    """Page sequences for every session: (session, step, page code). A share bounceRate of
    sessions leave after their landing page; the others go on from it (their second page drawn
    from the landing page's row without its leaving), then follow the chain, each with its own
    depth: its chances to leave are the chain's times a lognormal factor (median 1, depthSigma),
    so some sessions browse far longer than others."""
    behaviour = world.profile.behaviour
    cum = world.chain_cumulative
    landing = np.cumsum(world.landing)
    state = np.minimum(np.searchsorted(landing, rng.random(sessions), side="right"), EXIT - 1)
    stays = rng.random(sessions) >= behaviour.bounce_rate
    restless = np.exp(behaviour.depth_sigma * rng.standard_normal(sessions))
    alive = np.arange(sessions)
    out_s, out_k, out_p = [], [], []
    for step in range(behaviour.max_pages):
        out_s.append(alive)
        out_k.append(np.full(len(alive), step))
        out_p.append(state)
        u = rng.random(len(alive))
        going_on = cum[state, EXIT - 1]
        if step == 0:
            # Leaving after the landing page is the bounce draw's to decide.
            leave = np.where(stays[alive], 0.0, 1.0)
        else:
            leave = np.minimum(1.0, (1.0 - going_on) * restless[alive])
        # Leave below `leave`; above it, the chain's next page, its row scaled to the rest.
        v = (u - leave) / np.maximum(1.0 - leave, 1e-12) * going_on
        nxt = np.where(u < leave, EXIT, (v[:, None] >= cum[state]).sum(axis=1))
        keep = nxt < EXIT
        alive, state = alive[keep], nxt[keep]
        if len(alive) == 0:
            break
    s = np.concatenate(out_s)
    k = np.concatenate(out_k)
    p = _JOURNEY_CODES[np.concatenate(out_p)]
    order = np.lexsort((k, s))
    return s[order], k[order], p[order]


@dataclass(frozen=True, slots=True)
class Guests:
    """Per guest: ref, home point of sale, name and domain picks, browsers, activity."""

    raw: np.ndarray  # (n, 16) uuid bytes
    key: np.ndarray  # uint64 assignment key
    pos: np.ndarray
    first_name: np.ndarray
    last_name: np.ndarray
    domain: np.ndarray
    browser_count: np.ndarray
    visits: GuestVisits  # new or returning, first seen, and every visit in the window
    identifies: np.ndarray  # says who it is in its first session


@dataclass(frozen=True, slots=True)
class Browsers:
    """Per browser: its guest, ref, channel and user agent; per guest, its first browser."""

    guest: np.ndarray
    first_of_guest: np.ndarray
    raw: np.ndarray
    channel: np.ndarray
    agent: np.ndarray


@dataclass(frozen=True, slots=True)
class Sessions:
    """Per session: guest, browser, point of sale, start (before pushing apart), timeout."""

    guest: np.ndarray
    browser: np.ndarray
    pos: np.ndarray
    start: np.ndarray
    timeout: np.ndarray
    by_guest: np.ndarray  # session indices sorted by (guest, start)

    def __len__(self) -> int:
        return len(self.guest)


@dataclass(frozen=True, slots=True)
class PageViews:
    """Every journey step: (session, step, page code) and the item or product type it shows."""

    session: np.ndarray
    step: np.ndarray
    page: np.ndarray
    item: np.ndarray  # product item on product pages, product type on search/category

    def __len__(self) -> int:
        return len(self.session)


@dataclass(frozen=True, slots=True)
class Carts:
    """Organic adds to cart (a mask over page views) and the sessions that buy them."""

    adds: np.ndarray
    has_add: np.ndarray  # per session
    organic_buy: np.ndarray  # per session


@dataclass(frozen=True, slots=True)
class Journeys:
    """Each session's journey as timed client events (views with their searches and adds, and
    identities); per session its pushed-apart start, last journey event, the end of the room
    kept for a checkout tail, and that tail's gaps."""

    session: np.ndarray
    type: np.ndarray
    page: np.ndarray
    item: np.ndarray
    time: np.ndarray
    start: np.ndarray
    last: np.ndarray
    end: np.ndarray
    gaps: np.ndarray  # (sessions, TAIL_SLOTS) ms
    identified: np.ndarray  # an IDENTITY in the journey
    by_browser: np.ndarray  # session indices by browser, then start

    def __len__(self) -> int:
        return len(self.session)


@dataclass(frozen=True, slots=True)
class Conversions:
    """The conversion plan, and which journey ADDs are of goal products (rows into Journeys)."""

    plan: ConversionPlan
    goal_rows: np.ndarray
    session_guest: np.ndarray  # every session's guest, added sessions included
    session_browser: np.ndarray


@dataclass(frozen=True, slots=True)
class Actions:
    """Client events of every session in session order, when they happen and are stored."""

    session: np.ndarray
    type: np.ndarray
    page: np.ndarray
    item: np.ndarray
    time: np.ndarray
    created: np.ndarray
    quantity: np.ndarray
    failed: np.ndarray
    order_status: np.ndarray
    after_origin: np.ndarray  # per after-sale session (numbered from plan.sessions on): its order's

    def __len__(self) -> int:
        return len(self.session)


@dataclass(frozen=True, slots=True)
class FlowRuns:
    """TRACKING rows: the page view that ran the flow, its times, flow and variant."""

    source: np.ndarray  # index into the actions
    occurred: np.ndarray
    execution: np.ndarray
    created: np.ndarray
    flow: np.ndarray
    variant: np.ndarray

    def __len__(self) -> int:
        return len(self.source)


@dataclass(frozen=True, slots=True)
class EventTable:
    """Client events and TRACKING together, cut at the window's end, in (createdAt, ref) order."""

    ref_hi: np.ndarray
    ref_lo: np.ndarray
    type: np.ndarray
    session: np.ndarray
    created_ms: np.ndarray
    modified_ms: np.ndarray
    page: np.ndarray
    item: np.ndarray
    flow: np.ndarray
    variant: np.ndarray
    occurred_ms: np.ndarray
    execution_ms: np.ndarray
    execution_halves: np.ndarray
    quantity: np.ndarray
    failed: np.ndarray
    order_status: np.ndarray


@dataclass(frozen=True, slots=True)
class Purchases:
    """Per session: its ref, its order's ref and pay type, and the flows whose goal it bought."""

    session_halves: np.ndarray  # drawn here, last, where the draw order has always had them
    order_halves: np.ndarray
    pay_type: np.ndarray
    goal_mask: np.ndarray  # bit f set when the cart holds flow f's goal product


def simulate_block(world: World, block: int) -> BlockFacts:
    """Simulate block `block` of the world's population.

    The stages run in a fixed order on one random stream: reordering them (or any draw inside
    them) changes every byte that follows.
    """
    rng = world.block_rng(block)
    guests = _guests(world, rng, world.block_size(block))
    browsers = _browsers(world, rng, guests)
    sessions = _sessions(world, rng, guests, browsers)
    views = _page_views(world, rng, len(sessions))
    carts = _carts(world, rng, views, len(sessions))
    journeys = _journey_events(world, rng, guests, sessions, views, carts)
    conversions = _conversions(world, rng, guests, browsers, sessions, carts, journeys)
    timeout = world.timeout_ms[guests.pos[conversions.session_guest]]
    actions = _actions(world, rng, basket_rng(world.seed, block), journeys, conversions, timeout)
    runs = _flow_runs(world, rng, actions, conversions)
    events = _event_table(world, rng, actions, runs)
    purchases = _purchases(world, rng, actions, conversions.plan.sessions)
    return _facts(block, guests, browsers, conversions, events, purchases, actions)


def _guests(world: World, rng: np.random.Generator, n: int) -> Guests:
    population = world.profile.population
    raw = uuid_bytes(rng, n)
    key = uuid_u64(raw)
    pos = rng.choice(len(world.pos_shares), size=n, p=world.pos_shares)
    first_name = rng.integers(0, POOL_SIZE, n)
    last_name = rng.integers(0, POOL_SIZE, n)
    domain = rng.integers(0, len(EMAIL_DOMAINS), n)
    browser_count = 1 + rng.choice(len(world.browser_shares), size=n, p=world.browser_shares)
    visits = world.arrivals.draw(rng, pos, world.start_ms)
    identifies = rng.random(n) < population.identify_share
    return Guests(raw, key, pos, first_name, last_name, domain, browser_count, visits, identifies)


def _browsers(world: World, rng: np.random.Generator, guests: Guests) -> Browsers:
    counts = guests.browser_count
    nb = int(counts.sum())
    guest = np.repeat(np.arange(len(counts)), counts)
    first_of_guest = np.concatenate([[0], np.cumsum(counts)[:-1]])
    raw = uuid_bytes(rng, nb)
    # Each browser's device, by its point of sale's shares; its channel follows from it.
    pos = guests.pos[guest]
    device = (rng.random(nb)[:, None] >= world.device_cum[pos]).sum(axis=1)
    channel = world.device_channel[pos, device]
    agent = device * POOL_SIZE + rng.integers(0, POOL_SIZE, nb)
    return Browsers(guest, first_of_guest, raw, channel, agent)


def _sessions(
    world: World, rng: np.random.Generator, guests: Guests, browsers: Browsers
) -> Sessions:
    """Each guest's visits (arrivals.py), each on one of its browsers."""
    guest, start = guests.visits.guest, guests.visits.start
    S = len(guest)
    nbrowsers = guests.browser_count[guest]
    browser = browsers.first_of_guest[guest] + (rng.random(S) * nbrowsers).astype(np.int64)
    pos = guests.pos[guest]
    timeout = world.timeout_ms[pos]
    # A guest's sessions in time order, to find its first one.
    by_guest = np.lexsort((start, guest))
    return Sessions(guest, browser, pos, start, timeout, by_guest)


def _page_views(world: World, rng: np.random.Generator, sessions: int) -> PageViews:
    """Page journeys (a Markov chain) and the product or product type each page shows."""
    catalog = world.catalog
    session, step, page = _journeys(world, rng, sessions)
    n = len(session)
    ptype = rng.choice(len(catalog.type_names), size=n, p=catalog.type_weights)
    item = np.full(n, _NONE, dtype=np.int64)
    is_product = page == _PRODUCT
    item[is_product] = catalog.sample_items(rng, ptype[is_product])
    on_type = (page == _SEARCH) | (page == _CATEGORY)
    item[on_type] = ptype[on_type]
    return PageViews(session, step, page, item)


def _carts(world: World, rng: np.random.Generator, views: PageViews, sessions: int) -> Carts:
    """Organic carts: items added from product pages (goal products at the baseline rate), some
    of them bought."""
    behaviour = world.profile.behaviour
    is_product = views.page == _PRODUCT
    rate = world.add_rate[world.catalog.item_type[np.maximum(views.item, 0)]]
    adds = is_product & (rng.random(len(views)) < rate)
    has_add = np.bincount(views.session[adds], minlength=sessions) > 0
    organic_buy = has_add & (rng.random(sessions) < behaviour.organic_purchase_rate)
    return Carts(adds, has_add, organic_buy)


def _journey_events(
    world: World,
    rng: np.random.Generator,
    guests: Guests,
    sessions: Sessions,
    views: PageViews,
    carts: Carts,
) -> Journeys:
    """Every session's journey as client events, in order and timed: its views with their
    searches and adds, and identities (identifying guests say who they are in their first
    session). Sessions are then pushed apart with room for a checkout tail after each journey."""
    S = len(sessions)
    by_guest = sessions.by_guest
    first_sess = by_guest[_first_of_runs(sessions.guest[by_guest])] if S else by_guest
    identify_sess = first_sess[guests.identifies[sessions.guest[first_sess]]]
    identify_step = (rng.random(len(identify_sess)) * 3).astype(np.int64)
    a_sess, a_ord = views.session, views.step * _SLOT
    searches, adds = views.page == _SEARCH, carts.adds
    E = EventType
    parts = [
        _part(a_sess, a_ord, E.VIEW, views.page, views.item),
        _part(a_sess[searches], a_ord[searches] + 1, E.SEARCH, _SEARCH, views.item[searches]),
        _part(a_sess[adds], a_ord[adds] + 2, E.ADD, _PRODUCT, views.item[adds]),
        _part(identify_sess, identify_step * _SLOT + 3, E.IDENTITY, _NONE, _NONE),
    ]
    x_sess, x_ord, x_type, x_page, x_item = (np.concatenate(c) for c in zip(*parts, strict=True))
    order = np.lexsort((x_ord, x_sess))
    x_sess, x_type = x_sess[order], x_type[order].astype(np.int8)
    x_page, x_item = x_page[order].astype(np.int8), x_item[order].astype(np.int64)

    # Gaps between a session's events (the first starts it).
    behaviour = world.profile.behaviour
    m = len(x_sess)
    limit = (sessions.timeout[x_sess] - 5_000) / 1000.0
    gap = np.empty(m)
    view = x_type == E.VIEW
    gap[view] = _lognormal(
        rng, behaviour.page_gap_seconds.median, behaviour.page_gap_seconds.sigma, int(view.sum())
    )
    quick = x_type == E.SEARCH
    gap[quick] = 1.0 + 3.0 * rng.random(int(quick.sum()))
    slow = ~view & ~quick
    gap[slow] = _lognormal(rng, 10.0, 0.6, int(slow.sum()))
    # An ADD of a goal item an order goes without is dropped later, joining its gap to the
    # next page's: so an action's gap and a page's together stay under the timeout.
    action_cap = np.minimum(60.0, limit / 4)
    gap = np.clip(gap, 2.0, np.where(slow, action_cap, limit - np.where(view, action_cap, 0.0)))
    gap[quick] = np.minimum(gap[quick], 4.0)
    starts = _segment_starts(x_sess)
    gap[starts == np.arange(m)] = 0.0
    gap_ms = (gap * 1000).astype(np.int64)
    csum = np.cumsum(gap_ms)
    offset = csum - csum[starts]
    # Offsets grow within a session: its last row holds its last.
    ends = np.flatnonzero(np.append(x_sess[1:] != x_sess[:-1], True)) if m else starts
    last_offset = np.zeros(S, dtype=np.int64)
    last_offset[x_sess[ends]] = offset[ends]
    # Each session's tail gaps, drawn now: the room they need is kept when pushing apart.
    gaps = tail_gaps(world, rng, sessions.timeout)
    reserve = gaps.sum(axis=1)
    start, by_browser = _pushed_apart(world, sessions, last_offset + reserve)
    identified = np.zeros(S, dtype=bool)
    identified[identify_sess] = True
    last = start + last_offset
    return Journeys(
        session=x_sess,
        type=x_type,
        page=x_page,
        item=x_item,
        time=start[x_sess] + offset,
        start=start,
        last=last,
        end=last + reserve,
        gaps=gaps,
        identified=identified,
        by_browser=by_browser,
    )


def _conversions(
    world: World,
    rng: np.random.Generator,
    guests: Guests,
    browsers: Browsers,
    sessions: Sessions,
    carts: Carts,
    journeys: Journeys,
) -> Conversions:
    """Flow allocations per guest, and every conversion decided and placed (conversion.py)."""
    assignments = assign_block(world.flows, guests.key)
    visits = Visits(
        guest=sessions.guest,
        browser=sessions.browser,
        start=journeys.start,
        end=journeys.end,
        last=journeys.last,
        timeout=sessions.timeout,
        identified=journeys.identified,
        organic_buy=carts.organic_buy,
        gaps=journeys.gaps,
        guest_browsers=browsers.first_of_guest,
        guest_browser_count=guests.browser_count,
        guest_timeout=world.timeout_ms[guests.pos],
        guest_checkout=guest_checkout(
            guests.key, guests.identifies, world.profile.population.guest_checkout_share
        ),
        by_guest=sessions.by_guest,
        by_browser=journeys.by_browser,
    )
    view = journeys.type == EventType.VIEW
    add_rows = np.flatnonzero(journeys.type == EventType.ADD)
    goal_flow = world.goal_flow_of_type[world.catalog.item_type[journeys.item[add_rows]]]
    goal_rows = add_rows[goal_flow >= 0]
    plan = plan_conversions(
        world,
        rng,
        visits,
        (journeys.session[view], journeys.time[view], journeys.page[view], journeys.item[view]),
        (journeys.session[goal_rows], goal_flow[goal_flow >= 0]),
        assignments,
    )
    return Conversions(
        plan=plan,
        goal_rows=goal_rows,
        session_guest=np.concatenate([sessions.guest, plan.new_guest]),
        session_browser=np.concatenate([sessions.browser, plan.new_browser]),
    )


# A checkout tail's events in order: (slot, type, page); the order's own only when it is placed.
_TAIL_EVENTS = (
    (Slot.CONV_VIEW, EventType.VIEW, _PRODUCT),
    (Slot.CONV_ADD, EventType.ADD, _PRODUCT),
    (Slot.CART, EventType.VIEW, _CART),
    (Slot.CHECKOUT_VIEW, EventType.VIEW, _CHECKOUT),
)
_ORDER_EVENTS = (
    (Slot.IDENTITY, EventType.IDENTITY),
    (Slot.CONFIRM, EventType.CONFIRM),
    (Slot.CHECKOUT, EventType.CHECKOUT),
    (Slot.PAYMENT, EventType.PAYMENT),
)


def _actions(
    world: World,
    rng: np.random.Generator,
    brng: np.random.Generator,
    journeys: Journeys,
    conversions: Conversions,
    timeout: np.ndarray,
) -> Actions:
    """Every client event of every session in order: the journey (less goal items an order
    goes without), then the checkout tail (a buyer's basket filled from the cart page, the
    order's CONFIRM, CHECKOUT PAYMENT_PENDING, PAYMENT and CHECKOUT CONFIRMED; a failed order's
    CONFIRM and CHECKOUT only), then clear cart and force close; each stored a little after it
    happens, in the order it happens. After them, sessions of one CHECKOUT each: orders
    CANCELLED or REFUNDED after the sale (orders.py), numbered from plan.sessions on. `brng`
    draws the baskets and orders (baskets.py), `rng` the rest."""
    behaviour = world.profile.behaviour
    plan = conversions.plan
    S = plan.sessions
    keep = np.ones(len(journeys), dtype=bool)
    keep[conversions.goal_rows[~plan.keep_goal_add]] = False
    E = EventType
    parts: list[tuple[np.ndarray, ...]] = [
        (
            journeys.session[keep],
            journeys.time[keep],
            journeys.type[keep],
            journeys.page[keep],
            journeys.item[keep],
        )
    ]
    tail = plan.tail
    for slot, etype, page in _TAIL_EVENTS:
        s = np.flatnonzero(tail[:, slot] >= 0)
        item = plan.tail_item[s] if page == _PRODUCT else _NONE
        parts.append(_timed(s, tail[s, slot], etype, page, item))
    # Items added from a tail's pages go before its order's events (ties too).
    parts.append(
        _timed(plan.extra_session, plan.extra_time, E.ADD, plan.extra_page, plan.extra_item)
    )
    failed = order_model.failures(brng, behaviour.orders, plan.order, plan.carries)
    buyers = np.flatnonzero(plan.order)
    catalog = world.catalog
    other = np.flatnonzero(world.goal_flow_of_type < 0)
    basket = extra_items(
        brng,
        behaviour.basket.extra_items,
        buyers,
        tail[buyers, Slot.CART],
        tail[buyers, Slot.CHECKOUT_VIEW],
        other,
        catalog.type_weights[other],
        catalog.type_first_item,
        catalog.type_items,
        catalog.item_price,
    )
    parts.append(_timed(basket[0], basket[1], E.ADD, _CART, basket[2]))
    # A failed CONFIRM lists an item never added: an order whose session added every item
    # the shop sells (a catalog of a few) cannot fail so, and does not.
    failed &= ~_added_every_item(parts, failed, len(catalog.item_type))
    sold = plan.order & ~failed
    for slot, etype in _ORDER_EVENTS:
        placed = sold if slot == Slot.PAYMENT else plan.order
        s = np.flatnonzero((tail[:, slot] >= 0) & placed)
        parts.append(_timed(s, tail[s, slot], etype, _NONE, _NONE))
    # The order CONFIRMED once paid: in the room the tail kept for a CLEAR_CART it never has.
    s = np.flatnonzero(sold)
    confirmed_at = tail[s, Slot.PAYMENT] + plan.gaps[s, Slot.CLEAR_CART]
    parts.append(_timed(s, confirmed_at, E.CHECKOUT, _NONE, _NONE))
    x_sess, x_time, x_type, x_page, x_item = (np.concatenate(c) for c in zip(*parts, strict=True))
    # End markers after the session's last event (its CONFIRMED CHECKOUT, a failed order's
    # CHECKOUT, else its checkout page, else its journey's end): a cart left with items may be
    # cleared.
    last = np.full(S, -1, dtype=np.int64)
    last[: len(journeys.last)] = journeys.last
    order_last = np.where(failed, tail[:, Slot.CHECKOUT], tail[:, Slot.PAYMENT])
    order_last[s] = confirmed_at
    last = np.maximum(last, np.where(plan.order, order_last, tail[:, Slot.CHECKOUT_VIEW]))
    has_add = np.bincount(x_sess[x_type == E.ADD], minlength=S) > 0
    clear = np.flatnonzero(has_add & ~plan.order & (rng.random(S) < behaviour.clear_cart_rate))
    clear_at = last[clear] + plan.gaps[clear, Slot.CLEAR_CART]
    last[clear] = clear_at
    force = np.flatnonzero((rng.random(S) < behaviour.force_close_rate) & (last > 0))
    force_at = last[force] + plan.gaps[force, Slot.FORCE_CLOSE]
    x: list[tuple[np.ndarray, ...]] = [
        (x_sess, x_time, x_type, x_page, x_item),
        _timed(clear, clear_at, E.CLEAR_CART, _NONE, _NONE),
        _timed(force, force_at, E.FORCE_CLOSE, _NONE, _NONE),
    ]
    x_sess, x_time, x_type, x_page, x_item = (np.concatenate(c) for c in zip(*x, strict=True))
    # After the sale: each change in a session of its own, where its browser has none open.
    first_at = np.full(S, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_at, x_sess, x_time)
    last_at = np.full(S, -1, dtype=np.int64)
    np.maximum.at(last_at, x_sess, x_time)
    first_at[last_at < 0] = -1
    origin, change_at, change = order_model.after_sale(
        brng,
        behaviour.orders,
        s,
        confirmed_at,
        conversions.session_browser,
        first_at,
        last_at,
        timeout,
    )
    A = len(origin)
    after = S + np.arange(A)
    x_sess = np.concatenate([x_sess, after])
    x_time = np.concatenate([x_time, change_at])
    x_type = np.concatenate([x_type, np.full(A, E.CHECKOUT)])
    x_page = np.concatenate([x_page, np.full(A, _NONE)])
    x_item = np.concatenate([x_item, np.full(A, _NONE)])
    # In session order, then time: one stable sort on a key packing both.
    key = x_sess.astype(np.int64) * (np.int64(1) << np.int64(41)) + (x_time - world.start_ms)
    order = np.argsort(key, kind="stable")
    x_sess, x_time = x_sess[order], x_time[order]
    x_type, x_item = x_type[order].astype(np.int8), x_item[order].astype(np.int64)
    created = _stored_in_order(world, x_sess, x_time + rng.integers(20, 400, len(x_sess)))
    # Per row: quantities of ADDs, FAILED rows, CHECKOUT statuses.
    adds = np.flatnonzero(x_type == E.ADD)
    quantity = np.zeros(len(x_sess), dtype=np.int16)
    quantity[adds] = quantities(
        brng, behaviour.basket.quantity_shares, world.single_item[x_item[adds]]
    )
    session_failed = np.concatenate([failed, np.zeros(A, dtype=bool)])
    row_failed = session_failed[x_sess] & ((x_type == E.CONFIRM) | (x_type == E.CHECKOUT))
    status = np.full(len(x_sess), _NONE, dtype=np.int8)
    checkout = np.flatnonzero(x_type == E.CHECKOUT)
    first_checkout = np.ones(len(checkout), dtype=bool)
    first_checkout[1:] = x_sess[checkout[1:]] != x_sess[checkout[:-1]]
    status[checkout] = np.where(first_checkout, order_model.PENDING, order_model.CONFIRMED)
    changed = checkout[x_sess[checkout] >= S]
    status[changed] = change[x_sess[changed] - S]
    # A failed CONFIRM lists an item its session never added (kept in its `item`).
    bad = np.flatnonzero(row_failed & (x_type == E.CONFIRM))
    x_item[bad] = _never_added(world, x_sess, x_type, x_item, bad)
    return Actions(
        x_sess,
        x_type,
        x_page[order].astype(np.int8),
        x_item,
        x_time,
        created,
        quantity,
        row_failed,
        status,
        origin,
    )


def _added_every_item(
    parts: list[tuple[np.ndarray, ...]], failed: np.ndarray, n_items: int
) -> np.ndarray:
    """Per session: a failed one whose ADDs so far (`parts`, as `_timed` makes them) hold every
    one of the catalog's `n_items` items."""
    full = np.zeros(len(failed), dtype=bool)
    if not failed.any():
        return full
    sess = np.concatenate([p[0][p[2] == EventType.ADD] for p in parts])
    item = np.concatenate([p[4][p[2] == EventType.ADD] for p in parts])
    mine = failed[sess]
    if np.count_nonzero(mine) < n_items:  # not even one session could hold them all
        return full
    distinct = np.unique(sess[mine] * n_items + item[mine])
    counts = np.bincount(distinct // n_items, minlength=len(failed))[: len(failed)]
    full[:] = counts >= n_items
    return full


def _never_added(
    world: World, sess: np.ndarray, kind: np.ndarray, item: np.ndarray, confirms: np.ndarray
) -> np.ndarray:
    """For each CONFIRM row, an item its session never ADDed: the item after the session's
    first added one, moved on past any other it added (a few rows: a Python loop)."""
    if len(confirms) == 0:
        return np.zeros(0, dtype=np.int64)
    adds = np.flatnonzero(kind == EventType.ADD)
    wanted = set(sess[confirms].tolist())
    carts: dict[int, set[int]] = {}
    for s_, x_ in zip(sess[adds].tolist(), item[adds].tolist(), strict=True):
        if s_ in wanted:
            carts.setdefault(s_, set()).add(x_)
    n_items = len(world.catalog.item_type)
    out = []
    for s_ in sess[confirms].tolist():
        cart = carts.get(s_, set())
        if len(cart) >= n_items:  # `_added_every_item` keeps such orders from failing
            raise AssertionError(f"a failed CONFIRM whose session added all {n_items} items")
        x_ = (min(cart) + 1) % n_items if cart else 0
        while x_ in cart:
            x_ = (x_ + 1) % n_items
        out.append(x_)
    return np.array(out, dtype=np.int64)


def _timed(
    sess: np.ndarray,
    time: np.ndarray,
    etype: int,
    page: np.ndarray | int,
    item: np.ndarray | int,
) -> tuple[np.ndarray, ...]:
    """Columns (session, time, type, page, item) of one kind of event; scalars are spread."""
    n = len(sess)

    def column(v: np.ndarray | int) -> np.ndarray:
        return v if isinstance(v, np.ndarray) else np.full(n, int(v), dtype=np.int64)

    return sess, time, column(etype), column(page), column(item)


def _stored_in_order(world: World, sess: np.ndarray, created: np.ndarray) -> np.ndarray:
    """Store times made strictly increasing within each session (rows in session order), so
    that an item added between two close events is still stored between them."""
    m = len(sess)
    if m == 0:
        return created
    idx = np.arange(m, dtype=np.int64)
    big = np.int64(1) << np.int64(45)
    d = (created - world.start_ms - idx) + sess.astype(np.int64) * big
    return np.maximum.accumulate(d) - sess.astype(np.int64) * big + world.start_ms + idx


def _part(
    sess: np.ndarray,
    ordinal: np.ndarray | int,
    etype: int,
    page: np.ndarray | int,
    item: np.ndarray | int,
) -> tuple[np.ndarray, ...]:
    """Columns (session, ordinal, type, page, item) of one kind of action; scalars are spread."""
    n = len(sess)

    def column(v: np.ndarray | int) -> np.ndarray:
        return v if isinstance(v, np.ndarray) else np.full(n, int(v), dtype=np.int64)

    return sess, column(ordinal), column(etype), column(page), column(item)


def _pushed_apart(
    world: World, sessions: Sessions, busy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Session starts moved so that on each browser the next one opens only after the previous
    one (busy for `busy` ms from its start) has timed out: s'_i = D_i + max_{j<=i}(s_j - D_j),
    D the running sum of (busy + timeout) over the browser's earlier sessions. Also the
    sessions by browser and start (the same order before and after)."""
    sstart, sbrowser = sessions.start, sessions.browser
    span = busy + 1_000 + sessions.timeout + 1_000
    border = np.lexsort((sstart, sbrowser))
    b_sorted = sbrowser[border]
    run_start = _segment_starts(b_sorted)
    d = span[border]
    excl = np.cumsum(d) - d
    excl -= excl[run_start]
    big = np.int64(1) << np.int64(42)
    base = (sstart[border] - world.start_ms) - excl + b_sorted.astype(np.int64) * big
    shifted = np.maximum.accumulate(base) - b_sorted.astype(np.int64) * big + excl
    new_start = np.empty(len(sessions), dtype=np.int64)
    new_start[border] = shifted + world.start_ms
    return new_start, border


def _flow_runs(
    world: World, rng: np.random.Generator, actions: Actions, conversions: Conversions
) -> FlowRuns:
    """TRACKING: every view of a trigger page runs each flow the guest is allocated to. The
    flow runs once the view is stored, so its TRACKING is stored after it."""
    assignments = conversions.plan.assignments
    t_parts: list[tuple[np.ndarray, ...]] = []
    vidx = np.flatnonzero(actions.type == EventType.VIEW)
    vguest = conversions.session_guest[actions.session[vidx]]
    for f, flow in enumerate(world.profile.flows):
        hit = world.triggers(f, actions.page[vidx], actions.item[vidx]) & (
            assignments[f][vguest] >= 0
        )
        src = vidx[hit]
        k = len(src)
        if k == 0:
            continue
        occurred = actions.created[src] + rng.integers(1, 250, k)
        execution = np.clip(
            np.rint(_lognormal(rng, flow.decision_time_ms.median, flow.decision_time_ms.sigma, k)),
            1,
            400,
        ).astype(np.int64)
        created = occurred + execution + rng.integers(5, 300, k)
        variant = assignments.sticky(f, vguest[hit], occurred)  # optimized: from the first run
        t_parts.append((src, occurred, execution, created, np.full(k, f), variant))
    if not t_parts:
        empty = np.zeros(0, dtype=np.int64)
        return FlowRuns(empty, empty, empty, empty, empty, empty)
    return FlowRuns(*(np.concatenate(c) for c in zip(*t_parts, strict=True)))


def _event_table(
    world: World, rng: np.random.Generator, actions: Actions, runs: FlowRuns
) -> EventTable:
    """Client events then TRACKING, with refs, cut at the window's end and put in time order."""
    m, k = len(actions), len(runs)
    e_type = np.concatenate([actions.type, np.full(k, EventType.TRACKING, dtype=np.int8)])
    e_sess = np.concatenate([actions.session, actions.session[runs.source]])
    e_created = np.concatenate([actions.created, runs.created])
    e_page = np.concatenate([actions.page, np.full(k, _NONE, dtype=np.int8)])
    e_item = np.concatenate([actions.item, np.full(k, _NONE)])
    e_flow = np.concatenate([np.full(m, _NONE), runs.flow]).astype(np.int16)
    e_var = np.concatenate([np.full(m, _NONE), runs.variant]).astype(np.int16)
    e_occ = np.concatenate([np.zeros(m, dtype=np.int64), runs.occurred])
    e_exe = np.concatenate([np.zeros(m, dtype=np.int64), runs.execution])
    e_qty = np.concatenate([actions.quantity, np.zeros(k, dtype=np.int16)])
    e_failed = np.concatenate([actions.failed, np.zeros(k, dtype=bool)])
    e_status = np.concatenate([actions.order_status, np.full(k, _NONE, dtype=np.int8)])
    total = m + k
    ref_halves = uuid_halves(uuid_bytes(rng, total))
    ref_hi, ref_lo = ref_halves[:, 0], ref_halves[:, 1]
    exec_raw = uuid_bytes(rng, total)
    modified = e_created + rng.integers(0, 20, total)
    order = _time_order(e_created, ref_hi, ref_lo, e_created < world.end_ms)
    return EventTable(
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
        execution_halves=uuid_halves(exec_raw[order]),
        quantity=e_qty[order],
        failed=e_failed[order],
        order_status=e_status[order],
    )


def _purchases(
    world: World, rng: np.random.Generator, actions: Actions, sessions: int
) -> Purchases:
    """Session and order refs, pay types, and each order's goal mask: the flows whose goal
    product type was added to the session's cart. An after-sale session (after the block's
    `sessions`) carries its order's ref; its own ref is drawn last."""
    after = actions.after_origin
    goal_mask = np.zeros(sessions + len(after), dtype=np.int64)
    add_rows = np.flatnonzero(actions.type == EventType.ADD)
    add_types = world.catalog.item_type[actions.item[add_rows]]
    for f in range(len(world.profile.flows)):
        rows = add_rows[add_types == world.goal_type[f]]
        # Repeated sessions are fine: each write ORs the same bit into the same old value.
        goal_mask[actions.session[rows]] |= np.int64(1) << np.int64(f)
    session_halves = uuid_halves(uuid_bytes(rng, sessions))
    order_halves = uuid_halves(uuid_bytes(rng, sessions))
    pay_type = rng.choice(len(PAY_TYPES), size=sessions, p=_PAY_WEIGHTS)
    if len(after):
        session_halves = np.concatenate([session_halves, uuid_halves(uuid_bytes(rng, len(after)))])
        order_halves = np.concatenate([order_halves, order_halves[after]])
        pay_type = np.concatenate([pay_type, pay_type[after]])
    return Purchases(session_halves, order_halves, pay_type, goal_mask)


def _facts(
    block: int,
    guests: Guests,
    browsers: Browsers,
    conversions: Conversions,
    events: EventTable,
    purchases: Purchases,
    actions: Actions,
) -> BlockFacts:
    # The goal mask on the CHECKOUT that places an order: its sale, the answer key's order.
    sale = (
        (events.type == EventType.CHECKOUT)
        & (events.order_status == order_model.PENDING)
        & ~events.failed
    )
    goal_mask = np.where(sale, purchases.goal_mask[events.session], 0)
    session_browser = np.concatenate(
        [conversions.session_browser, conversions.session_browser[actions.after_origin]]
    )
    return BlockFacts(
        block=block,
        first_guest=block * BLOCK_GUESTS,
        guest_halves=uuid_halves(guests.raw),
        guest_pos=guests.pos,
        guest_first_name=guests.first_name,
        guest_last_name=guests.last_name,
        guest_domain=guests.domain,
        guest_browsers=browsers.first_of_guest,
        guest_browser_count=guests.browser_count,
        guest_since_ms=_first_seen(guests, conversions, actions, events),
        browser_halves=uuid_halves(browsers.raw),
        browser_guest=browsers.guest,
        browser_channel=browsers.channel,
        browser_agent=browsers.agent,
        session_halves=purchases.session_halves,
        session_browser=session_browser,
        session_order_halves=purchases.order_halves,
        session_pay_type=purchases.pay_type,
        ref_hi=events.ref_hi,
        ref_lo=events.ref_lo,
        type=events.type,
        session=events.session,
        created_ms=events.created_ms,
        modified_ms=events.modified_ms,
        page=events.page,
        item=events.item,
        flow=events.flow,
        variant=events.variant,
        occurred_ms=events.occurred_ms,
        execution_ms=events.execution_ms,
        execution_halves=events.execution_halves,
        goal_mask=goal_mask,
        quantity=events.quantity,
        failed=events.failed,
        order_status=events.order_status,
    )


def _first_seen(
    guests: Guests, conversions: Conversions, actions: Actions, events: EventTable
) -> np.ndarray:
    """Per guest, when it was first seen: its first stored event if it arrives in the window
    (as CDP counts it), else its arrival before the window."""
    since = guests.visits.since_ms.copy()
    # Events are in time order: a guest's first row is its first event.
    # After-sale sessions (added last) belong to the guest of the sale they follow.
    session_guest = np.concatenate(
        [conversions.session_guest, conversions.session_guest[actions.after_origin]]
    )
    seen, rows = np.unique(session_guest[events.session], return_index=True)
    new = guests.visits.new[seen]
    since[seen[new]] = events.created_ms[rows[new]]
    return since


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


def _first_of_runs(keys: np.ndarray) -> np.ndarray:
    """Indices of the first element of each run of equal keys in a sorted array."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(len(keys), dtype=bool)
    new[0] = True
    new[1:] = keys[1:] != keys[:-1]
    return np.flatnonzero(new)
