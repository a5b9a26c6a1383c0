"""The hot path to dataset files: events as compact rows, then JSON lines from byte templates.

`block_rows` turns a block's facts into one fixed-size binary row per event (everything a line
needs, refs as raw 128-bit pairs) plus a small side blob for CONFIRM carts. The dataset writer
sorts rows by (createdAt, ref) and `render_rows` writes them as JSON lines in that order. Each
line is byte-for-byte what `orjson.dumps` makes of the renderer's dict for the same event, plus a
newline; a test holds the two together.
"""

from __future__ import annotations

import numpy as np
import orjson

from generator.events.render import BlockRenderer
from generator.events.timestamps import iso_bytes
from generator.events.types import EventType
from generator.model.block import PAY_TYPES, BlockFacts
from generator.model.pools import EMAIL_DOMAINS
from generator.model.refs import halves_strings
from generator.profile import Page

__all__ = ["ROW_DTYPE", "block_rows", "render_rows", "sort_rows"]

ROW_DTYPE = np.dtype(
    [
        ("created", "<i8"),
        ("ref_hi", "<u8"),
        ("ref_lo", "<u8"),
        ("modified", "<i8"),
        ("occurred", "<i8"),
        ("guest", "<i8"),  # global guest index
        ("goal", "<i8"),  # CHECKOUT: bit f set when the order holds flow f's goal product
        ("extra", "<i8"),  # CONFIRM: offset of its cart in the side blob
        ("item", "<i4"),
        ("extra_len", "<i4"),
        ("first_name", "<i2"),
        ("last_name", "<i2"),
        ("execution_ms", "<i2"),
        ("type", "<i1"),
        ("pos", "<i1"),
        ("channel", "<i1"),
        ("page", "<i1"),
        ("flow", "<i1"),
        ("variant", "<i1"),
        ("pay", "<i1"),
        ("domain", "<i1"),
        ("refs", "<u8", (10,)),  # session, browser, guest, order, execution: hi/lo pairs
    ]
)
_SESSION, _BROWSER, _GUEST, _ORDER, _EXEC = 0, 2, 4, 6, 8
_PAGES = tuple(Page)
_PRODUCT = _PAGES.index(Page.PRODUCT)
_CATEGORY = _PAGES.index(Page.CATEGORY)


def _j(value: object) -> bytes:
    """A JSON value, escaped once when the template pieces are built."""
    return orjson.dumps(value)


def _strings(hi: np.ndarray, lo: np.ndarray) -> list[bytes]:
    """hi/lo uint64 pairs back to UUID strings."""
    return list(halves_strings(np.stack([hi, lo], axis=1)).tolist())


def block_rows(r: BlockRenderer, facts: BlockFacts) -> tuple[np.ndarray, bytes]:
    """Every event of a block as a row (in the block's order), and the CONFIRM carts blob."""
    n = len(facts)
    rows = np.zeros(n, dtype=ROW_DTYPE)
    if n == 0:
        return rows, b""
    sess = facts.session
    browser = facts.session_browser[sess]
    guest = facts.browser_guest[browser]
    rows["created"] = facts.created_ms
    rows["ref_hi"] = facts.ref_hi
    rows["ref_lo"] = facts.ref_lo
    rows["modified"] = facts.modified_ms
    rows["occurred"] = facts.occurred_ms
    rows["guest"] = guest + facts.first_guest
    rows["goal"] = facts.goal_mask
    rows["item"] = facts.item
    rows["first_name"] = facts.guest_first_name[guest]
    rows["last_name"] = facts.guest_last_name[guest]
    rows["execution_ms"] = facts.execution_ms
    rows["type"] = facts.type
    rows["pos"] = facts.guest_pos[guest]
    rows["channel"] = facts.browser_channel[browser]
    rows["page"] = facts.page
    rows["flow"] = facts.flow
    rows["variant"] = facts.variant
    rows["pay"] = facts.session_pay_type[sess]
    rows["domain"] = facts.guest_domain[guest]
    refs = rows["refs"]
    refs[:, _SESSION : _SESSION + 2] = facts.session_halves[sess]
    refs[:, _BROWSER : _BROWSER + 2] = facts.browser_halves[browser]
    refs[:, _GUEST : _GUEST + 2] = facts.guest_halves[guest]
    refs[:, _ORDER : _ORDER + 2] = facts.session_order_halves[sess]
    refs[:, _EXEC : _EXEC + 2] = facts.execution_halves
    # A CONFIRM lists the session's cart: every item ADDed in it (organic baskets and
    # conversions alike; a buying session never clears its cart first).
    confirm = np.flatnonzero(facts.type == EventType.CONFIRM)
    blob = bytearray()
    if len(confirm):
        p = _pieces(r)
        adds = np.flatnonzero(facts.type == EventType.ADD)
        carts: dict[int, list[bytes]] = {}
        for s, x in zip(sess[adds].tolist(), facts.item[adds].tolist(), strict=True):
            carts.setdefault(s, []).append(b'{"item_id":%s}' % p.item_id[x])
        for i, s in zip(confirm.tolist(), sess[confirm].tolist(), strict=True):
            cart = b",".join(carts.get(s, ()))
            rows["extra"][i] = len(blob)
            rows["extra_len"][i] = len(cart)
            blob += cart
    return rows, bytes(blob)


def sort_rows(rows: np.ndarray) -> np.ndarray:
    """The permutation that orders rows by (createdAt, ref)."""
    keys = (
        np.ascontiguousarray(rows["ref_lo"]),
        np.ascontiguousarray(rows["ref_hi"]),
        np.ascontiguousarray(rows["created"]),
    )
    return np.lexsort(keys)


class _Pieces:
    """Constant byte pieces of one world (built once, cached on the renderer)."""

    def __init__(self, r: BlockRenderer) -> None:
        w = r.world
        self.key = _j(r.client_key)
        names = [f"product/{i}" for i in r.item_ids]
        names += [f"category/{t}" for t in r.type_names]
        names += [p.value for p in _PAGES]
        self.page = np.array([_j(x) for x in names], dtype=object)
        self.n_items = len(r.item_ids)
        self.n_types = len(r.type_names)
        self.item_id = [_j(x) for x in r.item_ids]
        self.item_name = [_j(x) for x in r.item_names]
        self.item_price = [_j(x) for x in r.item_price]
        self.item_type_upper = [_j(r.type_names[t].upper()) for t in r.item_type]
        self.type_label = [_j(x) for x in r.type_label]
        self.type_name = [_j(x) for x in r.type_names]
        self.pay = [_j(x) for x in PAY_TYPES]
        self.friendly = [_j(x) for x in r.friendly_ids]
        self.flow_ref = [x.encode() for x in w.flow_refs]
        self.variant_ref = [[x.encode() for x in vs] for vs in w.variant_refs]
        self.currency = [_j(c) for c in r.pos_currency]
        # Indexed by pos * channels + channel: the envelope's channel and point of sale, and
        # TRACKING's `core` copy of them.
        self.channels = max(len(c) for c in r.pos_channels)
        envs, cores = [], []
        for pos, chans in enumerate(r.pos_channels):
            for c in range(self.channels):
                ch = _j(chans[c % len(chans)])
                envs.append(b'"channel":%s,"pointOfSale":%s' % (ch, _j(r.pos_names[pos])))
                cores.append(b'{"pointOfSale":%s,"channel":%s}' % (_j(r.pos_names[pos]), ch))
        self.env = np.array(envs, dtype=object)
        self.core = np.array(cores, dtype=object)
        self.locale = np.array(
            [
                b'"language":%s,"currency":%s' % (_j(lang), _j(cur))
                for lang, cur in zip(r.pos_language, r.pos_currency, strict=True)
            ],
            dtype=object,
        )
        self.first = [[_j(x) for x in pool.first] for pool in w.pools.names]
        self.last = [[_j(x) for x in pool.last] for pool in w.pools.names]
        self.first_slug = [pool.first_slug for pool in w.pools.names]
        self.last_slug = [pool.last_slug for pool in w.pools.names]


def _pieces(r: BlockRenderer) -> _Pieces:
    cached: _Pieces | None = getattr(r, "_line_pieces", None)
    if cached is None:
        cached = _Pieces(r)
        r._line_pieces = cached  # type: ignore[attr-defined]
    return cached


def _head(type_name: bytes, key: bytes) -> bytes:
    """Envelope through arbitraryData's locale: ref, created, modified, env, browser, session
    and locale are the % slots."""
    return (
        b'{"ref":"%s","clientKey":'
        + key.replace(b"%", b"%%")
        + b',"createdAt":"%sZ","modifiedAt":"%sZ","type":"'
        + type_name
        + b'","status":"PROCESSED",%s,"browserRef":"%s","sessionRef":"%s"'
    )


def render_rows(r: BlockRenderer, rows: np.ndarray, extras: bytes) -> list[bytes]:
    """The JSON line of every row, in the rows' order."""
    n = len(rows)
    if n == 0:
        return []
    p = _pieces(r)
    E = EventType
    key = p.key
    types = rows["type"]
    out = np.empty(n, dtype=object)

    def take(t: EventType) -> tuple[np.ndarray, list[list[bytes]]]:
        """The rows of one type, and the envelope's columns for them: ref, createdAt,
        modifiedAt, channel and point of sale, browser, session."""
        idx = np.flatnonzero(types == t)
        sel = rows[idx]
        refs = sel["refs"]
        cols = [
            _strings(sel["ref_hi"], sel["ref_lo"]),
            iso_bytes(sel["created"]).tolist(),
            iso_bytes(sel["modified"]).tolist(),
            p.env[sel["pos"].astype(np.int64) * p.channels + sel["channel"]].tolist(),
            _strings(refs[:, _BROWSER], refs[:, _BROWSER + 1]),
            _strings(refs[:, _SESSION], refs[:, _SESSION + 1]),
        ]
        return idx, cols

    def locale(idx: np.ndarray) -> list[bytes]:
        return list(p.locale[rows["pos"][idx]].tolist())

    def page_names(idx: np.ndarray) -> list[bytes]:
        pc = rows["page"][idx].astype(np.int64)
        it = rows["item"][idx].astype(np.int64)
        pidx = np.where(
            pc == _PRODUCT,
            it,
            np.where(pc == _CATEGORY, p.n_items + it, p.n_items + p.n_types + pc),
        )
        return list(p.page[pidx].tolist())

    def data(type_name: bytes) -> bytes:
        return _head(type_name, key) + b',"arbitraryData":{%s'

    idx, cols = take(E.VIEW)
    fmt = data(b"VIEW") + b',"page":%s}}\n'
    out[idx] = [
        fmt % (r, c, m, e, b, s, lc, pg)
        for r, c, m, e, b, s, lc, pg in zip(*cols, locale(idx), page_names(idx), strict=True)
    ]

    idx, cols = take(E.SEARCH)
    fmt = data(b"SEARCH") + b',"page":%s,"product_name":%s,"product_type":%s}}\n'
    its = rows["item"][idx].tolist()
    out[idx] = [
        fmt % (r, c, m, e, b, s, lc, pg, p.type_label[x], p.type_name[x])
        for r, c, m, e, b, s, lc, pg, x in zip(
            *cols, locale(idx), page_names(idx), its, strict=True
        )
    ]

    idx, cols = take(E.ADD)
    fmt = data(b"ADD") + (
        b',"page":%s,"product":{"type":%s,"item_id":%s,"name":%s,"orderedAt":"%sZ",'
        b'"quantity":1,"price":%s,"productId":%s,"currency":%s,"referenceId":"%s"}}}\n'
    )
    its = rows["item"][idx].tolist()
    curs = [p.currency[x] for x in rows["pos"][idx].tolist()]
    orefs = _strings(rows["refs"][idx, _ORDER], rows["refs"][idx, _ORDER + 1])
    out[idx] = [
        fmt
        % (
            r,
            c,
            m,
            e,
            b,
            s,
            lc,
            pg,
            p.item_type_upper[x],
            p.item_id[x],
            p.item_name[x],
            c,
            p.item_price[x],
            p.item_id[x],
            cur,
            o,
        )
        for r, c, m, e, b, s, lc, pg, x, cur, o in zip(
            *cols, locale(idx), page_names(idx), its, curs, orefs, strict=True
        )
    ]

    idx, cols = take(E.CONFIRM)
    fmt = data(b"CONFIRM") + b',"product":[%s]}}\n'
    spans = zip(rows["extra"][idx].tolist(), rows["extra_len"][idx].tolist(), strict=True)
    out[idx] = [
        fmt % (r, c, m, e, b, s, lc, extras[lo : lo + n])
        for r, c, m, e, b, s, lc, (lo, n) in zip(*cols, locale(idx), spans, strict=True)
    ]

    idx, cols = take(E.CHECKOUT)
    fmt = data(b"CHECKOUT") + b',"reference_id":"%s","status":"PURCHASED"}}\n'
    orefs = _strings(rows["refs"][idx, _ORDER], rows["refs"][idx, _ORDER + 1])
    out[idx] = [
        fmt % (r, c, m, e, b, s, lc, o)
        for r, c, m, e, b, s, lc, o in zip(*cols, locale(idx), orefs, strict=True)
    ]

    idx, cols = take(E.PAYMENT)
    fmt = data(b"PAYMENT") + b',"pay_type":%s}}\n'
    pays = rows["pay"][idx].tolist()
    out[idx] = [
        fmt % (r, c, m, e, b, s, lc, p.pay[x])
        for r, c, m, e, b, s, lc, x in zip(*cols, locale(idx), pays, strict=True)
    ]

    for t in (E.CLEAR_CART, E.FORCE_CLOSE):
        idx, cols = take(t)
        fmt = data(t.name.encode()) + b"}}\n"
        out[idx] = [fmt % row for row in zip(*cols, locale(idx), strict=True)]

    idx, cols = take(E.IDENTITY)
    fmt = data(b"IDENTITY") + (
        b',"email":%s,"firstname":%s,"lastname":%s,"identifiers":[{"provider":"email","id":%s}]}}\n'
    )
    sel = rows[idx]
    identity = []
    for c, lc, pos, fi, la, g, d in zip(
        zip(*cols, strict=True),
        locale(idx),
        sel["pos"].tolist(),
        sel["first_name"].tolist(),
        sel["last_name"].tolist(),
        sel["guest"].tolist(),
        sel["domain"].tolist(),
        strict=True,
    ):
        email = _j(f"{p.first_slug[pos][fi]}.{p.last_slug[pos][la]}.{g}@{EMAIL_DOMAINS[d]}")
        identity.append(fmt % (*c, lc, email, p.first[pos][fi], p.last[pos][la], email))
    out[idx] = identity

    idx, cols = take(E.TRACKING)
    head = _head(b"TRACKING", key)
    fx_fmt = (
        b'{"ref":"%s","occurredAt":%d,"flowRef":"%s","flowFriendlyId":%s,'
        b'"flowVariantRef":"%s","guestRef":"%s","flowExecutionTimeMs":%d,"status":"SUCCESS"}'
    )
    tail = b',"flowExecutionRef":"%s","arbitraryData":{"flowExecution":%s,'
    tail += b'"_bx_arbitraryDataV3ga":{"core":%s,"bxt":{"flowExecution":%s,'
    tail += b'"category":"EXECUTED"}}}}\n'
    sel = rows[idx]
    refs = sel["refs"]
    tracking = []
    for c, x, o, f, v, gr, e, cr in zip(
        zip(*cols, strict=True),
        _strings(refs[:, _EXEC], refs[:, _EXEC + 1]),
        sel["occurred"].tolist(),
        sel["flow"].tolist(),
        sel["variant"].tolist(),
        _strings(refs[:, _GUEST], refs[:, _GUEST + 1]),
        sel["execution_ms"].tolist(),
        p.core[sel["pos"].astype(np.int64) * p.channels + sel["channel"]].tolist(),
        strict=True,
    ):
        fx = fx_fmt % (x, o, p.flow_ref[f], p.friendly[f], p.variant_ref[f][v], gr, e)
        tracking.append(head % c + tail % (x, fx, cr, fx))
    out[idx] = tracking
    return list(out.tolist())
