"""The manifest's flows recomputed from the JSON events, with code of its own, for `validate`.

`Analysis` is one of validate's checks (invariants.py): fed the events one at a time, it keeps
per guest and flow the first exposure and which windows an order converted, per open session
what its cart is worth and which flows it was exposed to, and running totals; at the end it
recomputes each flow's analysis (exposed sessions, every window's conversions, rates, revenue,
z-test, sample size, verdict, the bandit's periods) and each guest's assignment from the
manifest's own description of the flow, and names every figure the manifest has wrong. None of
the generator's code: plain loops, bisect and statistics.NormalDist.
"""

from __future__ import annotations

import bisect
import math
import uuid
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np

from generator.dataset.invariants import Check, GuestBook, Problems, Seen
from generator.events.stored import parse_iso_ms

__all__ = ["Analysis"]

_HOURS = (1, 3, 24, 72, 168)
_LABELS = ("1h", "3h", "1d", "3d", "7d")
_MASK = (1 << 64) - 1
_UNIVERSAL_SALT = 0x2F790ADA570AFED8  # generator.model.assignment.UNIVERSAL_SALT
_NORMAL = NormalDist()
_NEVER = np.iinfo(np.int64).max
_LONGEST = _HOURS[-1] * 3_600_000


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _unit(x: int) -> float:
    return (x >> 11) / float(2**53)


def _running(weights: list[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def _pick(cumulative: list[float], u: float) -> int:
    return min(bisect.bisect_right(cumulative, u * cumulative[-1]), len(cumulative) - 1)


class Analysis(Check):
    """Every figure of the manifest's flows but the three the answer key check holds (exposures,
    exposed and converted guests), and each guest's assignment."""

    def __init__(self, manifest: Mapping[str, Any], guests: GuestBook, report: Problems) -> None:
        self._manifest = manifest
        self._guests = guests
        self._report = report
        flows: Mapping[str, Any] = manifest.get("flows", {})
        self._flows = flows
        self._flow = {name: i for i, name in enumerate(flows)}
        self._variant = [
            {str(v["flowVariantRef"]): i for i, v in enumerate(f.get("variants", []))}
            for f in flows.values()
        ]
        # Goals spelt as ADD `product.type` spells them: a literal join.
        self._goal = [str(f.get("goalProductType", "")) for f in flows.values()]
        self._currencies = sorted(
            {str(p.get("currency")) for p in manifest.get("pointsOfSale", {}).values()}
        )
        self._currency = {c: i for i, c in enumerate(self._currencies)}
        n, g, w, c = len(flows), len(guests), len(_HOURS), max(len(self._currencies), 1)
        most = max((len(v) for v in self._variant), default=1)
        self._first_ms = np.full((n, g), _NEVER, dtype=np.int64)
        self._first_occurred = np.zeros((n, g), dtype=np.int64)
        self._first_variant = np.full((n, g), -1, dtype=np.int16)
        self._converted = np.zeros((n, g, w), dtype=bool)
        self._sessions = np.zeros((n, most), dtype=np.int64)
        self._orders = np.zeros((n, most, w, c), dtype=np.int64)
        self._milli = np.zeros((n, most, w, c), dtype=np.int64)
        # Each guest's orders at the ms of its latest: an order at the very ms of a first
        # exposure that sorts before it (by ref) still converts it.
        self._last_order_ms = np.full(g, -1, dtype=np.int64)
        self._last_orders: dict[int, list[tuple[frozenset[str], int, int]]] = {}

    # --- the events ---------------------------------------------------------------------------

    def event(self, seen: Seen) -> None:
        g, ms, notes = seen.guest, seen.created_ms, seen.session.notes
        if seen.failed:
            return  # CDP did not process it: no cart, no order
        if seen.type == "TRACKING":
            fx = seen.data["flowExecution"]
            f = self._flow.get(fx["flowFriendlyId"])
            v = self._variant[f].get(str(fx.get("flowVariantRef"))) if f is not None else None
            if f is None or v is None:
                return
            exposed = notes.setdefault("analysis.exposed", set())
            if f not in exposed:
                exposed.add(f)
                self._sessions[f, v] += 1
            if self._first_variant[f, g] == -1:
                self._first_variant[f, g] = v
                self._first_ms[f, g] = ms
                self._first_occurred[f, g] = int(fx["occurredAt"])
                if self._last_order_ms[g] == ms:
                    for types, milli, cur in self._last_orders.get(g, ()):
                        if self._goal[f] in types:
                            self._count(f, g, v, 0, milli, cur)
        elif seen.type == "ADD":
            notes["analysis.value"] = notes.get("analysis.value", 0) + _milli(
                seen.data.get("product", {})
            )
        elif seen.type == "CHECKOUT":
            if not seen.sale:
                return  # a later status of an order placed before: no new order
            value = notes.pop("analysis.value", 0)
            types = frozenset(c.split("\x1f")[1] for c in seen.session.cart)
            cur = self._currency.get(str(seen.data.get("currency")), 0)
            if self._last_order_ms[g] != ms:
                self._last_order_ms[g] = ms
                self._last_orders[g] = []
            self._last_orders[g].append((types, value, cur))
            for f, goal in enumerate(self._goal):
                v = int(self._first_variant[f, g])
                if v >= 0 and goal in types:
                    delta = ms - int(self._first_ms[f, g])
                    if 0 <= delta <= _LONGEST:
                        self._count(f, g, v, delta, value, cur)
        elif seen.type == "CLEAR_CART":
            notes.pop("analysis.value", None)

    def _count(self, f: int, g: int, v: int, delta: int, value: int, cur: int) -> None:
        for w, hours in enumerate(_HOURS):
            if delta <= hours * 3_600_000:
                self._converted[f, g, w] = True
                self._orders[f, v, w, cur] += 1
                self._milli[f, v, w, cur] += value

    # --- the manifest -------------------------------------------------------------------------

    def finish(self, report: Problems) -> None:
        for f, (name, flow) in enumerate(self._flows.items()):
            self._check_flow(f, name, flow, report)

    def _check_flow(self, f: int, name: str, flow: Mapping[str, Any], report: Problems) -> None:
        variants = flow.get("variants", [])
        n = len(variants)
        first = self._first_variant[f]
        exposed = [int((first == v).sum()) for v in range(n)]
        converted = [
            [int(self._converted[f, first == v, w].sum()) for w in range(len(_HOURS))]
            for v in range(n)
        ]
        sessions = [int(self._sessions[f, v]) for v in range(n)]
        orders = [
            [
                {c: int(self._orders[f, v, w, i]) for i, c in enumerate(self._currencies)}
                for w in range(len(_HOURS))
            ]
            for v in range(n)
        ]
        milli = [
            [
                {c: int(self._milli[f, v, w, i]) for i, c in enumerate(self._currencies)}
                for w in range(len(_HOURS))
            ]
            for v in range(n)
        ]
        own = _HOURS.index(int(flow.get("attributionHours", 24)))

        def same(where: str, manifest_value: Any, value: Any) -> None:
            if isinstance(manifest_value, dict) and isinstance(value, dict):
                for key in sorted(manifest_value.keys() | value.keys()):
                    same(f"{where}.{key}", manifest_value.get(key), value.get(key))
                return
            if not _equal(manifest_value, value):
                report.add(
                    "answer key", f"{name}: {where}: manifest {manifest_value!r}, events {value!r}"
                )

        control = next(
            (i for i, v in enumerate(variants) if str(v.get("name", "")).lower() == "control"), 0
        )
        needed = _sample_size(0.02, 0.2, 0.95, 0.8)
        if "sampleSize" in flow:
            same("sampleSize.guestsPerVariant", flow["sampleSize"].get("guestsPerVariant"), needed)
        winners: list[tuple[float, str]] = []
        for v, variant in enumerate(variants):
            vname = variant.get("name")
            if "windows" not in variant:
                continue  # a manifest of before the analysis: the answer key alone
            same(f"{vname}: exposedSessions", variant.get("exposedSessions"), sessions[v])
            for w, label in enumerate(_LABELS):
                got = variant["windows"].get(label, {})
                want = _window(
                    exposed,
                    sessions,
                    converted,
                    orders,
                    milli,
                    self._currencies,
                    v,
                    w,
                    control,
                    needed,
                )
                for key, value in want.items():
                    same(f"{vname}: windows.{label}.{key}", got.get(key), value)
                if w == own and want["vsControl"] and want["vsControl"]["verdict"] == "Winner":
                    winners.append((want["vsControl"]["improvement"], str(vname)))
        if "verdict" in flow:
            want_verdict = None
            if n > 1:
                best = max(winners, default=None)
                want_verdict = {
                    "window": _LABELS[own],
                    "result": "Winner" if best else "Inconclusive",
                    "variant": best[1] if best else None,
                }
            got_verdict = flow["verdict"]
            if got_verdict is not None and want_verdict is not None:
                got_verdict = {k: got_verdict.get(k) for k in want_verdict}
            same("verdict", got_verdict, want_verdict)
        self._check_assignment(f, name, flow, report)
        if flow.get("assignment") == "optimized":
            self._check_bandit(f, name, flow, own, report)

    def _check_assignment(
        self, f: int, name: str, flow: Mapping[str, Any], report: Problems
    ) -> None:
        """Each guest's variant as the manifest's description of the flow gives it."""
        mode = flow.get("assignment", "unique")
        variants = flow.get("variants", [])
        salt = int.from_bytes(uuid.UUID(flow["flowRef"]).bytes[8:], "big")
        start_ms = _parse_ms(str(self._manifest.get("start")))
        wrong = 0
        example = ""
        for g in np.flatnonzero(self._first_variant[f] >= 0).tolist():
            v, occurred = int(self._first_variant[f, g]), int(self._first_occurred[f, g])
            guest = self._guests.ref(g)
            key = int.from_bytes(uuid.UUID(guest).bytes[:8], "big")
            want: int | None
            if mode == "universal":
                bucket = 1 + min(int(_unit(_splitmix(key ^ _UNIVERSAL_SALT)) * 120), 119)
                want = next(
                    (
                        i
                        for i, x in enumerate(variants)
                        if x["buckets"][0] <= bucket <= x["buckets"][1]
                    ),
                    None,
                )
            else:
                h1 = _splitmix(key ^ salt)
                u = _unit(_splitmix(h1))
                if mode == "optimized":
                    bandit = flow["bandit"]
                    periods = bandit["periods"]
                    p = (occurred - start_ms) // (int(bandit["periodHours"]) * 3_600_000)
                    weights = periods[min(max(p, 0), len(periods) - 1)]["weights"]
                    want = _pick(_running(weights), u)
                elif _unit(h1) < float(flow.get("trafficAllocation", 1.0)):
                    want = _pick(_running([float(x["weight"]) for x in variants]), u)
                else:
                    want = None
            if want != v:
                wrong += 1
                example = example or (
                    f"guest {guest} sees {variants[v].get('name')}, its {mode} assignment gives "
                    f"{'no variant' if want is None else variants[want].get('name')}"
                )
        if wrong:
            report.add(
                "assignment", f"{name}: {wrong} guest(s) see another variant; e.g. {example}"
            )

    def _check_bandit(
        self, f: int, name: str, flow: Mapping[str, Any], own: int, report: Problems
    ) -> None:
        bandit = flow["bandit"]
        periods = bandit["periods"]
        n = len(flow.get("variants", []))
        floor = float(bandit.get("minimumWeight", 0.01))
        start_ms = _parse_ms(str(self._manifest.get("start")))
        period_ms = int(bandit["periodHours"]) * 3_600_000
        if periods and any(abs(w - 1 / n) > 1e-12 for w in periods[0]["weights"]):
            report.add("bandit", f"{name}: period 0's weights are not even")
        for p in periods:
            weights = p["weights"]
            if min(weights) < floor - 1e-12 or abs(sum(weights) - 1) > 1e-9:
                report.add(
                    "bandit", f"{name}: period {p['period']}: weights {weights} break the rules"
                )
        exposed = [[0] * n for _ in periods]
        converted = [[0] * n for _ in periods]
        for g in np.flatnonzero(self._first_variant[f] >= 0).tolist():
            v = int(self._first_variant[f, g])
            p = min(max((int(self._first_ms[f, g]) - start_ms) // period_ms, 0), len(periods) - 1)
            exposed[p][v] += 1
            if self._converted[f, g, own]:
                converted[p][v] += 1
        for p, (e, c) in enumerate(zip(exposed, converted, strict=True)):
            if periods[p]["exposedGuests"] != e or periods[p]["convertedGuests"] != c:
                report.add(
                    "bandit",
                    f"{name}: period {p}: manifest exposed {periods[p]['exposedGuests']} "
                    f"converted {periods[p]['convertedGuests']}, events give {e} and {c}",
                )


def _milli(product: Any) -> int:
    """An ADDed item's value in thousandths of its currency (price times quantity, 1 when not
    said): whole numbers for every currency's minor unit."""
    if not isinstance(product, dict):
        return 0
    price = product.get("price", 0)
    quantity = product.get("quantity", 1)
    price = price if isinstance(price, int | float) and not isinstance(price, bool) else 0
    quantity = quantity if isinstance(quantity, int) and quantity > 0 else 1
    return round(price * 1000) * quantity


def _window(
    exposed: list[int],
    sessions: list[int],
    converted: list[list[int]],
    orders: list[list[dict[str, int]]],
    milli: list[list[dict[str, int]]],
    currencies: list[str],
    v: int,
    w: int,
    control: int,
    needed: int,
) -> dict[str, Any]:
    def rate(a: float, b: float) -> float | None:
        return None if b == 0 else a / b

    def lift(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b - 1

    count = sum(orders[v][w].values())
    revenue = {c: milli[v][w][c] / 1000 for c in currencies}
    per_guest = {c: rate(revenue[c], exposed[v]) for c in currencies}
    out: dict[str, Any] = {
        "convertedGuests": converted[v][w],
        "conversions": count,
        "guestConversionRate": rate(converted[v][w], exposed[v]),
        "sessionConversionRate": rate(count, sessions[v]),
        "revenue": revenue,
        "averageOrderValue": {c: rate(revenue[c], orders[v][w][c]) for c in currencies},
        "revenuePerGuest": per_guest,
        "vsControl": None,
    }
    if v == control:
        return out
    x1, n1, x2, n2 = converted[v][w], exposed[v], converted[control][w], exposed[control]
    z = p_value = confidence = None
    if n1 and n2:
        pooled = (x1 + x2) / (n1 + n2)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        if se == 0:
            z, p_value = 0.0, 1.0
        else:
            z = (x1 / n1 - x2 / n2) / se
            p_value = 2 * (1 - _NORMAL.cdf(abs(z)))
        confidence = 1 - p_value
    improvement = lift(rate(x1, n1), rate(x2, n2))
    winner = (
        confidence is not None
        and improvement is not None
        and n1 >= needed
        and n2 >= needed
        and improvement >= 0.2
        and confidence >= 0.95
    )
    out["vsControl"] = {
        "improvement": improvement,
        "z": z,
        "pValue": p_value,
        "confidence": confidence,
        "verdict": "Winner" if winner else "Inconclusive",
        "revenuePerGuestImprovement": {
            c: lift(per_guest[c], rate(milli[control][w][c] / 1000, n2)) for c in currencies
        },
    }
    return out


def _sample_size(base: float, lift: float, confidence: float, power: float) -> int:
    """The fewest guests per variant at which the z-test reaches `power` against the lifted
    rate: found by bisection on the power curve."""
    p1, p2 = base, base * (1 + lift)
    z_alpha = _NORMAL.inv_cdf(1 - (1 - confidence) / 2)
    mean = (p1 + p2) / 2
    spread0 = math.sqrt(2 * mean * (1 - mean))
    spread1 = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))

    def power_at(n: int) -> float:
        return _NORMAL.cdf(((p2 - p1) * math.sqrt(n) - z_alpha * spread0) / spread1)

    lo, hi = 1, 1 << 40
    while lo < hi:
        mid = (lo + hi) // 2
        if power_at(mid) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _equal(a: Any, b: Any) -> bool:
    """Equal, floats to within rounding (the two sides compute them in other ways)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _parse_ms(text: str) -> int:
    try:
        return parse_iso_ms(text)
    except ValueError:
        return 0
