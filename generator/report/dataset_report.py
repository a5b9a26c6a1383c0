"""A dataset's figures, computed by reading its events once: traffic, behaviour, experiments.

Memory stays flat in the number of events: what is kept is per guest and browser (seen, device,
exposed pairs), per open session (closed and folded into counters once the point of sale's
timeout has passed or a FORCE_CLOSE came), and counters whose size is bounded by the calendar
or by rounded values, never by the events.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from generator.dataset.reader import DatasetError, open_dataset
from generator.events.stored import parse_iso_ms
from generator.profile import BUNDLED
from generator.report.published import PUBLISHED
from generator.report.stats import compare, wilson
from generator.vocabulary import SALE_STATUSES

__all__ = [
    "FUNNEL",
    "compute_dataset_figures",
    "device_of",
    "window_label",
]

FUNNEL = ("VIEW", "SEARCH", "ADD", "CHECKOUT", "PAYMENT")
_FUNNEL_BIT = {t: 1 << i for i, t in enumerate(FUNNEL)}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# The answer key's order: a sale's CHECKOUT (PURCHASED or PAYMENT_PENDING), stored PROCESSED.
COMPLETED = SALE_STATUSES
RETURNED = frozenset({"CANCELLED", "REFUNDED"})
_SWEEP_EVERY = 8192  # events between sweeps of sessions past their timeout

_TABLET = re.compile(r"iPad|Tablet|Kindle|Silk|PlayBook|Nexus (7|9|10)|SM-T\d", re.I)
_PHONE = re.compile(
    r"Mobile|iPhone|iPod|Android|Windows Phone|Opera Mini|BlackBerry|IEMobile", re.I
)
_APP = re.compile(r"\b(okhttp|CFNetwork|Dalvik|cdpsim-app)\b|\bApp/\d", re.I)


def device_of(user_agent: str, channel: str = "") -> str:
    """phone, tablet, desktop, or app (an app's own HTTP client), from a user agent."""
    if _APP.search(user_agent):
        return "app"
    if _TABLET.search(user_agent) or ("Android" in user_agent and "Mobile" not in user_agent):
        return "tablet"
    if _PHONE.search(user_agent):
        return "phone"
    return "desktop"


def window_label(hours: int) -> str:
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def _parse_window(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    m = re.fullmatch(r"\s*(\d+)\s*([hd])\s*", str(value))
    if m is None:
        return None
    return int(m.group(1)) * (24 if m.group(2) == "d" else 1)


def _flow_windows(flow: dict[str, Any]) -> list[int]:
    """The flow's attribution windows in hours: its own first, then any others the manifest
    lists (`attributionWindows`/`windows`, as hours or labels like 3h or 7d, list or mapping)."""
    hours = [int(flow.get("attributionHours", 24))]
    for key in ("attributionWindows", "windows"):
        extra = flow.get(key)
        if isinstance(extra, dict):
            extra = list(extra)
        if isinstance(extra, list):
            for item in extra:
                h = _parse_window(item.get("hours") if isinstance(item, dict) else item)
                if h is not None and h > 0 and h not in hours:
                    hours.append(h)
    return hours


def _manifest_converted(variant: dict[str, Any], hours: int, primary: bool) -> int | None:
    """The manifest's converted guests for a window, where it says."""
    if primary:
        value = variant.get("convertedGuests")
        return int(value) if isinstance(value, int) else None
    for key in ("windows", "attributionWindows", "convertedGuestsByWindow"):
        table = variant.get(key)
        if isinstance(table, list):
            table = {str(x.get("hours", x.get("window"))): x for x in table if isinstance(x, dict)}
        if not isinstance(table, dict):
            continue
        for name in (window_label(hours), f"{hours}h", str(hours)):
            got = table.get(name)
            if isinstance(got, dict):
                got = got.get("convertedGuests")
            if isinstance(got, int):
                return got
    return None


# Session duration bins: upper bounds in seconds, and their labels.
DURATION_BINS = (
    (0, "0 s"),
    (10, "<10 s"),
    (30, "10-30 s"),
    (60, "30 s-1 min"),
    (120, "1-2 min"),
    (300, "2-5 min"),
    (600, "5-10 min"),
    (1200, "10-20 min"),
    (1800, "20-30 min"),
    (3600, "30-60 min"),
    (math.inf, "over 1 h"),
)


def _duration_bin(seconds: float) -> int:
    for i, (upper, _) in enumerate(DURATION_BINS):
        if seconds <= upper:
            return i
    return len(DURATION_BINS) - 1


def _round_sig(value: float, digits: int = 2) -> float:
    """Rounded to a few significant figures: the bins of a distribution of any scale."""
    if value <= 0:
        return 0.0
    return round(value, digits - 1 - math.floor(math.log10(value)))


class _Session:
    __slots__ = (
        "cart",
        "cart_goals",
        "cart_open",
        "cart_qty",
        "cart_value",
        "channel",
        "currency",
        "device",
        "first_ms",
        "guest",
        "identified",
        "last_ms",
        "pages",
        "pos",
        "purchased",
        "seen",
        "timeout_ms",
    )

    def __init__(
        self, guest: int, pos: str, channel: str, device: str, ms: int, timeout_ms: int
    ) -> None:
        self.guest = guest
        self.pos = pos
        self.channel = channel
        self.device = device
        self.first_ms = ms
        self.last_ms = ms
        self.timeout_ms = timeout_ms
        self.pages = 0
        self.seen = 0  # funnel bits
        self.cart_open = False
        self.cart_qty = 0
        self.cart_value = 0.0
        self.cart_goals: set[str] = set()
        self.cart: int = 0
        self.currency = ""
        self.purchased = False
        self.identified = False


class _Figures:
    """Counters the stream folds into."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.pos_table: dict[str, Any] = manifest.get("pointsOfSale", {})
        self.zones = {
            name: ZoneInfo(str(p.get("timezone", "UTC"))) for name, p in self.pos_table.items()
        }
        self.heat: dict[str, list[list[int]]] = {
            name: [[0] * 24 for _ in range(7)] for name in self.pos_table
        }
        self.events_by_type: Counter[str] = Counter()
        self.events_by_status: Counter[str] = Counter()
        self.events_per_day: Counter[str] = Counter()
        self.sessions = 0
        self.sessions_by_day_new: Counter[str] = Counter()
        self.sessions_by_day_returning: Counter[str] = Counter()
        self.new_guests_by_day: Counter[str] = Counter()
        self.pages: Counter[int] = Counter()
        self.duration_s: Counter[int] = Counter()
        self.duration_total_s = 0.0
        self.funnel: Counter[str] = Counter()
        self.carts = 0
        self.carts_purchased = 0
        self.carts_cleared = 0
        self.sessions_purchased = 0
        self.sessions_by_channel: Counter[str] = Counter()
        self.sessions_by_device: Counter[str] = Counter()
        self.sessions_by_pos: Counter[str] = Counter()
        self.orders = 0
        self.order_status: Counter[str] = Counter()
        self.basket_items: Counter[int] = Counter()
        self.items_total = 0
        self.order_value: dict[str, Counter[float]] = {}
        self.order_value_total: dict[str, float] = {}
        self.orders_by_currency: Counter[str] = Counter()
        self.guest_types: Counter[str] = Counter()

    def close(self, s: _Session) -> None:
        self.pages[s.pages] += 1
        d = (s.last_ms - s.first_ms) / 1000
        self.duration_total_s += d
        self.duration_s[_duration_bin(d)] += 1
        for step, bit in _FUNNEL_BIT.items():
            if s.seen & bit:
                self.funnel[step] += 1
        if s.purchased:
            self.sessions_purchased += 1


def compute_dataset_figures(
    directory: str | Path, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Every figure of the dataset report as plain JSON-ready data."""
    ds = open_dataset(directory)
    manifest = ds.manifest()
    manifest["_directory"] = str(ds.directory)
    fig = _Figures(manifest)
    flows: dict[str, Any] = manifest.get("flows", {})
    flow_names = list(flows)
    flow_index = {name: i for i, name in enumerate(flow_names)}
    variant_index = {
        name: {v["flowVariantRef"]: i for i, v in enumerate(f.get("variants", []))}
        for name, f in flows.items()
    }
    goal_flows: dict[str, list[int]] = {}
    for name, f in flows.items():
        goal_flows.setdefault(str(f.get("goalProductType", "")), []).append(flow_index[name])
    exposures = [[0] * len(f.get("variants", [])) for f in flows.values()]

    # Per guest and browser.
    browser: dict[str, tuple[int, str]] = {}
    guest_count = 0
    guest_types: Counter[str] = Counter()
    for _, g in ds.guests():
        agents = g.get("browsers", [])
        for b in agents if isinstance(agents, list) else []:
            if isinstance(b, dict) and isinstance(b.get("browserRef"), str):
                ua = str(b.get("userAgent", ""))
                browser[b["browserRef"]] = (guest_count, device_of(ua, str(b.get("channel", ""))))
        guest_types[str(g.get("type"))] += 1
        guest_count += 1
    fig.guest_types = guest_types
    guest_seen = bytearray(guest_count)
    identified = bytearray(guest_count)
    # (guest, flow) -> [variant, first exposure ms, ms to the first goal order after it or -1]
    pairs: dict[tuple[int, int], list[int]] = {}

    sessions: dict[str, _Session] = {}
    timeouts = {
        name: int(p.get("sessionTimeoutMinutes", 30)) * 60_000 for name, p in fig.pos_table.items()
    }
    zones = fig.zones
    first_ms: int | None = None
    last_ms = 0
    size = ds.events_path.stat().st_size
    loads = orjson.loads
    n = 0
    for line, raw in ds.raw_events():
        try:
            e = loads(raw)
            etype = e["type"]
            created = e["createdAt"]
            ms = parse_iso_ms(created)
            sref = e["sessionRef"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"{ds.events_path}: line {line}: not a stored event ({exc}); "
                "`cdpsim validate` says more"
            ) from None
        n += 1
        if first_ms is None:
            first_ms = ms
        last_ms = ms
        fig.events_by_type[etype] += 1
        fig.events_by_status[str(e.get("status"))] += 1
        fig.events_per_day[created[:10]] += 1
        s = sessions.get(sref)
        if s is None:
            pos = e.get("pointOfSale", "")
            owner = browser.get(e.get("browserRef", ""))
            guest, device = owner if owner is not None else (-1, "unknown")
            channel = str(e.get("channel", ""))
            s = sessions[sref] = _Session(guest, pos, channel, device, ms, timeouts.get(pos, 0))
            _open(fig, s, created[:10], ms, zones.get(pos), guest_seen)
        else:
            s.last_ms = ms
        data = e.get("arbitraryData") or {}
        if etype == "VIEW":
            s.pages += 1
        elif etype == "TRACKING":
            fx = data.get("flowExecution") or {}
            f = flow_index.get(str(fx.get("flowFriendlyId")))
            if f is not None:
                v = variant_index[flow_names[f]].get(fx.get("flowVariantRef"))
                if v is not None:
                    exposures[f][v] += 1
                    if s.guest >= 0 and (s.guest, f) not in pairs:
                        pairs[(s.guest, f)] = [v, ms, -1]
        elif etype == "ADD":
            product = data.get("product") or {}
            qty = product.get("quantity", 1)
            qty = qty if isinstance(qty, int) and qty > 0 else 1
            price = product.get("price", 0)
            if not s.cart_open:
                s.cart_open = True
                fig.carts += 1
                s.cart_qty, s.cart_value, s.cart_goals = 0, 0.0, set()
            s.cart_qty += qty
            s.cart_value += qty * (price if isinstance(price, int | float) else 0.0)
            s.cart_goals.add(str(product.get("type", "")))
            s.currency = str(product.get("currency") or data.get("currency") or "")
        elif etype == "CHECKOUT":
            status = str(data.get("status", ""))
            fig.order_status[status] += 1
            if status in COMPLETED and e.get("status") == "PROCESSED":
                fig.orders += 1
                s.purchased = True
                fig.items_total += s.cart_qty
                fig.basket_items[s.cart_qty] += 1
                cur = s.currency or str(data.get("currency", ""))
                fig.orders_by_currency[cur] += 1
                fig.order_value_total[cur] = fig.order_value_total.get(cur, 0.0) + s.cart_value
                fig.order_value.setdefault(cur, Counter())[_round_sig(s.cart_value)] += 1
                if s.cart_open:
                    fig.carts_purchased += 1
                if s.guest >= 0:
                    for goal in s.cart_goals:
                        for f in goal_flows.get(goal, ()):
                            pair = pairs.get((s.guest, f))
                            if pair is not None and pair[2] < 0 and ms >= pair[1]:
                                pair[2] = ms - pair[1]
            s.cart_open, s.cart_qty, s.cart_value, s.cart_goals = False, 0, 0.0, set()
        elif etype == "CLEAR_CART":
            if s.cart_open:
                fig.carts_cleared += 1
            s.cart_open, s.cart_qty, s.cart_value, s.cart_goals = False, 0, 0.0, set()
        elif etype == "IDENTITY":
            if s.guest >= 0:
                identified[s.guest] = 1
        elif etype == "FORCE_CLOSE":
            fig.close(sessions.pop(sref))
        if etype in _FUNNEL_BIT:
            s.seen |= _FUNNEL_BIT[etype]
        if n % _SWEEP_EVERY == 0:
            for ref in [r for r, x in sessions.items() if ms - x.last_ms > x.timeout_ms]:
                fig.close(sessions.pop(ref))
            if progress is not None:
                progress(line, size)
    for s in sessions.values():
        fig.close(s)
    sessions.clear()
    return _assemble(
        manifest,
        fig,
        flows,
        exposures,
        pairs,
        guest_seen,
        identified,
        guest_count,
        first_ms,
        last_ms,
        n,
    )


def _open(
    fig: _Figures,
    s: _Session,
    day: str,
    ms: int,
    zone: ZoneInfo | None,
    guest_seen: bytearray,
) -> None:
    fig.sessions += 1
    fig.sessions_by_channel[s.channel] += 1
    fig.sessions_by_device[s.device] += 1
    fig.sessions_by_pos[s.pos] += 1
    if zone is not None:
        local = dt.datetime.fromtimestamp(ms / 1000, zone)
        fig.heat[s.pos][local.weekday()][local.hour] += 1
    if s.guest >= 0 and not guest_seen[s.guest]:
        guest_seen[s.guest] = 1
        fig.new_guests_by_day[day] += 1
        fig.sessions_by_day_new[day] += 1
    else:
        fig.sessions_by_day_returning[day] += 1


def _experiments(
    flows: dict[str, Any], exposures: list[list[int]], pairs: dict[tuple[int, int], list[int]]
) -> list[dict[str, Any]]:
    # Per flow and variant: exposed guests, and for each window the guests converted within it.
    out = []
    per_flow: list[list[list[int]]] = [[[] for _ in f.get("variants", [])] for f in flows.values()]
    exposed = [[0] * len(f.get("variants", [])) for f in flows.values()]
    for (_, f), (v, _, delta) in pairs.items():
        exposed[f][v] += 1
        if delta >= 0:
            per_flow[f][v].append(delta)
    for f, (name, flow) in enumerate(flows.items()):
        variants = flow.get("variants", [])
        control = next(
            (i for i, v in enumerate(variants) if str(v.get("name")).lower() == "control"), 0
        )
        windows = []
        for w, hours in enumerate(_flow_windows(flow)):
            limit = hours * 3_600_000
            converted = [sum(1 for d in per_flow[f][v] if d <= limit) for v in range(len(variants))]
            rows = []
            for v, variant in enumerate(variants):
                n_v, x_v = exposed[f][v], converted[v]
                lo, hi = wilson(x_v, n_v)
                cmp = (
                    compare(x_v, n_v, converted[control], exposed[f][control])
                    if v != control and len(variants) > 1
                    else None
                )
                configured = variant.get("conversionRate")
                rows.append(
                    {
                        "name": variant.get("name"),
                        "weight": variant.get("weight"),
                        "exposures": exposures[f][v],
                        "exposedGuests": n_v,
                        "convertedGuests": x_v,
                        "manifestConvertedGuests": _manifest_converted(variant, hours, w == 0),
                        "rate": x_v / n_v if n_v else None,
                        "ci95": [lo, hi],
                        "configuredRate": configured,
                        # Configured rates hold at the flow's own window (the model draws them).
                        "configuredInCi": (
                            lo <= configured <= hi
                            if w == 0 and isinstance(configured, int | float) and n_v
                            else None
                        ),
                        "vsControl": None
                        if cmp is None
                        else {
                            "difference": cmp.difference,
                            "differenceCi95": list(cmp.difference_ci),
                            "improvement": cmp.improvement,
                            "z": cmp.z,
                            "pValue": cmp.p_value,
                            "confidence": cmp.confidence,
                        },
                    }
                )
            windows.append(
                {"hours": hours, "label": window_label(hours), "primary": w == 0, "variants": rows}
            )
        out.append(
            {
                "flow": name,
                "kind": flow.get("kind"),
                "goalProductType": flow.get("goalProductType"),
                "trafficAllocation": flow.get("trafficAllocation"),
                "attributionHours": flow.get("attributionHours"),
                "control": variants[control].get("name") if variants else None,
                "windows": windows,
            }
        )
    return out


def _bundled_profile(manifest: dict[str, Any]) -> str | None:
    """The bundled profile's name when the dataset was made from one, unchanged."""
    prof = manifest.get("profile") or {}
    path = BUNDLED / f"{prof.get('name')}.yaml"
    if not path.is_file():
        return None
    return (
        str(prof.get("name"))
        if hashlib.sha256(path.read_bytes()).hexdigest() == prof.get("sha256")
        else None
    )


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _assemble(
    manifest: dict[str, Any],
    fig: _Figures,
    flows: dict[str, Any],
    exposures: list[list[int]],
    pairs: dict[tuple[int, int], list[int]],
    guest_seen: bytearray,
    identified: bytearray,
    guest_count: int,
    first_ms: int | None,
    last_ms: int,
    events: int,
) -> dict[str, Any]:
    seen = sum(guest_seen)
    new_sessions = sum(fig.sessions_by_day_new.values())
    start = manifest.get("start")
    start_ms = parse_iso_ms(start) if isinstance(start, str) else (first_ms or 0)
    end = manifest.get("end")
    if manifest.get("requestedEvents") is None and isinstance(end, str):
        window_days = (parse_iso_ms(end) - start_ms) / 86_400_000
    else:
        window_days = (last_ms - start_ms) / 86_400_000
    weekday_sessions = [sum(sum(h[d]) for h in fig.heat.values()) for d in range(7)]
    returned = sum(c for s, c in fig.order_status.items() if s in RETURNED)
    handheld = fig.sessions_by_device.get("phone", 0) + fig.sessions_by_device.get("tablet", 0)
    aov = {
        cur: fig.order_value_total[cur] / cnt for cur, cnt in fig.orders_by_currency.items() if cnt
    }
    carts_abandoned = fig.carts - fig.carts_purchased
    realism_values: dict[str, Any] = {
        "bounce_rate": _ratio(fig.pages.get(0, 0) + fig.pages.get(1, 0), fig.sessions),
        "pages_per_session": _ratio(sum(k * c for k, c in fig.pages.items()), fig.sessions),
        "sessions_per_guest_month": (
            fig.sessions / seen * 30 / window_days if seen and window_days > 0 else None
        ),
        "returning_share": _ratio(fig.sessions - new_sessions, fig.sessions),
        "busiest_weekday": WEEKDAYS[max(range(7), key=lambda d: weekday_sessions[d])]
        if fig.sessions
        else None,
        "items_per_order": _ratio(fig.items_total, fig.orders),
        "average_order_value": aov,
        "identified_share": _ratio(sum(identified), seen),
        "mobile_share": _ratio(handheld, fig.sessions),
        "returned_share": _ratio(returned, fig.orders),
        "cart_abandonment": _ratio(carts_abandoned, fig.carts),
        "session_conversion": _ratio(fig.sessions_purchased, fig.sessions),
    }
    bundled = _bundled_profile(manifest)
    realism = None
    if bundled is not None:
        realism = {
            "profile": bundled,
            "rows": [
                {
                    "key": p.key,
                    "metric": p.metric,
                    "value": realism_values.get(p.key),
                    "published": p.published,
                    "source": p.source,
                    "low": p.low,
                    "high": p.high,
                    "unit": p.unit,
                    "holds": p.holds(v)
                    if isinstance(v := realism_values.get(p.key), float)
                    else None,
                }
                for p in PUBLISHED
            ],
        }
    days = sorted(
        set(fig.events_per_day) | set(fig.sessions_by_day_new) | set(fig.sessions_by_day_returning)
    )
    return {
        "dataset": {
            "directory": str(manifest.get("_directory", "")),
            "profile": manifest.get("profile", {}).get("name"),
            "seed": manifest.get("seed"),
            "start": manifest.get("start"),
            "end": manifest.get("end"),
            "firstEventMs": first_ms,
            "lastEventMs": last_ms,
            "windowDays": window_days,
            "requestedEvents": manifest.get("requestedEvents"),
            "pointsOfSale": manifest.get("pointsOfSale", {}),
        },
        "counts": {
            "events": events,
            "byType": dict(sorted(fig.events_by_type.items())),
            "byStatus": dict(sorted(fig.events_by_status.items())),
            "guestsListed": guest_count,
            "guestsSeen": seen,
            "customers": sum(identified),
            "guestTypes": dict(sorted(fig.guest_types.items())),
            "sessions": fig.sessions,
        },
        "traffic": {
            "days": days,
            "eventsPerDay": [fig.events_per_day.get(d, 0) for d in days],
            "newGuestsPerDay": [fig.new_guests_by_day.get(d, 0) for d in days],
            "sessionsNewPerDay": [fig.sessions_by_day_new.get(d, 0) for d in days],
            "sessionsReturningPerDay": [fig.sessions_by_day_returning.get(d, 0) for d in days],
            "sessionsByLocalHourWeekday": fig.heat,
            "weekdays": list(WEEKDAYS),
            "sessionsByPointOfSale": dict(sorted(fig.sessions_by_pos.items())),
        },
        "behaviour": {
            "pagesPerSession": _sorted_hist(fig.pages),
            "sessionDuration": {
                "bin": [label for _, label in DURATION_BINS],
                "count": [fig.duration_s.get(i, 0) for i in range(len(DURATION_BINS))],
            },
            "meanSessionDurationSeconds": _ratio(fig.duration_total_s, fig.sessions),
            "funnel": {"steps": list(FUNNEL), "sessions": [fig.funnel.get(s, 0) for s in FUNNEL]},
            "carts": {
                "created": fig.carts,
                "purchased": fig.carts_purchased,
                "cleared": fig.carts_cleared,
                "abandoned": carts_abandoned,
                "abandonment": _ratio(carts_abandoned, fig.carts),
            },
            "sessionsByChannel": dict(sorted(fig.sessions_by_channel.items())),
            "sessionsByDevice": dict(sorted(fig.sessions_by_device.items())),
            "orders": fig.orders,
            "orderStatus": dict(sorted(fig.order_status.items())),
            "basketItems": _sorted_hist(fig.basket_items),
            "orderValue": {cur: _sorted_hist(c) for cur, c in sorted(fig.order_value.items())},
            "averageOrderValue": aov,
        },
        "experiments": _experiments(flows, exposures, pairs),
        "realismValues": realism_values,
        "realism": realism,
    }


def _sorted_hist(counter: Counter[Any]) -> dict[str, list[Any]]:
    keys = sorted(counter)
    return {"value": keys, "count": [counter[k] for k in keys]}
