"""A block's data lake tables straight from its simulated facts, as Arrow columns built with numpy.

The fast path of `generate --format datalake`: no JSON is written or parsed. The schemas live in
`columns.py` (one home for every column); what each column holds is what the JSON-lines path
(`export.py`, reading the rendered events) makes of the same events, and
`tests/test_datalake.py::test_columnar_rows_equal_the_json_path` holds the two together.

A block's events come in (createdAt, ref) order, so those kept by the dataset's cut, and those
before any snapshot's midnight, are prefixes of them: every table "as of" a cutoff is computed
over the first `m` events.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from generator.datalake import columns as C
from generator.dataset.answer_key import at_or_before
from generator.dataset.entities import Order, OrderItem
from generator.events.render import BlockRenderer
from generator.events.timestamps import iso_text
from generator.model.block import BlockFacts
from generator.model.orders import status_counts
from generator.model.refs import halves_strings, halves_text
from generator.profile import Page
from generator.vocabulary import (
    EMAIL_DOMAINS,
    EVENT_STATUSES,
    ORDER_STATUSES,
    PAY_TYPES,
    EventType,
)

__all__ = ["BlockLake", "batch_of"]

E = EventType
_NT = len(EventType)
_PAGES = tuple(Page)
_PRODUCT = _PAGES.index(Page.PRODUCT)
_CATEGORY = _PAGES.index(Page.CATEGORY)
_SALE = ORDER_STATUSES.index("PAYMENT_PENDING")  # the status of the CHECKOUT placing an order
# Session bxt: (key, what it counts), in the order session_row writes them.
_SESSION_COUNTS = (
    ("numCheckouts", (E.CHECKOUT,)),
    ("numConfirms", (E.CONFIRM,)),
    ("numEvents", tuple(EventType)),
    ("numIdentities", (E.IDENTITY,)),
    ("numPayments", (E.PAYMENT,)),
    ("numSearches", (E.SEARCH,)),
    ("numSelects", (E.ADD,)),
    ("numTrackings", (E.TRACKING,)),
    ("numViews", (E.VIEW,)),
)


def batch_of(entity: str, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    """Columns into a batch of the entity's schema: a missing or extra column is an error."""
    schema = C.SCHEMAS[entity]
    if set(columns) != set(schema.names):
        raise ValueError(
            f"{entity}: columns {sorted(set(columns) ^ set(schema.names))} differ from the schema"
        )
    return pa.RecordBatch.from_arrays([columns[n] for n in schema.names], schema=schema)


def _strings(values: list[str] | tuple[str, ...]) -> pa.Array:
    return pa.array(list(values), pa.string())


@functools.cache
def _words(*values: str) -> pa.Array:
    """A few fixed strings as an array, made once (see `_scalar`)."""
    return _strings(values)


def _fixed(text: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """An (n, w) uint8 matrix of characters as a string array (rows where `valid` is False
    are null)."""
    n, width = text.shape
    offsets = np.arange(0, width * n + 1, width, dtype=np.int32)
    bitmap = None if valid is None else pa.array(valid, pa.bool_()).buffers()[1]
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(text)), bitmap
    )


def _uuids(halves: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    text = halves_text(halves) if len(halves) else np.zeros((0, 36), dtype=np.uint8)
    return _fixed(text, valid)


def _texts(halves: np.ndarray) -> list[str]:
    """Refs as Python strings."""
    return [r.decode() for r in halves_strings(halves).tolist()] if len(halves) else []


def _take(values: pa.Array, idx: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    indices = pa.array(np.asarray(idx, dtype=np.int64), mask=None if valid is None else ~valid)
    return values.take(indices)


def _ts(ms: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    return pa.array(
        np.asarray(ms, dtype=np.int64), type=C.TS, mask=None if valid is None else ~valid
    )


def _empty_maps(n: int) -> pa.Array:
    return pa.MapArray.from_arrays(
        pa.array(np.zeros(n + 1, dtype=np.int32)), _words(), _words(), type=C.MAP
    )


def _maps(keys: list[str], values: list[pa.Array]) -> pa.Array:
    """Maps with the same keys on every row, from one value column per key."""
    n, k = len(values[0]) if values else 0, len(keys)
    if n == 0 or k == 0:
        return _empty_maps(n)
    # Column-major values to row-major entries.
    order = (np.arange(k)[None, :] * n + np.arange(n)[:, None]).ravel()
    flat = pa.concat_arrays(values).take(pa.array(order))
    names = _words(*keys).take(pa.array(np.tile(np.arange(k), n)))
    offsets = pa.array(np.arange(0, k * n + 1, k, dtype=np.int32))
    return pa.MapArray.from_arrays(offsets, names, flat, type=C.MAP)


def _maps_by_type(
    types: np.ndarray, slots: dict[int, list[tuple[str, pa.Array]]], kinds: int = _NT
) -> pa.Array:
    """Maps whose keys depend on the row's kind (its event type): `slots[t]` holds, per key,
    the values of the rows of kind t (in row order)."""
    n = len(types)
    per_type = np.zeros(kinds, dtype=np.int64)
    for t, kv in slots.items():
        per_type[t] = len(kv)
    per = per_type[types]
    total = int(per.sum())
    if total == 0:
        return _empty_maps(n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per, out=offsets[1:])
    # Where each (type, key) column starts in the concatenation of all of them.
    width = int(per_type.max())
    start = np.zeros((kinds, width), dtype=np.int64)
    chunks: list[pa.Array] = []
    names: list[str] = []
    name_of = np.zeros((kinds, width), dtype=np.int64)
    at = 0
    for t in sorted(slots):
        for j, (key, column) in enumerate(slots[t]):
            start[t, j] = at
            name_of[t, j] = len(names)
            names.append(key)
            chunks.append(column)
            at += len(column)
    rank = np.zeros(n, dtype=np.int64)
    for t in slots:
        rows = np.flatnonzero(types == t)
        rank[rows] = np.arange(len(rows))
    row = np.repeat(np.arange(n), per)
    slot = np.arange(total) - offsets[:-1][row]
    kind = types[row].astype(np.int64)
    values = pa.concat_arrays(chunks).take(pa.array(start[kind, slot] + rank[row]))
    keys = _words(*names).take(pa.array(name_of[kind, slot]))
    return pa.MapArray.from_arrays(pa.array(offsets.astype(np.int32)), keys, values, type=C.MAP)


class _Lexicon:
    """A world's names as Arrow arrays, built once per renderer."""

    def __init__(self, r: BlockRenderer) -> None:
        w = r.world
        self.client_key = r.client_key
        self.type_name = _strings([t.name for t in EventType])
        self.pos = _strings(r.pos_names)
        self.pos_names = r.pos_names
        self.currency = _strings(r.pos_currency)
        self.currencies = r.pos_currency
        self.language = _strings(r.pos_language)
        self.languages = r.pos_language
        self.channels = max(len(c) for c in r.pos_channels)
        self.channel_names = [
            chans[c % len(chans)] for chans in r.pos_channels for c in range(self.channels)
        ]
        self.channel = _strings(self.channel_names)
        pages = [f"product/{i}" for i in r.item_ids]
        pages += [f"category/{t}" for t in r.type_names]
        pages += [p.value for p in _PAGES]
        self.page = _strings(pages)
        self.n_items, self.n_types = len(r.item_ids), len(r.type_names)
        self.item_ids = r.item_ids
        self.item_id = _strings(r.item_ids)
        self.item_names = r.item_names
        self.item_name = _strings(r.item_names)
        # Per point of sale (pos * items + item), in its currency.
        self.item_prices = r.item_price
        self.item_price = _strings(
            [orjson.dumps(p).decode() for prices in r.item_price for p in prices]
        )
        self.item_types = [r.type_names[t].upper() for t in r.item_type]
        self.item_type = _strings(self.item_types)
        self.type_label = _strings(r.type_label)
        self.type_names = _strings(r.type_names)
        self.flow_ref = _strings(w.flow_refs)
        self.friendly = _strings(r.friendly_ids)
        self.variants = max((len(v) for v in w.variant_refs), default=1)
        self.variant_ref = _strings(
            [vs[v] if v < len(vs) else "" for vs in w.variant_refs for v in range(self.variants)]
        )
        self.pay = _strings(PAY_TYPES)
        self.pay_types = PAY_TYPES
        self.timeout_ms = w.timeout_ms
        self.flows = len(w.flow_refs)
        self.flow_refs = w.flow_refs
        # Name pools flattened: a guest's name is at pool_start[pos] + its pick.
        pools = w.pools.names
        self.pool_start = np.cumsum([0, *(len(p.first) for p in pools[:-1])]).astype(np.int64)
        self.first_name = _strings([x for p in pools for x in p.first])
        self.last_name = _strings([x for p in pools for x in p.last])
        self.first_json = _strings([_json(x) for p in pools for x in p.first])
        self.last_json = _strings([_json(x) for p in pools for x in p.last])
        self.first_slug = _strings([x for p in pools for x in p.first_slug])
        self.last_slug = _strings([x for p in pools for x in p.last_slug])
        self.domain = _strings(EMAIL_DOMAINS)
        self.agent_json = _strings([_json(x) for x in w.pools.user_agents])
        self.channel_json = _strings([_json(x) for x in self.channel_names])
        self.pos_json = _strings([_json(x) for x in r.pos_names])
        self.language_json = _strings([_json(x) for x in r.pos_language])
        self.one = _words("1")
        self.order_status = _strings(ORDER_STATUSES)
        self.event_status = _strings(EVENT_STATUSES)
        self.executed = _words("EXECUTED")


def _json(value: str) -> str:
    return orjson.dumps(value).decode()


_SCALARS: dict[str, pa.Scalar] = {}


def _scalar(text: str) -> pa.Scalar:
    """A string as an Arrow scalar, made once: pyarrow's own conversion of a Python string
    looks for pandas every time, which costs more than the join it feeds."""
    found = _SCALARS.get(text)
    if found is None:
        found = _SCALARS[text] = pa.scalar(text, pa.string())
    return found


def _join(*parts: pa.Array | str) -> pa.Array:
    """Strings joined row by row (plain strings are the same on every row)."""
    args = [_scalar(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, _scalar(""))


def _lexicon(r: BlockRenderer) -> _Lexicon:
    cached: _Lexicon | None = getattr(r, "_lake_lexicon", None)
    if cached is None:
        cached = _Lexicon(r)
        r._lake_lexicon = cached  # type: ignore[attr-defined]
    return cached


def _const(values: pa.Array, n: int) -> pa.Array:
    return values.take(pa.array(np.zeros(n, dtype=np.int64)))


@dataclass(slots=True)
class _BlockOrder:
    """An order of the block: its CHECKOUT, its items (ADDs) and the PAYMENTs after it."""

    checkout: int  # event index
    session: int
    items: list[int]
    price: float
    payments: list[int] = field(default_factory=list)
    changes: list[int] = field(default_factory=list)  # later CHECKOUTs of its reference
    # Its rows by (paid, status changes so far): made once each.
    rows: dict[tuple[bool, int], tuple[dict[str, Any], list[dict[str, Any]]]] = field(
        default_factory=dict
    )


class BlockLake:
    """One block's events kept by the dataset's cut (`cut`: the last event's (createdAt, ref
    hi, ref lo), None for all), and the data lake tables they make as of any cutoff."""

    def __init__(
        self, renderer: BlockRenderer, facts: BlockFacts, cut: tuple[int, int, int] | None
    ) -> None:
        self.r = renderer
        self.lex = _lexicon(renderer)
        self.facts = f = facts
        n = len(f)
        if cut is not None and n:
            n = int(at_or_before(f.created_ms, f.ref_hi, f.ref_lo, cut).sum())
        self.n = n
        self.created = f.created_ms[:n]
        self.type = f.type[:n]
        self.sess = f.session[:n]
        self.sessions = len(f.session_halves)
        self.guests = len(f.guest_halves)
        self.session_guest = f.browser_guest[f.session_browser]
        self.guest = self.session_guest[self.sess]
        self.pos = f.guest_pos[self.guest]
        browser = f.session_browser[self.sess]
        self.group = self.pos.astype(np.int64) * self.lex.channels + f.browser_channel[browser]
        # Events grouped by session (and by guest), each group in time order.
        self.by_session, self.session_first = _groups(self.sess, self.sessions)
        self.by_guest, self.guest_group = _groups(self.guest, self.guests)
        # Refs as text, once per block: rows gather them with numpy (cheaper than Arrow's take).
        self.session_text = halves_text(f.session_halves)
        self.browser_text = halves_text(f.browser_halves)
        self.guest_text = halves_text(f.guest_halves)
        self.order_text = halves_text(f.session_order_halves)
        self.session_ref = _fixed(self.session_text)
        self.browser_ref = _fixed(self.browser_text)
        self.guest_ref = _fixed(self.guest_text)
        self.order_ref = _fixed(self.order_text)
        self.orders = self._orders()
        ident = np.flatnonzero(self.type == E.IDENTITY)
        first_ident = np.full(self.guests, np.iinfo(np.int64).max, dtype=np.int64)
        g, at = np.unique(self.guest[ident], return_index=True)
        first_ident[g] = ident[at]
        self.first_identity = first_ident
        lex = self.lex
        self.guest_first = lex.pool_start[f.guest_pos] + f.guest_first_name
        self.guest_last = lex.pool_start[f.guest_pos] + f.guest_last_name
        # As BlockRenderer.guest_name makes it (slugs are ASCII: nothing to escape in JSON).
        self.guest_email = _join(
            _take(lex.first_slug, self.guest_first),
            ".",
            _take(lex.last_slug, self.guest_last),
            ".",
            pc.cast(pa.array(f.first_guest + np.arange(self.guests)), pa.string()),
            "@",
            _take(lex.domain, f.guest_domain),
        )

    # --- cutoffs -----------------------------------------------------------------------------

    def prefix(self, cutoff_ms: int) -> int:
        """How many of the kept events come before `cutoff_ms`."""
        return int(np.searchsorted(self.created, cutoff_ms, side="left"))

    def session_counts(self, m: int) -> np.ndarray:
        return np.bincount(self.sess[:m], minlength=self.sessions)

    def session_status(self, m: int, cutoff_ms: int, counts: np.ndarray) -> np.ndarray:
        """Per session, as of the cutoff: True where CLOSED (FORCE_CLOSE, or past its timeout)."""
        closed = np.zeros(self.sessions, dtype=bool)
        present = np.flatnonzero(counts)
        if len(present) == 0:
            return closed
        last = self.by_session[self.session_first[present] + counts[present] - 1]
        ended = self.created[last]
        timeout = self.lex.timeout_ms[self.facts.guest_pos[self.session_guest[present]]]
        forced = np.zeros(self.sessions, dtype=bool)
        fc = np.flatnonzero(self.type[:m] == E.FORCE_CLOSE)
        forced[self.sess[fc]] = True
        closed[present] = forced[present] | (ended + timeout <= cutoff_ms)
        return closed

    def days(self, lo: int, hi: int, day_ms: int) -> list[tuple[int, int, int]]:
        """(day number, first, end) of each UTC day among events [lo, hi)."""
        if hi <= lo:
            return []
        day = self.created[lo:hi] // day_ms
        cuts = np.flatnonzero(np.diff(day)) + 1
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), hi - lo]
        return [(int(day[s]), lo + s, lo + e) for s, e in zip(starts, ends, strict=True)]

    # --- events ------------------------------------------------------------------------------

    def events(self, lo: int, hi: int) -> pa.RecordBatch:
        """The events table's rows for kept events [lo, hi)."""
        f, lex = self.facts, self.lex
        n = hi - lo
        sl = slice(lo, hi)
        types = self.type[sl]
        sess = self.sess[sl]
        guest = self.guest[sl]
        pos = self.pos[sl]
        item = f.item[sl]
        tracking = types == E.TRACKING
        client = ~tracking
        paged = (types == E.VIEW) | (types == E.SEARCH) | (types == E.ADD)
        code = f.page[sl].astype(np.int64)
        page = np.where(
            code == _PRODUCT,
            item,
            np.where(code == _CATEGORY, lex.n_items + item, lex.n_items + lex.n_types + code),
        )
        flow = f.flow[sl].astype(np.int64)
        variant = f.variant[sl].astype(np.int64)
        ft = np.where(tracking, flow, 0)
        columns: dict[str, pa.Array] = {
            "meta_ref": _uuids(np.stack([f.ref_hi[sl], f.ref_lo[sl]], axis=1)),
            "meta_client_key": _const(_words(lex.client_key), n),
            "meta_created_at": _ts(self.created[sl]),
            "meta_modified_at": _ts(f.modified_ms[sl]),
            "meta_session_ref": _fixed(self.session_text[sess]),
            "meta_guest_ref": _fixed(self.guest_text[guest]),
            "meta_browser_ref": _fixed(self.browser_text[f.session_browser[sess]]),
            "type": _take(lex.type_name, types),
            "status": _take(lex.event_status, f.failed[sl].astype(np.int64)),
            "core_channel": _take(lex.channel, self.group[sl]),
            "core_currency_code": _take(lex.currency, pos, client),
            "core_language": _take(lex.language, pos, client),
            "core_page": _take(lex.page, np.where(paged, page, 0), paged),
            "core_point_of_sale": _take(lex.pos, pos),
            "bxt": self._event_bxt(lo, hi),
            "ext": _empty_maps(n),
            "flow_execution_created_at": _ts(f.occurred_ms[sl], tracking),
            "flow_execution_dm_ref": pa.nulls(n, pa.string()),
            "flow_execution_dm_variant_ref": pa.nulls(n, pa.string()),
            "flow_execution_flow_ref": _take(lex.flow_ref, ft, tracking),
            "flow_execution_flow_friendly_id": _take(lex.friendly, ft, tracking),
            "flow_execution_flow_variant_ref": _take(
                lex.variant_ref, ft * lex.variants + np.where(tracking, variant, 0), tracking
            ),
            "flow_execution_guest_ref": _fixed(self.guest_text[guest], tracking),
            "flow_execution_ref": _uuids(f.execution_halves[sl], tracking),
            "flow_execution_status": _take(_words("SUCCESS"), np.zeros(n), tracking),
            "flow_execution_latency_ms": pa.array(
                f.execution_ms[sl].astype(np.int32), pa.int32(), mask=client
            ),
        }
        return batch_of("events", columns)

    def _event_bxt(self, lo: int, hi: int) -> pa.Array:
        """What `arbitraryData` holds beyond the columns, flattened, keys in the order the
        JSON lines carry them."""
        f, lex = self.facts, self.lex
        types = self.type[lo:hi]
        slots: dict[int, list[tuple[str, pa.Array]]] = {}

        def at(t: EventType) -> np.ndarray:
            return lo + np.flatnonzero(types == t)

        rows = at(E.SEARCH)
        if len(rows):
            kinds = f.item[rows]
            slots[E.SEARCH] = [
                ("product_name", _take(lex.type_label, kinds)),
                ("product_type", _take(lex.type_names, kinds)),
            ]
        rows = at(E.ADD)
        if len(rows):
            items = f.item[rows]
            pos = self.pos[rows]
            ordered = np.concatenate(
                [iso_text(self.created[rows]), np.full((len(rows), 1), ord("Z"), np.uint8)],
                axis=1,
            )
            slots[E.ADD] = [
                ("product.type", _take(lex.item_type, items)),
                ("product.item_id", _take(lex.item_id, items)),
                ("product.name", _take(lex.item_name, items)),
                ("product.orderedAt", _fixed(ordered)),
                ("product.quantity", pc.cast(pa.array(f.quantity[rows]), pa.string())),
                (
                    "product.price",
                    _take(lex.item_price, pos.astype(np.int64) * lex.n_items + items),
                ),
                ("product.productId", _take(lex.item_id, items)),
                ("product.currency", _take(lex.currency, pos)),
                ("product.referenceId", _fixed(self.order_text[self.sess[rows]])),
            ]
        rows = at(E.CONFIRM)
        if len(rows):
            slots[E.CONFIRM] = [("product", _strings([self._cart(i) for i in rows.tolist()]))]
        rows = at(E.CHECKOUT)
        if len(rows):
            slots[E.CHECKOUT] = [
                ("reference_id", _fixed(self.order_text[self.sess[rows]])),
                ("status", _take(lex.order_status, f.order_status[rows].astype(np.int64))),
            ]
        rows = at(E.PAYMENT)
        if len(rows):
            slots[E.PAYMENT] = [("pay_type", _take(lex.pay, f.session_pay_type[self.sess[rows]]))]
        rows = at(E.IDENTITY)
        if len(rows):
            guests = self.guest[rows]
            email = _take(self.guest_email, guests)
            slots[E.IDENTITY] = [
                ("email", email),
                ("firstname", _take(lex.first_name, self.guest_first[guests])),
                ("lastname", _take(lex.last_name, self.guest_last[guests])),
                ("identifiers", _join('[{"provider":"email","id":"', email, '"}]')),
            ]
        rows = at(E.TRACKING)
        if len(rows):
            slots[E.TRACKING] = [("category", _const(lex.executed, len(rows)))]
        return _maps_by_type(types, slots)

    def _cart(self, confirm: int) -> str:
        """A CONFIRM's cart as its JSON text: every item ADDed in its session (events/lines.py
        lists the session's whole cart)."""
        if not hasattr(self, "_carts"):
            f = self.facts
            adds = np.flatnonzero(f.type == E.ADD)
            carts: dict[int, list[str]] = {}
            for s, x in zip(f.session[adds].tolist(), f.item[adds].tolist(), strict=True):
                carts.setdefault(s, []).append(self.lex.item_ids[x])
            self._carts = carts
        items = self._carts.get(int(self.sess[confirm]), [])
        if self.facts.failed[confirm]:  # a FAILED CONFIRM also lists its never-added item
            items = [*items, self.lex.item_ids[int(self.facts.item[confirm])]]
        return orjson.dumps([{"item_id": x} for x in items]).decode()

    # --- orders ------------------------------------------------------------------------------

    def _orders(self) -> list[_BlockOrder]:
        """Every kept sale (a PROCESSED CHECKOUT PAYMENT_PENDING) as an order: its items are the
        ADDs of its session since the last CLEAR_CART or sale; PAYMENTs after it tell its
        payment type, later CHECKOUTs of its reference (CONFIRMED in its session, CANCELLED
        or REFUNDED in one of their own) its status. FAILED rows change nothing."""
        kinds = np.array([E.ADD, E.CLEAR_CART, E.CHECKOUT, E.PAYMENT])
        rows = np.flatnonzero(np.isin(self.type, kinds) & ~self.facts.failed[: self.n])
        carts: dict[int, list[int]] = {}
        latest: dict[int, _BlockOrder] = {}
        by_ref: dict[tuple[int, int], _BlockOrder] = {}
        orders: list[_BlockOrder] = []
        f = self.facts
        prices = self.lex.item_prices
        items_of, quantity, status = f.item, f.quantity, f.order_status
        halves = f.session_order_halves
        for i, t, s in zip(
            rows.tolist(), self.type[rows].tolist(), self.sess[rows].tolist(), strict=True
        ):
            if t == E.ADD:
                carts.setdefault(s, []).append(i)
            elif t == E.CLEAR_CART:
                carts.pop(s, None)
            elif t == E.CHECKOUT and int(status[i]) == _SALE:
                items = carts.pop(s, [])
                pos = int(f.guest_pos[self.session_guest[s]])
                # As Order.price: rounded once, over the items in cart order.
                price = round(
                    sum(prices[pos][int(items_of[a])] * int(quantity[a]) for a in items), 2
                )
                order = _BlockOrder(i, s, items, price)
                orders.append(order)
                latest[s] = order
                by_ref[(int(halves[s, 0]), int(halves[s, 1]))] = order
            elif t == E.CHECKOUT:  # a later status of an order placed before
                placed = by_ref.get((int(halves[s, 0]), int(halves[s, 1])))
                if placed is not None:
                    placed.changes.append(i)
            elif s in latest:  # a PAYMENT after an order of its session
                latest[s].payments.append(i)
        return orders

    def session_values(self, m: int) -> dict[int, float]:
        """Per session with an order as of m: the value of its orders (Order.price summed as
        SessionEntity.value is)."""
        values: dict[int, float] = {}
        for o in self.orders:
            if o.checkout < m:
                values[o.session] = round(values.get(o.session, 0.0) + o.price, 2)
        return values

    def sales(self, m: int) -> np.ndarray:
        """Per session: the orders it placed as of m."""
        placed = [o.session for o in self.orders if o.checkout < m]
        return np.bincount(np.array(placed, dtype=np.int64), minlength=self.sessions)

    def order_rows(self, m: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The orders and order items tables' rows as of m (through the JSON path's own row
        builders: orders are few): each order as its PAYMENT and status changes before m left
        it."""
        orders: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        for o in self.orders:
            if o.checkout >= m:
                break  # orders come in CHECKOUT order
            paid = any(p < m for p in o.payments)
            changed = sum(1 for c in o.changes if c < m)
            row, its = self._order_row(o, paid, changed)
            orders.append(row)
            items += its
        return orders, items

    def _order_row(
        self, o: _BlockOrder, paid: bool, changed: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """An order's row and its items' rows, paid or not, after its first `changed` status
        changes (made once per state)."""
        state = (paid, changed)
        if state in o.rows:
            return o.rows[state]
        f, lex = self.facts, self.lex
        key = lex.client_key
        s = o.session
        g = int(self.session_guest[s])
        pos = int(f.guest_pos[g])
        currency = lex.currencies[pos]
        wanted = [*o.items, o.checkout]
        refs = iter(_texts(np.stack([f.ref_hi[wanted], f.ref_lo[wanted]], axis=1)))
        items = []
        for a in o.items:
            x = int(f.item[a])
            items.append(
                OrderItem(
                    ref=next(refs),
                    created_ms=int(self.created[a]),
                    item_id=lex.item_ids[x],
                    product_id=lex.item_ids[x],
                    name=lex.item_names[x],
                    type=lex.item_types[x],
                    quantity=int(f.quantity[a]),
                    price=lex.item_prices[pos][x],
                    currency=currency,
                )
            )
        last = o.changes[changed - 1] if changed else o.checkout
        order = Order(
            ref=_texts(f.session_order_halves[[s]])[0],
            guest_ref=_texts(f.guest_halves[[g]])[0],
            session_ref=_texts(f.session_halves[[s]])[0],
            checkout_ref=next(refs),
            ordered_ms=int(self.created[o.checkout]),
            currency=currency,
            point_of_sale=lex.pos_names[pos],
            channel=lex.channel_names[int(self.group[o.checkout])],
            status=ORDER_STATUSES[int(f.order_status[last])],
            items=items,
            pay_type=lex.pay_types[int(f.session_pay_type[s])] if paid else None,
            modified_ms=int(self.created[last]),
        )
        o.rows[state] = (C.order_row(order, key), C.order_item_rows(order, key))
        return o.rows[state]

    # --- sessions ----------------------------------------------------------------------------

    def sessions_as_of(
        self, m: int, cutoff_ms: int, which: np.ndarray, counts: np.ndarray, closed: np.ndarray
    ) -> pa.RecordBatch:
        """The sessions table's rows for sessions `which` (ascending, each with events before
        the cutoff) as of the cutoff (m events)."""
        f, lex = self.facts, self.lex
        n = len(which)
        typed = np.bincount(
            self.sess[:m].astype(np.int64) * _NT + self.type[:m], minlength=self.sessions * _NT
        ).reshape(self.sessions, _NT)[which]
        start = self.session_first[which]
        first = self.by_session[start]
        last = self.by_session[start + counts[which] - 1]
        started, ended = self.created[first], self.created[last]
        guest = self.session_guest[which]
        pos = f.guest_pos[guest]
        browser = f.session_browser[which]
        group = pos.astype(np.int64) * lex.channels + f.browser_channel[browser]
        client = (counts[which] - typed[:, E.TRACKING]) > 0
        # Sessions that saw only TRACKING so far carry no currency or language yet ("").
        blank = _words("")
        currency = pa.concat_arrays([lex.currency, blank])
        language = pa.concat_arrays([lex.language, blank])
        nopos = len(lex.pos_names)
        values = self.session_values(m)
        value = np.array([values.get(s, 0.0) for s in which.tolist()], dtype=np.float64)
        has_value = np.array([s in values for s in which.tolist()], dtype=bool)
        seconds = np.maximum(0, ended - started) // 1000
        duration = ((seconds // 60) * 100 + seconds % 60).astype(np.float64) / 100.0
        sales = self.sales(m)[which]
        cart = np.where(sales > 0, 0, np.where(typed[:, E.ADD] > 0, 1, 2))
        counts_text = {
            key: pc.cast(pa.array(typed[:, list(kinds)].sum(axis=1)), pa.string())
            for key, kinds in _SESSION_COUNTS
        }
        bxt = _maps(
            ["cartType", "language", *(k for k, _ in _SESSION_COUNTS)],
            [
                _take(_words("CONVERTED", "ABANDONED", "BROWSED"), cart),
                _take(language, np.where(client, pos, nopos)),
                *(counts_text[k] for k, _ in _SESSION_COUNTS),
            ],
        )
        columns: dict[str, pa.Array] = {
            "meta_ref": _fixed(self.session_text[which]),
            "meta_client_key": _const(_words(lex.client_key), n),
            "meta_created_at": _ts(started),
            "meta_modified_at": _ts(ended),
            "meta_guest_ref": _fixed(self.guest_text[guest]),
            "meta_browser_ref": _fixed(self.browser_text[browser]),
            "session_type": _const(_words("BROWSER"), n),
            "core_channel": _take(lex.channel, group),
            "core_currency_code": _take(currency, np.where(client, pos, nopos)),
            "core_point_of_sale": _take(lex.pos, pos),
            "core_status": _take(_words("OPEN", "CLOSED"), closed[which].astype(np.int64)),
            "core_started_at": _ts(started),
            "core_ended_at": _ts(ended),
            "core_duration": pa.array(duration, pa.float64()),
            "core_value": pa.array(value, pa.float64(), mask=~has_value),
            "core_flow_refs": self._flows(m, which),
            "bxt": bxt,
            "ext": _empty_maps(n),
        }
        return batch_of("sessions", columns)

    def _flows(self, m: int, which: np.ndarray) -> pa.Array:
        """Per session, the flows run in it as of m, in the order they first ran."""
        nf = max(self.lex.flows, 1)
        t = np.flatnonzero(self.type[:m] == E.TRACKING)
        pairs, first = np.unique(
            self.sess[t].astype(np.int64) * nf + self.facts.flow[t], return_index=True
        )
        sess, flow = pairs // nf, pairs % nf
        order = np.lexsort((first, sess))
        sess, flow = sess[order], flow[order]
        wanted = np.zeros(self.sessions, dtype=bool)
        wanted[which] = True
        keep = wanted[sess]
        sess, flow = sess[keep], flow[keep]
        per = np.bincount(sess, minlength=self.sessions)[which]
        offsets = np.zeros(len(which) + 1, dtype=np.int32)
        np.cumsum(per, out=offsets[1:])
        return pa.ListArray.from_arrays(
            pa.array(offsets), _take(self.lex.flow_ref, flow), type=pa.list_(pa.string())
        )

    # --- guests ------------------------------------------------------------------------------

    def guests_as_of(self, m: int, counts: np.ndarray) -> pa.RecordBatch:
        """The guests table's rows as of m: every guest with an event before the cutoff, in
        guest order (what `columns.guest_row` makes of the same guest)."""
        f, lex = self.facts, self.lex
        seen_counts = np.bincount(self.guest[:m], minlength=self.guests)
        seen = np.flatnonzero(seen_counts)
        n = len(seen)
        start = self.guest_group[seen]
        first = self.created[self.by_guest[start]]
        last = self.created[self.by_guest[start + seen_counts[seen] - 1]]
        ident = self.first_identity[seen]
        customer = ident < m
        identified = np.where(customer, self.created[np.minimum(ident, max(self.n - 1, 0))], 0)
        sessions = np.bincount(self.session_guest[np.flatnonzero(counts)], minlength=self.guests)
        orders = np.bincount(self.session_guest, weights=self.sales(m), minlength=self.guests)
        orders = orders.astype(np.int64)
        pos = f.guest_pos[seen]
        ref = _fixed(self.guest_text[seen])
        fi, la = self.guest_first[seen], self.guest_last[seen]
        c = np.flatnonzero(customer)
        email = _take(self.guest_email, seen[c])
        pos_name = _take(lex.pos, pos)
        language = _take(lex.language, pos)
        # bxt: language and pointOfSale; a customer's names as IDENTITY sent them (sorted).
        kind = customer.astype(np.int8)
        v = np.flatnonzero(~customer)
        bxt = _maps_by_type(
            kind,
            {
                0: [
                    ("language", language.take(pa.array(v))),
                    ("pointOfSale", pos_name.take(pa.array(v))),
                ],
                1: [
                    ("email", email),
                    ("emails", _join('["', email, '"]')),
                    ("firstName", _take(lex.first_name, fi[c])),
                    ("language", language.take(pa.array(c))),
                    ("lastName", _take(lex.last_name, la[c])),
                    ("pointOfSale", pos_name.take(pa.array(c))),
                ],
            },
            kinds=2,
        )
        kinds = _words("VISITOR", "CUSTOMER")
        type_text = _take(kinds, kind)
        names = pc.if_else(
            pa.array(customer),
            _join(
                '"firstName":',
                _take(lex.first_json, fi),
                ',"lastName":',
                _take(lex.last_json, la),
                ',"email":"',
                _take(self.guest_email, seen),
                '",',
            ),
            _scalar(""),
        )
        raw = _join(
            '{"guestRef":"',
            ref,
            '","type":"',
            type_text,
            '",',
            names,
            '"pointOfSale":',
            _take(lex.pos_json, pos),
            ',"language":',
            _take(lex.language_json, pos),
            ',"browsers":[',
            pc.binary_join(self.browsers_json.take(pa.array(seen)), ","),
            "]}",
        )
        columns: dict[str, pa.Array] = {
            "meta_ref": ref,
            "meta_client_key": _const(_words(lex.client_key), n),
            "meta_created_at": _ts(first),
            "meta_modified_at": _ts(np.maximum(last, identified)),
            "type": type_text,
            "core_first_seen_at": _ts(first),
            "core_last_seen_at": _ts(last),
            "bxt": bxt,
            "ext": _empty_maps(n),
            "session_traits": _maps(
                ["lastPointOfSale", "numOrders", "numSessions"],
                [
                    pos_name,
                    pc.cast(pa.array(orders[seen]), pa.string()),
                    pc.cast(pa.array(sessions[seen]), pa.string()),
                ],
            ),
            "raw": raw,
        }
        return batch_of("guests", columns)

    @property
    def browsers_json(self) -> pa.Array:
        """Per guest of the block, its browsers as guests.jsonl lists them (a list of JSON
        texts, one per browser)."""
        cached: pa.Array | None = getattr(self, "_browsers_json", None)
        if cached is None:
            f, lex = self.facts, self.lex
            group = f.guest_pos[f.browser_guest].astype(np.int64) * lex.channels
            text = _join(
                '{"browserRef":"',
                self.browser_ref,
                '","channel":',
                _take(lex.channel_json, group + f.browser_channel),
                ',"userAgent":',
                _take(lex.agent_json, f.browser_agent),
                "}",
            )
            offsets = np.concatenate(
                [f.guest_browsers, [f.guest_browsers[-1] + f.guest_browser_count[-1]]]
            ).astype(np.int32)
            cached = self._browsers_json = pa.ListArray.from_arrays(pa.array(offsets), text)
        return cached

    # --- the manifest's figures --------------------------------------------------------------

    def type_counts(self) -> np.ndarray:
        """Events by type, then FAILED events by type (orders.status_counts)."""
        return status_counts(self.type, self.facts.failed[: self.n])

    def exposures(self, variants: int) -> np.ndarray:
        out = np.zeros((max(self.lex.flows, 1), max(variants, 1)), dtype=np.int64)
        t = np.flatnonzero(self.type == E.TRACKING)
        np.add.at(out, (self.facts.flow[t], self.facts.variant[t]), 1)
        return out

    def last_key(self) -> tuple[int, int, int] | None:
        if self.n == 0:
            return None
        i = self.n - 1
        f = self.facts
        return int(self.created[i]), int(f.ref_hi[i]), int(f.ref_lo[i])

    def seen_and_customers(self) -> tuple[int, int]:
        seen = np.bincount(self.guest, minlength=self.guests) > 0
        return int(seen.sum()), int((self.first_identity < self.n).sum())


def _groups(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices grouped by key (stable: each group keeps its order), and where each key's
    group starts."""
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=size)
    first = np.zeros(size, dtype=np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    return order, first


def rows_batch(entity: str, rows: list[dict[str, Any]]) -> pa.RecordBatch:
    """Row dicts (the JSON path's builders) into a batch of the entity's schema."""
    schema = C.SCHEMAS[entity]
    return pa.RecordBatch.from_pydict(
        {name: [r.get(name) for r in rows] for name in schema.names}, schema=schema
    )
