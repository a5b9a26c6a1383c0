"""The hot path to dataset files: events as compact rows, then JSON lines from byte templates.

`block_rows` turns a block's facts into one fixed-size binary row per event (everything a line
needs, refs as raw 128-bit pairs) plus a small side blob for CONFIRM carts. The dataset writer
sorts rows by (createdAt, ref) and `render_rows` writes them as JSON lines in that order. Each
line is byte-for-byte what `orjson.dumps` makes of the renderer's dict for the same event, plus a
newline; a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import orjson

from generator.events.render import BlockRenderer, identified_guests
from generator.events.timestamps import iso_bytes, iso_text
from generator.model.block import BlockFacts
from generator.model.refs import halves_strings, halves_text
from generator.profile import Page
from generator.vocabulary import (
    EMAIL_DOMAINS,
    EVENT_STATUSES,
    ORDER_STATUSES,
    PAY_TYPES,
    EventType,
    product_type_label,
)

__all__ = ["ROW_DTYPE", "anonymous", "block_rows", "guest_lines", "render_rows", "sort_rows"]

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
        ("quantity", "<i2"),  # ADD
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
        ("failed", "<i1"),  # stored FAILED
        ("order_status", "<i1"),  # CHECKOUT: index into ORDER_STATUSES
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
    rows["quantity"] = facts.quantity
    rows["failed"] = facts.failed
    rows["order_status"] = facts.order_status
    refs = rows["refs"]
    refs[:, _SESSION : _SESSION + 2] = facts.session_halves[sess]
    refs[:, _BROWSER : _BROWSER + 2] = facts.browser_halves[browser]
    refs[:, _GUEST : _GUEST + 2] = facts.guest_halves[guest]
    refs[:, _ORDER : _ORDER + 2] = facts.session_order_halves[sess]
    refs[:, _EXEC : _EXEC + 2] = facts.execution_halves
    # A CONFIRM lists the session's cart: every item ADDed in it (organic baskets and
    # conversions alike; a buying session never clears its cart first), and a FAILED one the
    # item it names that was never added.
    confirm = np.flatnonzero(facts.type == EventType.CONFIRM)
    blob = bytearray()
    if len(confirm):
        p = _pieces(r)
        adds = np.flatnonzero(facts.type == EventType.ADD)
        carts: dict[int, list[bytes]] = {}
        for s, x in zip(sess[adds].tolist(), facts.item[adds].tolist(), strict=True):
            carts.setdefault(s, []).append(b'{"item_id":%s}' % p.item_id[x])
        failed = facts.failed[confirm].tolist()
        phantom = facts.item[confirm].tolist()
        for i, s, bad, x in zip(
            confirm.tolist(), sess[confirm].tolist(), failed, phantom, strict=True
        ):
            listed = carts.get(s, [])
            if bad:
                listed = [*listed, b'{"item_id":%s}' % p.item_id[x]]
            cart = b",".join(listed)
            rows["extra"][i] = len(blob)
            rows["extra_len"][i] = len(cart)
            blob += cart
    return rows, bytes(blob)


def sort_rows(rows: np.ndarray) -> np.ndarray:
    """The permutation that orders rows by (createdAt, ref). One argsort on a key that packs
    createdAt with the ref's top bits; the full three-key sort only if that key ever ties."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    created = np.ascontiguousarray(rows["created"])
    hi = np.ascontiguousarray(rows["ref_hi"])
    rel = (created - created.min()).astype(np.uint64)
    if int(rel.max()) < 1 << 40:
        key = (rel << np.uint64(24)) | (hi >> np.uint64(40))
        order = np.argsort(key, kind="stable")
        packed = key[order]
        if not (packed[1:] == packed[:-1]).any():
            return order
    return np.lexsort((np.ascontiguousarray(rows["ref_lo"]), hi, created))


class _Pieces:
    """Constant byte pieces of one world (built once, cached on the renderer)."""

    def __init__(self, r: BlockRenderer) -> None:
        w = r.world
        self.key = _j(r.client_key)
        names = [f"product/{i}" for i in r.item_ids]
        names += [f"category/{t}" for t in r.type_names]
        names += [p.value for p in _PAGES]
        self.n_items = len(r.item_ids)
        self.n_types = len(r.type_names)
        self.n_pages = len(names)
        self.item_id = [_j(x) for x in r.item_ids]
        self.item_name = [_j(x) for x in r.item_names]
        self.item_price = [[_j(x) for x in prices] for prices in r.item_price]
        self.item_type_label = [_j(product_type_label(r.type_names[t])) for t in r.item_type]
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
        self.env = envs
        self.core = cores
        self.data = [
            b',"arbitraryData":{"language":%s,"currency":%s' % (_j(lang), _j(cur))
            for lang, cur in zip(r.pos_language, r.pos_currency, strict=True)
        ]
        # Whole tails of the commonest lines, by (pos, page), (pos, type), pos, (pos, pay).
        self.view_tail = np.array(
            [d + b',"page":' + _j(n) + b"}}\n" for d in self.data for n in names], dtype=object
        )
        self.search_tail = np.array(
            [
                d
                + b',"page":"search","product_name":%s,"product_type":%s}}\n'
                % (_j(label), _j(name))
                for d in self.data
                for label, name in zip(r.type_label, r.type_names, strict=True)
            ],
            dtype=object,
        )
        self.page = [_j(n) for n in names]
        self.bare_tail = np.array([d + b"}}\n" for d in self.data], dtype=object)
        self.order_status = [_j(x) for x in ORDER_STATUSES]
        self.pay_tail = np.array(
            [d + b',"pay_type":%s}}\n' % _j(x) for d in self.data for x in PAY_TYPES],
            dtype=object,
        )
        self.first = [[_j(x) for x in pool.first] for pool in w.pools.names]
        self.last = [[_j(x) for x in pool.last] for pool in w.pools.names]
        self.first_slug = [pool.first_slug for pool in w.pools.names]
        self.last_slug = [pool.last_slug for pool in w.pools.names]
        self.first_slug_bytes = [[x.encode() for x in pool.first_slug] for pool in w.pools.names]
        self.last_slug_bytes = [[x.encode() for x in pool.last_slug] for pool in w.pools.names]
        self.pos_name = [_j(x) for x in r.pos_names]
        self.language = [_j(x) for x in r.pos_language]
        self.channel_name = [[_j(c) for c in chans] for chans in r.pos_channels]
        self.agent = [_j(x) for x in w.pools.user_agents]
        self._templates: dict[tuple[object, ...], tuple[np.ndarray, list[tuple[str, int]]]] = {}

    def envelope(self, type_name: str, group: int, status: int = 0) -> list[bytes | str]:
        """The envelope from `{` through sessionRef: constant pieces and named slots."""
        return [
            b'{"ref":"',
            "ref",
            b'","clientKey":' + self.key + b',"createdAt":"',
            "created",
            b'Z","modifiedAt":"',
            "modified",
            b'Z","type":"%s","status":"%s",%s,"browserRef":"'
            % (type_name.encode(), EVENT_STATUSES[status].encode(), self.env[group]),
            "browser",
            b'","sessionRef":"',
            "session",
            b'"',
        ]

    def tracking(
        self, group: int, flow: int, variant: int, digits: tuple[int, int]
    ) -> list[bytes | str]:
        """A whole TRACKING line: the envelope, then two equal flowExecution copies."""
        occurred, ms = f"occurred{digits[0]}", f"ms{digits[1]}"
        execution: list[bytes | str] = [
            b'{"ref":"',
            "exec",
            b'","occurredAt":',
            occurred,
            b',"flowRef":"%s","flowFriendlyId":%s,"flowVariantRef":"%s","guestRef":"'
            % (self.flow_ref[flow], self.friendly[flow], self.variant_ref[flow][variant]),
            "guest",
            b'","flowExecutionTimeMs":',
            ms,
            b',"status":"SUCCESS"}',
        ]
        return [
            *self.envelope("TRACKING", group),
            b',"flowExecutionRef":"',
            "exec",
            b'","arbitraryData":{"flowExecution":',
            *execution,
            b',"_bx_arbitraryDataV3ga":{"core":%s,"bxt":{"flowExecution":' % self.core[group],
            *execution,
            b',"category":"EXECUTED"}}}}\n',
        ]

    def template(
        self, key: tuple[object, ...], pieces: Callable[[], list[bytes | str]]
    ) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """A line shape as one row of bytes with blank slots, and where each named slot starts
        (built once per key)."""
        if key not in self._templates:
            row = bytearray()
            slots = []
            for piece in pieces():
                if isinstance(piece, bytes):
                    row += piece
                else:
                    slots.append((piece, len(row)))
                    row += b" " * _width(piece)
            self._templates[key] = (np.frombuffer(bytes(row), dtype=np.uint8), slots)
        return self._templates[key]


def _pieces(r: BlockRenderer) -> _Pieces:
    cached: _Pieces | None = getattr(r, "_line_pieces", None)
    if cached is None:
        cached = _Pieces(r)
        r._line_pieces = cached  # type: ignore[attr-defined]
    return cached


_WIDTH = {"ref": 36, "created": 23, "modified": 23, "browser": 36, "session": 36}
_WIDTH.update({"exec": 36, "guest": 36})


def _width(slot: str) -> int:
    """A slot's width; `occurredN` and `msN` are numbers of N digits."""
    if slot in _WIDTH:
        return _WIDTH[slot]
    return int(slot.removeprefix("occurred").removeprefix("ms"))


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers of exactly `width` digits as an (n, width) uint8 array of text."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers % 10 + ord("0")).astype(np.uint8)


def _ndigits(values: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.floor(np.log10(np.maximum(values, 1))).astype(np.int64) + 1)


def _fill(
    template: np.ndarray,
    slots: list[tuple[str, int]],
    fields: dict[str, np.ndarray],
    members: np.ndarray | None,
) -> list[bytes]:
    """Copies of a template row with each slot filled from its field (rows `members`)."""
    n = len(next(iter(fields.values()))) if members is None else len(members)
    # Start from copies of the constant row, then fill only the variable columns.
    matrix = np.repeat(template[None, :], n, axis=0)
    for name, col in slots:
        src = fields[name]
        matrix[:, col : col + src.shape[1]] = src if members is None else src[members]
    # Every line ends with '"' or a newline, so the S dtype drops no trailing byte.
    return list(matrix.view(f"S{len(template)}").ravel().tolist())


def _envelope_fields(sel: np.ndarray) -> dict[str, np.ndarray]:
    """The envelope's variable text, one (n, width) array per slot."""
    refs = sel["refs"]
    return {
        "ref": halves_text(np.stack([sel["ref_hi"], sel["ref_lo"]], axis=1)),
        "created": iso_text(sel["created"]),
        "modified": iso_text(sel["modified"]),
        "browser": halves_text(refs[:, _BROWSER : _BROWSER + 2]),
        "session": halves_text(refs[:, _SESSION : _SESSION + 2]),
    }


def _envelopes(p: _Pieces, sel: np.ndarray, type_name: str) -> np.ndarray:
    """Each row's envelope through sessionRef, assembled as a fixed-width byte matrix for each
    (point of sale, channel) group: numpy copies columns, no per-line formatting."""
    n = len(sel)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    fields = _envelope_fields(sel)
    # Groups by (point of sale, channel) and envelope status.
    group = (sel["pos"].astype(np.int64) * p.channels + sel["channel"]) * 2 + sel["failed"]
    for key in np.unique(group).tolist():
        members = np.flatnonzero(group == key)
        g, st = divmod(key, 2)
        template, slots = p.template(
            (type_name, g, st),
            lambda t=type_name, g=g, st=st: p.envelope(t, g, st),  # type: ignore[misc]
        )
        # One point of sale and channel (the common case): no need to gather.
        out[members] = _fill(template, slots, fields, None if len(members) == n else members)
    return out


def _tracking(p: _Pieces, sel: np.ndarray) -> np.ndarray:
    """Whole TRACKING lines, assembled per (point of sale and channel, flow, variant, digit
    counts): within such a group every line has the same width."""
    n = len(sel)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    refs = sel["refs"]
    occurred = sel["occurred"].astype(np.int64)
    ms = sel["execution_ms"].astype(np.int64)
    d_occ, d_ms = _ndigits(occurred), _ndigits(ms)
    fields = _envelope_fields(sel)
    fields["exec"] = halves_text(refs[:, _EXEC : _EXEC + 2])
    fields["guest"] = halves_text(refs[:, _GUEST : _GUEST + 2])
    for w in np.unique(d_occ).tolist():
        fields[f"occurred{w}"] = _digits(occurred, w)
    for w in np.unique(d_ms).tolist():
        fields[f"ms{w}"] = _digits(ms, w)
    group = sel["pos"].astype(np.int64) * p.channels + sel["channel"]
    # One integer per line shape (digit counts are below 32, flows and variants below 64).
    key = (
        ((group * 64 + sel["flow"].astype(np.int64)) * 64 + sel["variant"].astype(np.int64)) * 32
        + d_occ
    ) * 32 + d_ms
    for k in np.unique(key).tolist():
        rest, wm = divmod(k, 32)
        rest, wo = divmod(rest, 32)
        rest, v = divmod(rest, 64)
        g, f = divmod(rest, 64)
        members = np.flatnonzero(key == k)
        template, slots = p.template(
            ("TRACKING", g, f, v, wo, wm),
            lambda g=g, f=f, v=v, wo=wo, wm=wm: p.tracking(g, f, v, (wo, wm)),  # type: ignore[misc]
        )
        out[members] = _fill(template, slots, fields, None if len(members) == n else members)
    return out


def render_rows(r: BlockRenderer, rows: np.ndarray, extras: bytes) -> list[bytes]:
    """The JSON line of every row, in the rows' order."""
    n = len(rows)
    if n == 0:
        return []
    p = _pieces(r)
    E = EventType
    types = rows["type"]
    pos_all = rows["pos"].astype(np.int64)
    out = np.empty(n, dtype=object)

    def take(t: EventType) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.flatnonzero(types == t)
        sel = rows[idx]
        return idx, sel, _envelopes(p, sel, t.name)

    def page_index(sel: np.ndarray) -> np.ndarray:
        pc = sel["page"].astype(np.int64)
        it = sel["item"].astype(np.int64)
        return np.where(
            pc == _PRODUCT,
            it,
            np.where(pc == _CATEGORY, p.n_items + it, p.n_items + p.n_types + pc),
        )

    # The commonest lines: envelope + a tail from a table, joined by numpy's object add.
    idx, sel, env = take(E.VIEW)
    out[idx] = env + p.view_tail[pos_all[idx] * p.n_pages + page_index(sel)]
    idx, sel, env = take(E.SEARCH)
    out[idx] = env + p.search_tail[pos_all[idx] * p.n_types + sel["item"]]
    for t in (E.CLEAR_CART, E.FORCE_CLOSE):
        idx, sel, env = take(t)
        out[idx] = env + p.bare_tail[pos_all[idx]]
    idx, sel, env = take(E.PAYMENT)
    out[idx] = env + p.pay_tail[pos_all[idx] * len(PAY_TYPES) + sel["pay"]]

    idx, sel, env = take(E.CHECKOUT)
    orefs = _strings(sel["refs"][:, _ORDER], sel["refs"][:, _ORDER + 1])
    out[idx] = [
        e + p.data[ps] + b',"reference_id":"%s","status":%s}}\n' % (o, p.order_status[st])
        for e, ps, o, st in zip(
            env.tolist(), sel["pos"].tolist(), orefs, sel["order_status"].tolist(), strict=True
        )
    ]

    idx, sel, env = take(E.ADD)
    tail = (
        b',"page":%s,"product":{"type":%s,"item_id":%s,"name":%s,"orderedAt":"%sZ",'
        b'"quantity":%d,"price":%s,"productId":%s,"currency":%s,"referenceId":"%s"}}}\n'
    )
    orefs = _strings(sel["refs"][:, _ORDER], sel["refs"][:, _ORDER + 1])
    out[idx] = [
        e
        + p.data[ps]
        + tail
        % (
            p.page[pg],
            p.item_type_label[x],
            p.item_id[x],
            p.item_name[x],
            c,
            q,
            p.item_price[ps][x],
            p.item_id[x],
            p.currency[ps],
            o,
        )
        for e, ps, x, pg, c, o, q in zip(
            env.tolist(),
            sel["pos"].tolist(),
            sel["item"].tolist(),
            # A product's own page, or the cart or checkout page it was added from.
            page_index(sel).tolist(),
            iso_bytes(sel["created"]).tolist(),
            orefs,
            sel["quantity"].tolist(),
            strict=True,
        )
    ]

    idx, sel, env = take(E.CONFIRM)
    spans = zip(sel["extra"].tolist(), sel["extra_len"].tolist(), strict=True)
    out[idx] = [
        e + p.data[ps] + b',"product":[%s]}}\n' % extras[lo : lo + k]
        for e, ps, (lo, k) in zip(env.tolist(), sel["pos"].tolist(), spans, strict=True)
    ]

    idx, sel, env = take(E.IDENTITY)
    tail = (
        b',"email":%s,"firstname":%s,"lastname":%s,"identifiers":[{"provider":"email","id":%s}]}}\n'
    )
    identity = []
    for e, pos, fi, la, g, d in zip(
        env.tolist(),
        sel["pos"].tolist(),
        sel["first_name"].tolist(),
        sel["last_name"].tolist(),
        sel["guest"].tolist(),
        sel["domain"].tolist(),
        strict=True,
    ):
        email = _j(f"{p.first_slug[pos][fi]}.{p.last_slug[pos][la]}.{g}@{EMAIL_DOMAINS[d]}")
        identity.append(e + p.data[pos] + tail % (email, p.first[pos][fi], p.last[pos][la], email))
    out[idx] = identity

    idx = np.flatnonzero(types == E.TRACKING)
    out[idx] = _tracking(p, rows[idx])
    return list(out.tolist())


def guest_lines(r: BlockRenderer, facts: BlockFacts) -> list[bytes]:
    """Every guest of the block as a JSON line, in guest order: byte-for-byte `orjson.dumps` of
    the renderer's guest record (CUSTOMER with names once identified, else a bare VISITOR)."""
    p = _pieces(r)
    browser_pos = facts.guest_pos[facts.browser_guest].tolist()
    browsers = [
        b'{"browserRef":"%s","channel":%s,"userAgent":%s}'
        % (ref, p.channel_name[pos][ch], p.agent[agent])
        for ref, pos, ch, agent in zip(
            halves_strings(facts.browser_halves).tolist(),
            browser_pos,
            facts.browser_channel.tolist(),
            facts.browser_agent.tolist(),
            strict=True,
        )
    ]
    domains = [d.encode() for d in EMAIL_DOMAINS]
    since = iso_bytes(facts.guest_since_ms).tolist()
    out = []
    for g, (gref, pos, fi, la, d, b0, nb, customer, first_seen) in enumerate(
        zip(
            halves_strings(facts.guest_halves).tolist(),
            facts.guest_pos.tolist(),
            facts.guest_first_name.tolist(),
            facts.guest_last_name.tolist(),
            facts.guest_domain.tolist(),
            facts.guest_browsers.tolist(),
            facts.guest_browser_count.tolist(),
            identified_guests(facts).tolist(),
            since,
            strict=True,
        )
    ):
        if customer:
            first, last = p.first[pos][fi], p.last[pos][la]
            who = b'"CUSTOMER","firstName":%s,"lastName":%s,"name":%s %s,"email":"%s.%s.%d@%s"' % (
                first,
                last,
                # Escaping is per character, so the escaped halves join into the escaped whole.
                first[:-1],
                last[1:],
                # Slugs are ASCII letters and digits: nothing in an email needs escaping.
                p.first_slug_bytes[pos][fi],
                p.last_slug_bytes[pos][la],
                facts.first_guest + g,
                domains[d],
            )
        else:
            who = b'"VISITOR"'
        out.append(
            b'{"guestRef":"%s","type":%s,"pointOfSale":%s,"language":%s,"browsers":[%s],'
            b'"firstSeen":"%sZ"}'
            % (
                gref,
                who,
                p.pos_name[pos],
                p.language[pos],
                b",".join(browsers[b0 : b0 + nb]),
                first_seen,
            )
        )
    return out


def anonymous(line: bytes) -> bytes:
    """A CUSTOMER guest line as the bare VISITOR it was before it identified (for a dataset cut
    before its IDENTITY); other lines as they are."""
    head, sep, rest = line.partition(b',"type":"CUSTOMER",')
    if not sep:
        return line
    # Names are JSON strings: a quote inside one is escaped, so this key is the first one.
    _, sep, tail = rest.partition(b',"pointOfSale":')
    return head + b',"type":"VISITOR","pointOfSale":' + tail
