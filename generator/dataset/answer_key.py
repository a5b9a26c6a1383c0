"""The answer key's counts: per flow and variant, who was exposed and what they bought after.

A guest converted for a flow in a window when, after their first exposure to it (first TRACKING
of that flow), within the window, they placed an order holding the flow's goal product: the
order's first CHECKOUT, stored PROCESSED, with status PURCHASED or PAYMENT_PENDING (its sale).
What becomes of the order later (CONFIRMED, CANCELLED, REFUNDED) does not undo the conversion,
and a FAILED CHECKOUT places no order. Times are the events' createdAt. The windows are
CDP's: 1 h, 3 h, 1 d, 3 d and 7 d.

The writer keeps three small records per block, never the events (`block_records`): each
exposed (guest, flow) pair with its first exposure and its first goal order within 7 days;
each goal order of an exposed pair within 7 days of the exposure, with its value; each exposed
(session, flow) with its first exposure. Every record holds the (createdAt, ref) position of
what it counts, so once the dataset's cut is known (its last event), `tally` counts exactly
what the written events hold. `cdpsim validate` computes the same figures from the JSON events
with its own code (generator/dataset/validate.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from generator.events.types import EventType
from generator.model.assignment import MAX_PERIODS, FlowTable
from generator.model.block import BlockFacts
from generator.model.world import World
from generator.profile import ATTRIBUTION_HOURS, Assignment, Profile
from generator.vocabulary import ORDER_STATUSES

__all__ = [
    "NEVER",
    "ORDER_DTYPE",
    "PAIR_DTYPE",
    "SESSION_DTYPE",
    "WINDOW_HOURS",
    "WINDOW_MS",
    "Periods",
    "Tally",
    "at_or_before",
    "block_records",
    "currencies",
    "facts_records",
    "new_tally",
    "order_values",
    "tally",
]

WINDOW_HOURS = ATTRIBUTION_HOURS  # 1 h, 3 h, 1 d, 3 d, 7 d
WINDOW_MS = np.array([h * 3_600_000 for h in WINDOW_HOURS], dtype=np.int64)
_LONGEST = int(WINDOW_MS[-1])

# One exposed (guest, flow) pair: its first exposure's position (createdAt, ref) and variant, and
# the position of its first goal order within the longest window (NEVER when none).
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
# One goal order of an exposed pair within the longest window: its position, its pair's first
# exposure (both must be in the dataset for it to count), its value (thousandths) and currency.
ORDER_DTYPE = np.dtype(
    [
        ("ms", "<i8"),
        ("hi", "<u8"),
        ("lo", "<u8"),
        ("first_ms", "<i8"),
        ("first_hi", "<u8"),
        ("first_lo", "<u8"),
        ("milli", "<i8"),
        ("flow", "<i1"),
        ("variant", "<i1"),
        ("currency", "<i1"),
    ]
)
# One exposed (session, flow): the position of its first exposure, and the variant.
SESSION_DTYPE = np.dtype(
    [
        ("first_ms", "<i8"),
        ("first_hi", "<u8"),
        ("first_lo", "<u8"),
        ("flow", "<i1"),
        ("variant", "<i1"),
    ]
)
NEVER = np.iinfo(np.int64).max
_SALE = ORDER_STATUSES.index("PAYMENT_PENDING")  # the status of the CHECKOUT that places an order


def currencies(points_of_sale: Iterable[str]) -> tuple[str, ...]:
    """The currencies revenue is kept in: each point of sale's, once, sorted."""
    return tuple(sorted(set(points_of_sale)))


def order_values(
    session: np.ndarray,
    kind: np.ndarray,
    add_value: np.ndarray,
    places: np.ndarray | None = None,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """Per event (in (createdAt, ref) order): on a CHECKOUT, the value of its order in
    thousandths of the currency; 0 elsewhere. An order holds the session's ADDs since the
    session's last order or CLEAR_CART (`add_value`: each ADD's price times quantity, in
    thousandths). `places` marks the CHECKOUTs that place an order (default: every CHECKOUT);
    another CHECKOUT of the session (a later status of the same order) carries the value of
    the order placed last. Rows outside `counts` (default: all) count for nothing."""
    out = np.zeros(len(kind), dtype=np.int64)
    # Only carts and orders matter: a small share of the events.
    rows = np.flatnonzero(
        (kind == EventType.ADD) | (kind == EventType.CHECKOUT) | (kind == EventType.CLEAR_CART)
    )
    n = len(rows)
    if n == 0:
        return out
    places = (kind[rows] == EventType.CHECKOUT) if places is None else places[rows]
    counts = np.ones(n, dtype=bool) if counts is None else counts[rows].astype(bool)
    session, kind, add_value = session[rows], kind[rows], add_value[rows]
    order = np.argsort(session, kind="stable")  # each session's events, still in time order
    s, k, ok = session[order], kind[order], counts[order]
    value = np.where((k == EventType.ADD) & ok, add_value[order], 0).astype(np.int64)
    csum = np.cumsum(value)
    at = np.arange(n)
    checkout = (k == EventType.CHECKOUT) & ok
    placed = checkout & places[order]
    resets = placed | ((k == EventType.CLEAR_CART) & ok)
    # The last reset strictly before each position, but never before its session's start.
    last_reset = np.maximum.accumulate(np.where(resets, at, -1))
    before = np.concatenate([[-1], last_reset[:-1]])
    new = np.ones(n, dtype=bool)
    new[1:] = s[1:] != s[:-1]
    session_start = np.maximum.accumulate(np.where(new, at, 0))
    base = np.maximum(before, session_start - 1)
    cart = csum - np.where(base >= 0, csum[np.maximum(base, 0)], 0)
    # Each CHECKOUT carries the value of the order its session placed last (itself, or the
    # one whose later status it records).
    last_placed = np.maximum.accumulate(np.where(placed, at, -1))
    own = checkout & (last_placed >= session_start)
    out[rows[order[own]]] = cart[last_placed[own]]
    return out


def block_records(
    guest: np.ndarray,
    session: np.ndarray,
    kind: np.ndarray,
    created: np.ndarray,
    ref_hi: np.ndarray,
    ref_lo: np.ndarray,
    flow: np.ndarray,
    variant: np.ndarray,
    goal: np.ndarray,
    milli: np.ndarray,
    currency: np.ndarray,
    flows: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs, orders and sessions records of a set of guests, from all their events (fields
    by event, in (createdAt, ref) order; `milli`, the order's value in thousandths, and
    `currency` read on the CHECKOUT rows whose `goal` is set). A
    guest's events all come from one block, so the writer takes them block by block."""
    t = np.flatnonzero(kind == EventType.TRACKING)
    # A pair's first row: np.unique gives first indexes, and rows come in (createdAt, ref) order.
    pair, first = np.unique(guest[t].astype(np.int64) * flows + flow[t], return_index=True)
    at = t[first]
    pairs = np.empty(len(pair), dtype=PAIR_DTYPE)
    pairs["first_ms"], pairs["first_hi"], pairs["first_lo"] = created[at], ref_hi[at], ref_lo[at]
    pairs["flow"], pairs["variant"] = flow[at], variant[at]
    pairs["conv_ms"], pairs["conv_hi"], pairs["conv_lo"] = NEVER, 0, 0

    sess_key, first = np.unique(session[t].astype(np.int64) * flows + flow[t], return_index=True)
    at = t[first]
    sessions = np.empty(len(sess_key), dtype=SESSION_DTYPE)
    sessions["first_ms"], sessions["first_hi"] = created[at], ref_hi[at]
    sessions["first_lo"], sessions["flow"], sessions["variant"] = ref_lo[at], flow[at], variant[at]

    goal_orders = np.flatnonzero((kind == EventType.CHECKOUT) & (goal != 0))
    order_parts = []
    for f in range(flows):
        of = goal_orders[(goal[goal_orders] >> f) & 1 == 1]
        keys = guest[of].astype(np.int64) * flows + f
        pos = np.searchsorted(pair, keys)
        found = pos < len(pair)
        found[found] = pair[pos[found]] == keys[found]
        of, pos = of[found], pos[found]
        delta = created[of] - pairs["first_ms"][pos]
        inside = (delta >= 0) & (delta <= _LONGEST)
        of, pos = of[inside], pos[inside]
        rec = np.empty(len(of), dtype=ORDER_DTYPE)
        rec["ms"], rec["hi"], rec["lo"] = created[of], ref_hi[of], ref_lo[of]
        rec["first_ms"] = pairs["first_ms"][pos]
        rec["first_hi"], rec["first_lo"] = pairs["first_hi"][pos], pairs["first_lo"][pos]
        rec["milli"], rec["currency"] = milli[of], currency[of]
        rec["flow"], rec["variant"] = f, pairs["variant"][pos]
        order_parts.append(rec)
        # The pair's first such order (orders too come in (createdAt, ref) order).
        pos, first = np.unique(pos, return_index=True)
        at = of[first]
        pairs["conv_ms"][pos], pairs["conv_hi"][pos], pairs["conv_lo"][pos] = (
            created[at],
            ref_hi[at],
            ref_lo[at],
        )
    orders = np.concatenate(order_parts) if order_parts else np.zeros(0, dtype=ORDER_DTYPE)
    return pairs, orders, sessions


def facts_records(world: World, facts: BlockFacts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block's records (pairs, orders, sessions), from its facts."""
    guest = facts.browser_guest[facts.session_browser[facts.session]]
    profile = world.profile
    names = currencies(p.currency for p in profile.points_of_sale)
    pos_currency = np.array([names.index(p.currency) for p in profile.points_of_sale])
    # Prices in thousandths, per point of sale: whole numbers in any currency's minor unit
    # (every ADD is of one), times the ADD's quantity. An order is placed by its sale's
    # CHECKOUT (PAYMENT_PENDING); FAILED rows count for nothing.
    pos = facts.guest_pos[guest]
    value = world.prices.milli[pos, np.maximum(facts.item, 0)] * facts.quantity
    sale = (facts.type == EventType.CHECKOUT) & (facts.order_status == _SALE) & ~facts.failed
    return block_records(
        guest + facts.first_guest,
        facts.session,
        facts.type,
        facts.created_ms,
        facts.ref_hi,
        facts.ref_lo,
        facts.flow,
        facts.variant,
        facts.goal_mask,
        order_values(facts.session, facts.type, value, sale, ~facts.failed),
        pos_currency[pos],
        len(profile.flows),
    )


@dataclass
class Tally:
    """The counts behind the manifest's analysis, by [flow, variant] (and window, currency)."""

    exposures: np.ndarray  # TRACKING events
    exposed_guests: np.ndarray
    exposed_sessions: np.ndarray
    converted_guests: np.ndarray  # [f, v, window]
    orders: np.ndarray  # [f, v, window, currency]: goal orders
    revenue_milli: np.ndarray  # [f, v, window, currency]
    # Optimized flows: exposed and converted (at the flow's own window) guests by the period of
    # their first exposure, [period, variant].
    period_exposed: dict[int, np.ndarray] = field(default_factory=dict)
    period_converted: dict[int, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "exposures": self.exposures.tolist(),
            "exposedGuests": self.exposed_guests.tolist(),
            "exposedSessions": self.exposed_sessions.tolist(),
            "convertedGuests": self.converted_guests.tolist(),
            "orders": self.orders.tolist(),
            "revenueMilli": self.revenue_milli.tolist(),
            "periodExposed": {str(f): a.tolist() for f, a in self.period_exposed.items()},
            "periodConverted": {str(f): a.tolist() for f, a in self.period_converted.items()},
        }

    def add(self, data: dict[str, Any]) -> None:
        """Add another tally's counts (its `to_json`): parts counted apart, summed."""
        self.exposures += np.array(data["exposures"], dtype=np.int64)
        self.exposed_guests += np.array(data["exposedGuests"], dtype=np.int64)
        self.exposed_sessions += np.array(data["exposedSessions"], dtype=np.int64)
        self.converted_guests += np.array(data["convertedGuests"], dtype=np.int64)
        self.orders += np.array(data["orders"], dtype=np.int64)
        self.revenue_milli += np.array(data["revenueMilli"], dtype=np.int64)
        for mine, theirs in (
            (self.period_exposed, data["periodExposed"]),
            (self.period_converted, data["periodConverted"]),
        ):
            for f, counts in theirs.items():
                mine[int(f)] = mine.get(int(f), 0) + np.array(counts, dtype=np.int64)

    @classmethod
    def empty(cls, variants_per_flow: list[int], currencies: int) -> Tally:
        shape = (len(variants_per_flow), max(variants_per_flow, default=1))
        w = len(WINDOW_HOURS)
        return cls(
            exposures=np.zeros(shape, dtype=np.int64),
            exposed_guests=np.zeros(shape, dtype=np.int64),
            exposed_sessions=np.zeros(shape, dtype=np.int64),
            converted_guests=np.zeros((*shape, w), dtype=np.int64),
            orders=np.zeros((*shape, w, max(currencies, 1)), dtype=np.int64),
            revenue_milli=np.zeros((*shape, w, max(currencies, 1)), dtype=np.int64),
        )


# An optimized flow's periods: (flow index, the period of each time, how many periods).
Periods = list[tuple[int, Callable[[np.ndarray], np.ndarray], int]]


def tally(
    tally_: Tally,
    pairs: Iterable[np.ndarray],
    orders: Iterable[np.ndarray],
    sessions: Iterable[np.ndarray],
    last: tuple[int, int, int],
    attribution_ms: list[int],
    periods: Periods | None = None,
) -> Tally:
    """Add batches of records to a tally, for a dataset whose last event sits at `last`
    (createdAt, ref hi, ref lo). `tally_.exposures` is counted by the caller."""
    periods = periods or []
    for index, _, count in periods:
        nvar = tally_.exposed_guests.shape[1]
        tally_.period_exposed.setdefault(index, np.zeros((count, nvar), dtype=np.int64))
        tally_.period_converted.setdefault(index, np.zeros((count, nvar), dtype=np.int64))
    attribution = np.asarray(attribution_ms, dtype=np.int64)
    for batch in pairs:
        kept = at_or_before(batch["first_ms"], batch["first_hi"], batch["first_lo"], last)
        batch = batch[kept]
        f, v = batch["flow"].astype(np.int64), batch["variant"].astype(np.int64)
        np.add.at(tally_.exposed_guests, (f, v), 1)
        converted = at_or_before(batch["conv_ms"], batch["conv_hi"], batch["conv_lo"], last)
        delta = np.where(converted, batch["conv_ms"] - batch["first_ms"], NEVER)
        for w, limit in enumerate(WINDOW_MS.tolist()):
            inside = delta <= limit
            np.add.at(tally_.converted_guests, (f[inside], v[inside], w), 1)
        for index, period_of, count in periods:
            mine = f == index
            period = np.minimum(period_of(batch["first_ms"][mine]), count - 1)
            np.add.at(tally_.period_exposed[index], (period, v[mine]), 1)
            hit = delta[mine] <= attribution[index]
            np.add.at(tally_.period_converted[index], (period[hit], v[mine][hit]), 1)
    for batch in orders:
        kept = at_or_before(batch["ms"], batch["hi"], batch["lo"], last) & at_or_before(
            batch["first_ms"], batch["first_hi"], batch["first_lo"], last
        )
        batch = batch[kept]
        f, v = batch["flow"].astype(np.int64), batch["variant"].astype(np.int64)
        c = batch["currency"].astype(np.int64)
        delta = batch["ms"] - batch["first_ms"]
        for w, limit in enumerate(WINDOW_MS.tolist()):
            inside = delta <= limit
            np.add.at(tally_.orders, (f[inside], v[inside], w, c[inside]), 1)
            np.add.at(
                tally_.revenue_milli, (f[inside], v[inside], w, c[inside]), batch["milli"][inside]
            )
    for batch in sessions:
        kept = at_or_before(batch["first_ms"], batch["first_hi"], batch["first_lo"], last)
        np.add.at(
            tally_.exposed_sessions,
            (batch["flow"][kept].astype(np.int64), batch["variant"][kept].astype(np.int64)),
            1,
        )
    return tally_


def at_or_before(
    ms: np.ndarray, hi: np.ndarray, lo: np.ndarray, last: tuple[int, int, int]
) -> np.ndarray:
    """Positions (ms, hi, lo) that sort at or before `last`."""
    l_ms, l_hi, l_lo = last
    l_hi_u, l_lo_u = np.uint64(l_hi), np.uint64(l_lo)
    return (ms < l_ms) | ((ms == l_ms) & ((hi < l_hi_u) | ((hi == l_hi_u) & (lo <= l_lo_u))))


def bandit_period_count(period_ms: int, days: float) -> int:
    """Bandit periods that start inside a window of `days` days."""
    return min(MAX_PERIODS, max(1, math.ceil(days * 86_400_000 / period_ms)))


def new_tally(profile: Profile, days: float) -> tuple[Tally, Periods, list[int]]:
    """An empty tally for a run of `days` days, its optimized flows' periods and the flows'
    own windows in ms: what `tally` takes besides the records."""
    money = currencies(p.currency for p in profile.points_of_sale)
    counts = Tally.empty([len(f.variants) for f in profile.flows], len(money))
    table = FlowTable(profile)
    periods: Periods = [
        (f, partial(table.period_of, f), bandit_period_count(table.period_ms[f], days))
        for f, flow in enumerate(profile.flows)
        if flow.assignment is Assignment.OPTIMIZED
    ]
    return counts, periods, [f.attribution_hours * 3_600_000 for f in profile.flows]
