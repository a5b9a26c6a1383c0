"""Baskets and money: the catalog priced per point of sale, what a buyer adds on the way to
checkout, and each ADD's quantity.

Prices: a catalog price (behaviour.catalogCurrency) times the point of sale's rate, rounded to
its currency's minor unit; whole numbers (JPY) are carried as Python ints, so that events say
`1600`, not `1600.0`. Baskets: a session that places an order adds, from its cart page, a
Poisson number of products of types that are no flow's goal (so no conversion is made or
lost by them; cheaper items likelier), spread over its stay on that page; every ADD's
quantity is drawn from behaviour.basket.quantityShares (items dearer than singleAbove: 1).
The draws come from a stream of their own per block (`basket_rng`), apart from the block's
main one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.profile import Profile
from generator.profile.money import minor_digits, reference_rate

__all__ = ["PriceList", "basket_rng", "extra_items", "quantities", "single_items"]


@dataclass(frozen=True, slots=True)
class PriceList:
    """Every item's price at every point of sale, in its currency."""

    price: tuple[tuple[float | int, ...], ...]  # [pos][item], as the events carry it
    milli: np.ndarray  # (pos, items) int64: thousandths of the currency

    @classmethod
    def build(cls, profile: Profile, base: np.ndarray) -> PriceList:
        """From the catalog's prices (`base`, in behaviour.catalogCurrency)."""
        rows: list[tuple[float | int, ...]] = []
        for p in profile.points_of_sale:
            rate = p.price_rate
            if rate is None:
                rate = reference_rate(profile.behaviour.catalog_currency, p.currency)
            assert rate is not None  # the schema refuses a point of sale without one
            digits = minor_digits(p.currency)
            local = np.round(base * rate, digits) if rate != 1.0 else np.round(base, digits)
            if digits == 0:
                # At least one unit: a price never rounds to nothing.
                rows.append(tuple(max(1, int(x)) for x in local.tolist()))
            else:
                rows.append(tuple(float(x) for x in local.tolist()))
        milli = np.rint(np.array(rows, dtype=np.float64) * 1000).astype(np.int64)
        return cls(tuple(rows), milli.reshape(len(rows), len(base)))


def basket_rng(seed: int, block: int) -> np.random.Generator:
    """The block's stream for baskets and orders, apart from its main one."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(block, 1)))


def quantities(
    rng: np.random.Generator, shares: tuple[float, ...], single: np.ndarray
) -> np.ndarray:
    """ADD quantities (1, 2, 3 ...) at the given shares; 1 where `single` (dear items)."""
    cum = np.cumsum(np.asarray(shares, dtype=np.float64))
    cum[-1] = 1.0
    q = np.searchsorted(cum, rng.random(len(single)), side="right") + 1
    return np.where(single, 1, q).astype(np.int64)


def single_items(profile: Profile, base: np.ndarray) -> np.ndarray:
    """Per item: bought one at a time (priced above behaviour.basket.singleAbove, by default
    the catalog's median price)."""
    limit = profile.behaviour.basket.single_above
    return base > (float(np.median(base)) if limit is None else limit)


def extra_items(
    rng: np.random.Generator,
    mean: float,
    sessions: np.ndarray,
    page_at: np.ndarray,
    leave_at: np.ndarray,
    item_types: np.ndarray,
    type_weights: np.ndarray,
    type_first: np.ndarray,
    type_items: np.ndarray,
    prices: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items buyers add from the cart page, seen at `page_at` and left at `leave_at`: per
    session a Poisson(mean) count of products of the given types (by weight), at even steps
    between the two. Returns (session, time, item)."""
    n = len(sessions)
    if n == 0 or mean <= 0 or len(item_types) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    k = rng.poisson(mean, n)
    total = int(k.sum())
    row = np.repeat(np.arange(n), k)
    j = np.arange(total) - np.repeat(np.cumsum(k) - k, k)
    span = leave_at[row] - page_at[row]
    time = page_at[row] + (span * (j + 1)) // (k[row] + 1)
    # Add-ons: a type by catalog weight, then its items with odds falling as their price
    # grows (1 / price), as the cheaper things are what a cart page offers.
    w = type_weights / type_weights.sum()
    pick = np.searchsorted(np.cumsum(w), rng.random(total), side="right")
    types = item_types[np.minimum(pick, len(w) - 1)]
    u = rng.random(total)
    item = np.empty(total, dtype=np.int64)
    for t in np.unique(types).tolist():
        rows = np.flatnonzero(types == t)
        first, count = int(type_first[t]), int(type_items[t])
        cum = np.cumsum(1.0 / prices[first : first + count])
        at = np.searchsorted(cum / cum[-1], u[rows], side="right")
        item[rows] = first + np.minimum(at, count - 1)
    return sessions[row], time.astype(np.int64), item
