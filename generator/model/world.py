"""The simulated world: a validated profile turned once into the arrays and pools it samples."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from generator.model.agents import device_table
from generator.model.arrivals import ArrivalModel
from generator.model.assignment import FlowTable
from generator.model.baskets import PriceList, single_items
from generator.model.pools import Pools
from generator.model.rhythm import SessionClock
from generator.profile import JOURNEY_PAGES, Page, Profile

__all__ = ["BLOCK_GUESTS", "PAGE_CODES", "Catalog", "World"]

# Guests are simulated in fixed blocks; block b's randomness is keyed by (seed, b), so the
# output does not depend on how blocks are split among shards or worker processes.
BLOCK_GUESTS = 2048

PAGE_CODES: dict[Page, int] = {page: i for i, page in enumerate(Page)}
EXIT = len(JOURNEY_PAGES)  # the "leave the site" state of the journey chain


@dataclass(frozen=True, slots=True)
class Catalog:
    """Products as flat arrays: one row per item, grouped by product type."""

    type_names: tuple[str, ...]
    type_weights: np.ndarray  # normalised
    type_first_item: np.ndarray  # index of each type's first item
    type_items: np.ndarray  # item count per type
    item_type: np.ndarray
    item_price: np.ndarray  # two decimals
    item_ids: tuple[str, ...]
    item_names: tuple[str, ...]

    @classmethod
    def build(cls, profile: Profile) -> Catalog:
        products = profile.behaviour.catalog
        counts = np.array([p.items for p in products])
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        item_type = np.repeat(np.arange(len(products)), counts)
        prices: list[float] = []
        ids: list[str] = []
        names: list[str] = []
        for p in products:
            low, high = p.price_range
            # Prices spread evenly over the range: stable, seed-free, and easy to check.
            steps = np.linspace(low, high, p.items) if p.items > 1 else np.array([low])
            prices.extend(np.round(steps, 2).tolist())
            stem = p.type.upper().replace("_", "")[:8]
            ids.extend(f"{stem}-{i + 1:04d}" for i in range(p.items))
            names.extend(f"{p.name} {i + 1}" for i in range(p.items))
        weights = np.array([p.weight for p in products], dtype=float)
        return cls(
            type_names=tuple(p.type for p in products),
            type_weights=weights / weights.sum(),
            type_first_item=first,
            type_items=counts,
            item_type=item_type,
            item_price=np.array(prices),
            item_ids=tuple(ids),
            item_names=tuple(names),
        )

    def sample_items(self, rng: np.random.Generator, types: np.ndarray) -> np.ndarray:
        """A uniformly chosen item of each given product type."""
        return self.type_first_item[types] + (
            rng.random(len(types)) * self.type_items[types]
        ).astype(np.int64)


class World:
    """Everything the model needs, derived once from a profile, a seed and a time window."""

    def __init__(
        self,
        profile: Profile,
        seed: int | None = None,
        days: float | None = None,
        guests: int | None = None,
    ) -> None:
        self.profile = profile
        self.seed = profile.seed if seed is None else seed
        self.days = profile.days if days is None else days
        self.guests = profile.population.guests if guests is None else guests
        self.start: dt.datetime = profile.start
        self.end: dt.datetime = profile.start + dt.timedelta(days=self.days)
        self.start_ms = int(self.start.timestamp() * 1000)
        self.end_ms = int(self.end.timestamp() * 1000)
        self.pools = Pools.build(profile, self.seed)
        self.catalog = Catalog.build(profile)
        self.prices = PriceList.build(profile, self.catalog.item_price)
        self.single_item = single_items(profile, self.catalog.item_price)
        self.flows = FlowTable(profile)
        self.clocks = tuple(
            SessionClock(profile.behaviour, pos, self.start, self.end)
            for pos in profile.points_of_sale
        )
        self.arrivals = ArrivalModel(profile, self.clocks)
        behaviour = profile.behaviour
        shares = np.array([p.share for p in profile.points_of_sale], dtype=float)
        self.pos_shares = shares / shares.sum()
        self.timeout_ms = np.array(
            [p.session_timeout_minutes * 60_000 for p in profile.points_of_sale], dtype=np.int64
        )
        self.browser_shares = np.array(profile.population.browsers_per_guest, dtype=float)
        self.device_cum, self.device_channel = device_table(profile.points_of_sale)
        # Journey chain over JOURNEY_PAGES; column EXIT is the chance to leave.
        n = len(JOURNEY_PAGES)
        self.landing = np.array([behaviour.landing.get(p, 0.0) for p in JOURNEY_PAGES])
        chain = np.zeros((n, n + 1))
        for i, page in enumerate(JOURNEY_PAGES):
            row = behaviour.transitions.get(page, {})
            for j, nxt in enumerate(JOURNEY_PAGES):
                chain[i, j] = row.get(nxt, 0.0)
            chain[i, n] = max(0.0, 1.0 - chain[i, :n].sum())
        self.chain_cumulative = np.cumsum(chain, axis=1)
        type_index = {t: i for i, t in enumerate(self.catalog.type_names)}
        self.goal_type = np.array(
            [type_index[f.goal_product_type] for f in profile.flows], dtype=np.int64
        )
        # Per product type: the flow it is the goal of (-1: none), and the chance that a view
        # of its page adds it to the cart on the guest's own account (goals: the baseline).
        self.goal_flow_of_type = np.full(len(self.catalog.type_names), -1, dtype=np.int64)
        self.goal_flow_of_type[self.goal_type] = np.arange(len(profile.flows))
        self.add_rate = np.where(
            self.goal_flow_of_type >= 0,
            behaviour.goal_add_to_cart_rate,
            behaviour.add_to_cart_rate,
        )
        # Per flow, lookup tables: page code -> triggers, product type -> triggers on its page.
        self.trigger_pages = np.zeros((len(profile.flows), len(PAGE_CODES)), dtype=bool)
        self.trigger_types = np.ones((len(profile.flows), len(type_index)), dtype=bool)
        for f, flow in enumerate(profile.flows):
            self.trigger_pages[f, [PAGE_CODES[p] for p in flow.trigger_pages]] = True
            if flow.trigger_product_types:
                self.trigger_types[f] = False
                self.trigger_types[f, [type_index[t] for t in flow.trigger_product_types]] = True
        self.conversion = [np.array([v.conversion_rate for v in f.variants]) for f in profile.flows]
        self.attribution_ms = np.array(
            [f.attribution_hours * 3_600_000 for f in profile.flows], dtype=np.int64
        )
        # The conversion lag per flow: the share bought in the exposure's session, and the
        # lognormal of later purchases' lags (log of ms).
        self.same_session = np.array(
            [
                behaviour.same_session_conversion
                if f.same_session_conversion is None
                else f.same_session_conversion
                for f in profile.flows
            ]
        )
        lags = [f.conversion_lag_hours or behaviour.conversion_lag_hours for f in profile.flows]
        self.lag_mu = np.array([np.log(lag.median * 3_600_000) for lag in lags])
        self.lag_sigma = np.array([lag.sigma for lag in lags])
        self.flow_refs = tuple(str(profile.flow_ref(f)) for f in profile.flows)
        self.variant_refs = tuple(
            tuple(str(profile.variant_ref(f, v)) for v in f.variants) for f in profile.flows
        )

    def triggers(self, f: int, page: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Which page views run flow f: its trigger pages, and on product pages only products of
        its trigger types if it names any (`item` is the product item on product pages)."""
        hit = self.trigger_pages[f][page]
        if not self.trigger_types[f].all():
            on_product = page == PAGE_CODES[Page.PRODUCT]
            typed = self.trigger_types[f][self.catalog.item_type[np.maximum(item, 0)]]
            hit &= ~on_product | typed
        return hit

    @property
    def blocks(self) -> int:
        return -(-self.guests // BLOCK_GUESTS)

    def block_size(self, block: int) -> int:
        return min(BLOCK_GUESTS, self.guests - block * BLOCK_GUESTS)

    def block_rng(self, block: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(block,)))
