"""Profile schema and loading: the one place that validates a profile and explains its errors."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from generator.errors import ProfileError
from generator.profile.money import reference_rate

__all__ = [
    "ATTRIBUTION_HOURS",
    "BUCKETS",
    "DEFAULT_DEVICES",
    "JOURNEY_PAGES",
    "MAX_DAYS",
    "MAX_GUESTS",
    "SHARE_TOLERANCE",
    "Assignment",
    "Bandit",
    "Basket",
    "Behaviour",
    "Channel",
    "Devices",
    "Flow",
    "FlowKind",
    "LoadShape",
    "LogNormal",
    "Orders",
    "Page",
    "PointOfSale",
    "Population",
    "Profile",
    "ProfileError",
    "Variant",
    "load_profile",
    "parse_profile",
]

# Triggered experiments count conversions inside these windows after the run (spec section 4).
ATTRIBUTION_HOURS = (1, 3, 24, 72, 168)

# The profile's bounds, which the command line's --days and --guests share.
MAX_DAYS = 3660
MAX_GUESTS = 50_000_000

# The one rule for shares and weights that split a whole (a flow's variant weights, the points
# of sale's shares, browsersPerGuest, landing): they must sum to 1 within this, and are then
# divided by their sum. So 0.333 three times is an even three-way split; 60 and 40 is refused
# (write 0.6 and 0.4). Catalog weights are not shares: relative, any positive numbers.
SHARE_TOLERANCE = 0.01


def _split(values: tuple[float, ...], what: str) -> tuple[float, ...]:
    """`values` checked against SHARE_TOLERANCE and divided by their sum."""
    total = sum(values)
    if min(values, default=0) < 0:
        raise ValueError(f"{what} must not be negative")
    if abs(total - 1.0) > SHARE_TOLERANCE + 1e-12:
        raise ValueError(
            f"{what} sum to {total:g}, must be 1 (within {SHARE_TOLERANCE:g}; "
            "write 0.6 and 0.4, not 60 and 40)"
        )
    if abs(total - 1.0) <= 1e-12:  # 1 but for rounding: kept as written
        return values
    return tuple(v / total for v in values)


class Channel(StrEnum):
    AIRPORT_KIOSK = "AIRPORT_KIOSK"
    BRANCH = "BRANCH"
    CALL_CENTER = "CALL_CENTER"
    EMAIL = "EMAIL"
    GDS = "GDS"
    KIOSK = "KIOSK"
    MOBILE_APP = "MOBILE_APP"
    MOBILE_WEB = "MOBILE_WEB"
    SMS = "SMS"
    OFFLINE = "OFFLINE"
    OTA = "OTA"
    OTHER = "OTHER"
    WEB = "WEB"


class Page(StrEnum):
    """Kinds of page a journey visits; checkout is reached only by a purchase. Any of them can
    trigger a flow (a checkout-page flow runs for guests on their way to an order)."""

    HOME = "home"
    CATEGORY = "category"
    PRODUCT = "product"
    SEARCH = "search"
    CART = "cart"
    CHECKOUT = "checkout"


JOURNEY_PAGES = (Page.HOME, Page.CATEGORY, Page.PRODUCT, Page.SEARCH, Page.CART)


class FlowKind(StrEnum):
    EXPERIENCE = "experience"
    EXPERIMENT = "experiment"


class Assignment(StrEnum):
    """How a flow picks each guest's variant, as CDP offers it (see generator.model.assignment)."""

    UNIQUE = "unique"  # a hash of (flow, guest): independent of every other flow
    UNIVERSAL = "universal"  # the guest's one bucket (1-120), shared by every universal flow
    OPTIMIZED = "optimized"  # a multi-armed bandit: weights move each period, 100% allocation


# Universal assignment's buckets: every guest has one of 1..BUCKETS.
BUCKETS = 120


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class LogNormal(_Frozen):
    """A heavy-tailed positive quantity given by its median and log-space sigma."""

    median: float = Field(gt=0)
    sigma: float = Field(ge=0, le=4)


class Devices(_Frozen):
    """Shares of a point of sale's browsers by device: desktop browsers arrive on WEB, phone and
    tablet browsers on MOBILE_WEB, the shop's app on MOBILE_APP (generator.model.agents)."""

    desktop: Probability = 0.0  # a device left out has no share
    mobile: Probability = 0.0
    tablet: Probability = 0.0
    app: Probability = 0.0

    @model_validator(mode="after")
    def _sums_to_one(self) -> Devices:
        _split((self.desktop, self.mobile, self.tablet, self.app), "device shares")
        return self


# A point of sale's devices when it names none (less those whose channel it does not list).
DEFAULT_DEVICES = Devices(desktop=0.28, mobile=0.6, tablet=0.04, app=0.08)

# The channel each device's browsers need (generator.model.agents.DEVICE_CHANNEL).
_DEVICE_CHANNEL = {
    "desktop": "WEB",
    "mobile": "MOBILE_WEB",
    "tablet": "MOBILE_WEB",
    "app": "MOBILE_APP",
}


class PointOfSale(_Frozen):
    name: str = Field(min_length=1, pattern=r"^[^\s]+$")
    channels: tuple[Channel, ...] = (Channel.WEB,)
    language: str = Field(default="EN", pattern=r"^[A-Z]{2}$")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    timezone: str = "UTC"
    session_timeout_minutes: int = Field(
        default=20, ge=2, le=24 * 60, alias="sessionTimeoutMinutes"
    )
    share: float = Field(default=1.0, gt=0)
    locale: str = "en_US"
    # Units of this point of sale's currency per unit of the catalog's (behaviour.catalogCurrency):
    # its prices are the catalog's times this, rounded to the currency's minor unit. Unset: 1
    # for the catalog's own currency, else the reference rate in generator.model.baskets.
    price_rate: float | None = Field(default=None, gt=0, le=1e6, alias="priceRate")
    # Omitted: the default shares, less the devices whose channel is not listed.
    devices: Devices | None = None

    @model_validator(mode="after")
    def _devices_have_channels(self) -> PointOfSale:
        if self.devices is None:
            return self
        for device, channel in _DEVICE_CHANNEL.items():
            if getattr(self.devices, device) > 0 and channel not in self.channels:
                raise ValueError(
                    f"devices.{device} is {getattr(self.devices, device):g} but channels do not "
                    f"list {channel} (list it, or make that share 0)"
                )
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name such as Europe/Dublin)"
            ) from None
        return value

    @field_validator("channels")
    @classmethod
    def _some_channel(cls, value: tuple[Channel, ...]) -> tuple[Channel, ...]:
        if not value:
            raise ValueError("needs at least one channel")
        if len(set(value)) != len(value):
            raise ValueError("lists a channel twice")
        return value


class Population(_Frozen):
    guests: int = Field(default=1000, ge=1, le=MAX_GUESTS)
    # Share of guests with 1, 2, 3 ... browsers.
    browsers_per_guest: tuple[Probability, ...] = Field(
        default=(0.7, 0.22, 0.08), alias="browsersPerGuest", min_length=1, max_length=3
    )
    # Guests arrive at a rate with the daily and weekly rhythm, then come back at their own
    # rate (sessions a week, lognormal over guests around this mean) while they stay active, an
    # exponential time of mean activeDays (generator.model.arrivals). Returning share of
    # sessions: x / (1 + x) with x = sessionsPerWeek / 7 * activeDays.
    sessions_per_week: float = Field(default=0.175, gt=0, le=500, alias="sessionsPerWeek")
    activity_sigma: float = Field(default=1.0, ge=0, le=3, alias="activitySigma")
    active_days: float = Field(default=40.0, ge=0.01, le=100_000, alias="activeDays")
    # Share of guests who say who they are in their first session; of the rest, the share of
    # those who buy that check out as guests (no IDENTITY before their order).
    identify_share: Probability = Field(default=0.03, alias="identifyShare")
    guest_checkout_share: Probability = Field(default=0.6, alias="guestCheckoutShare")

    @field_validator("browsers_per_guest")
    @classmethod
    def _sums_to_one(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return _split(value, "shares")


class Product(_Frozen):
    type: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=1)
    items: int = Field(default=20, ge=1, le=10_000)
    price_range: tuple[float, float] = Field(default=(10.0, 100.0), alias="priceRange")
    weight: float = Field(default=1.0, gt=0)

    @field_validator("price_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("must be [low, high] with 0 < low <= high")
        return value


class Basket(_Frozen):
    """What a buying session's basket holds beyond the items of its journey (baskets.py)."""

    # Mean items (Poisson) a buyer adds from the cart page on the way to checkout: products of
    # types that are no flow's goal, by catalog weight.
    extra_items: float = Field(default=1.0, ge=0, le=20, alias="extraItems")
    # Shares of an ADD's quantity 1, 2, 3 ..., for items priced (in the catalog's currency)
    # at most singleAbove; dearer ones are bought one at a time. Unset: the catalog's median.
    quantity_shares: tuple[Probability, ...] = Field(
        default=(0.55, 0.3, 0.1, 0.05), alias="quantityShares", min_length=1, max_length=10
    )
    single_above: float | None = Field(default=None, gt=0, alias="singleAbove")

    @field_validator("quantity_shares")
    @classmethod
    def _sums_to_one(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return _split(value, "shares")


class Orders(_Frozen):
    """What becomes of an order (orders.py): the CHECKOUT that places it is PAYMENT_PENDING,
    CONFIRMED after its PAYMENT; a share is CANCELLED or REFUNDED later, in a session of its
    own; a share of organic orders fails (their CONFIRM lists an item never added: CONFIRM and
    CHECKOUT stored FAILED)."""

    failed_share: Probability = Field(default=0.01, alias="failedShare")
    cancelled_share: Probability = Field(default=0.04, alias="cancelledShare")
    refunded_share: Probability = Field(default=0.15, alias="refundedShare")
    cancel_lag_hours: LogNormal = Field(
        default=LogNormal(median=6, sigma=1.0), alias="cancelLagHours"
    )
    refund_lag_hours: LogNormal = Field(
        default=LogNormal(median=96, sigma=0.6), alias="refundLagHours"
    )

    @model_validator(mode="after")
    def _shares(self) -> Orders:
        if self.cancelled_share + self.refunded_share > 1 + 1e-12:
            raise ValueError("cancelledShare + refundedShare must be at most 1")
        return self


class Behaviour(_Frozen):
    # Relative session-start intensity per local hour (0-23) and weekday (Monday first).
    daily_curve: tuple[float, ...] = Field(
        default=(
            *(0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.8, 0.9, 1.0, 1.0),
            *(1.1, 1.0, 0.9, 0.9, 1.0, 1.1, 1.3, 1.5, 1.6, 1.4, 1.0, 0.5),
        ),
        alias="dailyCurve",
    )
    # Weekdays above weekends, Monday busiest (SaleCycle 2020; Doofinder).
    weekly_curve: tuple[float, ...] = Field(
        default=(1.15, 1.08, 1.04, 1.02, 0.96, 0.85, 0.90), alias="weeklyCurve"
    )
    landing: dict[Page, float] = Field(
        default={Page.HOME: 0.45, Page.CATEGORY: 0.2, Page.PRODUCT: 0.25, Page.SEARCH: 0.1}
    )
    # The share of sessions that leave after their landing page; the others always see a
    # second page (drawn from the landing page's row, leaving left out), then follow the chain.
    bounce_rate: Probability = Field(default=0.48, alias="bounceRate")
    # Each session's depth: the chain's chances to leave times a lognormal factor of median 1
    # and this sigma (0: every session follows the chain as written).
    depth_sigma: float = Field(default=1.2, ge=0, le=3, alias="depthSigma")
    # Page -> next page -> probability; what is left of each row is the chance to leave.
    transitions: dict[Page, dict[Page, float]] = Field(
        default={
            Page.HOME: {Page.CATEGORY: 0.485, Page.SEARCH: 0.213, Page.PRODUCT: 0.175},
            Page.CATEGORY: {
                Page.PRODUCT: 0.582,
                Page.CATEGORY: 0.194,
                Page.HOME: 0.078,
                Page.SEARCH: 0.039,
            },
            Page.PRODUCT: {
                Page.PRODUCT: 0.369,
                Page.CATEGORY: 0.243,
                Page.CART: 0.058,
                Page.SEARCH: 0.097,
                Page.HOME: 0.078,
            },
            Page.SEARCH: {Page.PRODUCT: 0.679, Page.SEARCH: 0.146, Page.CATEGORY: 0.049},
            Page.CART: {Page.PRODUCT: 0.34, Page.CATEGORY: 0.146, Page.HOME: 0.097},
        }
    )
    max_pages: int = Field(default=40, ge=1, le=500, alias="maxPages")
    page_gap_seconds: LogNormal = Field(
        default=LogNormal(median=36, sigma=1.0), alias="pageGapSeconds"
    )
    add_to_cart_rate: Probability = Field(default=0.09, alias="addToCartRate")
    # The organic baseline for goal products: the chance that a view of a goal product's page
    # adds it to the cart with no flow involved (such carts are bought at organicPurchaseRate, or
    # abandoned). Inside an exposed guest's attribution window the flow's conversionRate decides
    # instead, so a goal order there is always the flow's conversion.
    goal_add_to_cart_rate: Probability = Field(default=0.03, alias="goalAddToCartRate")
    organic_purchase_rate: Probability = Field(default=0.1, alias="organicPurchaseRate")
    clear_cart_rate: Probability = Field(default=0.05, alias="clearCartRate")
    force_close_rate: Probability = Field(default=0.03, alias="forceCloseRate")
    # When a converting guest buys: this share in the session of the first exposure, the rest in
    # a later session, at a lag (first exposure to order) drawn from conversionLagHours cut to the
    # attribution window. Flows may set their own.
    same_session_conversion: Probability = Field(default=0.4, alias="sameSessionConversion")
    conversion_lag_hours: LogNormal = Field(
        default=LogNormal(median=20, sigma=1.5), alias="conversionLagHours"
    )
    # The currency of the catalog's priceRange values (each point of sale converts them).
    catalog_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", alias="catalogCurrency")
    basket: Basket = Basket()
    orders: Orders = Orders()
    catalog: tuple[Product, ...] = Field(
        default=(
            Product(type="running_shoes", name="Running shoes", items=40, price_range=(60, 180)),
            Product(type="apparel", name="Apparel", items=80, price_range=(15, 90), weight=2.0),
            Product(type="accessories", name="Accessories", items=60, price_range=(5, 40)),
        ),
        min_length=1,
    )

    @field_validator("daily_curve")
    @classmethod
    def _daily(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) != 24:
            raise ValueError(f"has {len(value)} values, needs 24 (one per local hour)")
        if min(value) < 0 or sum(value) <= 0:
            raise ValueError("values must be >= 0 and not all 0")
        return value

    @field_validator("weekly_curve")
    @classmethod
    def _weekly(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) != 7:
            raise ValueError(f"has {len(value)} values, needs 7 (Monday first)")
        if min(value) < 0 or sum(value) <= 0:
            raise ValueError("values must be >= 0 and not all 0")
        return value

    @field_validator("landing")
    @classmethod
    def _landing(cls, value: dict[Page, float]) -> dict[Page, float]:
        if Page.CHECKOUT in value:
            raise ValueError("checkout cannot be a landing page (it is reached by a purchase)")
        return dict(zip(value, _split(tuple(value.values()), "probabilities"), strict=True))

    @field_validator("transitions")
    @classmethod
    def _transitions(cls, value: dict[Page, dict[Page, float]]) -> dict[Page, dict[Page, float]]:
        problems = []
        for page, row in value.items():
            if page is Page.CHECKOUT or Page.CHECKOUT in row:
                problems.append(f"{page}: checkout is reached only by a purchase")
            total = sum(row.values())
            if min(row.values(), default=0) < 0 or total > 1 + 1e-9:
                problems.append(
                    f"{page}: outgoing probabilities sum to {total:g}, must be at most 1"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _catalog_unique(self) -> Behaviour:
        types = [p.type for p in self.catalog]
        if len(set(types)) != len(types):
            raise ValueError("catalog: product types must be unique")
        return self


def _bucket_range(value: tuple[int, int]) -> tuple[int, int]:
    lo, hi = value
    if not 1 <= lo <= hi <= BUCKETS:
        raise ValueError(f"is [{lo}, {hi}]; must be [first, last] with 1 <= first <= last <= 120")
    return value


def _show(r: tuple[int, int]) -> str:
    return f"[{r[0]}, {r[1]}]"


class Variant(_Frozen):
    name: str = Field(min_length=1)
    # Unique assignment: a share of the flow's guests, checked with its siblings
    # (SHARE_TOLERANCE), not alone. Universal and optimized assignment derive it (from the
    # buckets, or as the even starting weights) and forbid it here.
    weight: float | None = Field(default=None, ge=0)
    conversion_rate: Probability = Field(alias="conversionRate")
    # Universal assignment: the buckets, inclusive, whose guests see this variant.
    buckets: tuple[int, int] | None = None
    ref: uuid.UUID | None = None

    @field_validator("buckets")
    @classmethod
    def _range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        return None if value is None else _bucket_range(value)


class Bandit(_Frozen):
    """Optimized assignment: how often the weights move, and the traffic the model expects the
    bandit to count in a period (by default the profile's expected sessions in a period)."""

    period_hours: int = Field(default=24, ge=1, le=24 * 7, alias="periodHours")
    impressions_per_period: float | None = Field(
        default=None, gt=0, le=1e9, alias="impressionsPerPeriod"
    )


class Flow(_Frozen):
    friendly_id: str = Field(pattern=r"^[a-z0-9_]+$", alias="friendlyId")
    kind: FlowKind = FlowKind.EXPERIMENT
    ref: uuid.UUID | None = None
    trigger_pages: tuple[Page, ...] = Field(alias="triggerPages", min_length=1)
    # If given, a product page triggers the flow only for products of these types.
    trigger_product_types: tuple[str, ...] = Field(default=(), alias="triggerProductTypes")
    # Declared before `buckets` and `variants`, whose checks depend on it.
    assignment: Assignment = Assignment.UNIQUE
    # Unique: the share of guests the flow reaches. Universal derives it from `buckets`;
    # optimized always reaches every guest.
    traffic_allocation: Probability = Field(default=1.0, alias="trafficAllocation")
    # Universal: the buckets, inclusive, whose guests enter the flow (all 120 by default).
    buckets: tuple[int, int] | None = None
    bandit: Bandit | None = None
    goal_product_type: str = Field(alias="goalProductType")
    attribution_hours: int = Field(default=24, alias="attributionHours")
    decision_time_ms: LogNormal = Field(
        default=LogNormal(median=23, sigma=0.45), alias="decisionTimeMs"
    )
    # Unset: the behaviour's sameSessionConversion and conversionLagHours.
    same_session_conversion: Probability | None = Field(default=None, alias="sameSessionConversion")
    conversion_lag_hours: LogNormal | None = Field(default=None, alias="conversionLagHours")
    variants: tuple[Variant, ...] = Field(min_length=1, max_length=26)

    @field_validator("attribution_hours")
    @classmethod
    def _window(cls, value: int) -> int:
        if value not in ATTRIBUTION_HOURS:
            raise ValueError(f"is {value}, must be one of {', '.join(map(str, ATTRIBUTION_HOURS))}")
        return value

    @field_validator("buckets")
    @classmethod
    def _allocation_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        return None if value is None else _bucket_range(value)

    @field_validator("variants")
    @classmethod
    def _weights(cls, value: tuple[Variant, ...], info: ValidationInfo) -> tuple[Variant, ...]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        mode = info.data.get("assignment", Assignment.UNIQUE)
        problems: list[str] = []
        if mode is Assignment.UNIQUE:
            missing = [i for i, v in enumerate(value) if v.weight is None]
            if missing:
                problems.append(
                    f"[{missing[0]}].weight: needed with unique assignment (the variants' "
                    "weights sum to 1)"
                )
            else:
                try:
                    weights = _split(tuple(v.weight or 0.0 for v in value), "weights")
                except ValueError as exc:
                    problems.append(str(exc))
                else:
                    value = tuple(
                        v if v.weight == w else v.model_copy(update={"weight": w})
                        for v, w in zip(value, weights, strict=True)
                    )
        if mode is not Assignment.UNIVERSAL:
            problems += [
                f"[{i}].buckets: only universal assignment uses bucket ranges"
                for i, v in enumerate(value)
                if v.buckets is not None
            ]
        if mode is not Assignment.UNIQUE:
            why = (
                "its buckets set its share"
                if mode is Assignment.UNIVERSAL
                else "optimized assignment starts from even weights and moves them itself"
            )
            problems += [
                f"[{i}].weight: not with {mode} assignment ({why}); remove it"
                for i, v in enumerate(value)
                if v.weight is not None
            ]
        if mode is Assignment.UNIVERSAL:
            problems += _tiling(value, info.data.get("buckets") or (1, BUCKETS))
        if problems:
            raise ValueError("\n".join(problems))
        return value

    @model_validator(mode="after")
    def _derived(self) -> Flow:
        """Checks across fields, then the weights and allocation every mode has, filled in."""
        problems = []
        mode = self.assignment
        if mode is not Assignment.UNIQUE and "traffic_allocation" in self.model_fields_set:
            problems.append(
                "trafficAllocation: universal assignment allocates by bucket range (buckets: "
                "[first, last]); remove it"
                if mode is Assignment.UNIVERSAL
                else "trafficAllocation: optimized assignment always allocates 100%; remove it"
            )
        if mode is not Assignment.UNIVERSAL and self.buckets is not None:
            problems.append("buckets: only universal assignment uses bucket ranges")
        if mode is not Assignment.OPTIMIZED and self.bandit is not None:
            problems.append("bandit: only optimized assignment has bandit settings")
        if problems:
            raise ValueError("\n".join(problems))
        if mode is Assignment.UNIQUE:
            return self
        if mode is Assignment.UNIVERSAL:
            lo, hi = self.buckets or (1, BUCKETS)
            allocated = hi - lo + 1
            variants = tuple(
                v.model_copy(update={"weight": (v.buckets[1] - v.buckets[0] + 1) / allocated})
                for v in self.variants
                if v.buckets is not None
            )
            return self.model_copy(
                update={
                    "buckets": (lo, hi),
                    "traffic_allocation": allocated / BUCKETS,
                    "variants": variants,
                }
            )
        even = 1.0 / len(self.variants)
        return self.model_copy(
            update={
                "bandit": self.bandit or Bandit(),
                "traffic_allocation": 1.0,
                "variants": tuple(v.model_copy(update={"weight": even}) for v in self.variants),
            }
        )

    @property
    def weights(self) -> tuple[float, ...]:
        """The variants' configured (unique), derived (universal) or starting (optimized)
        shares of the allocated guests."""
        return tuple(v.weight or 0.0 for v in self.variants)


def _tiling(variants: tuple[Variant, ...], allocation: tuple[int, int]) -> list[str]:
    """Universal variants' ranges: each given, inside the allocation, together covering it
    once (so every allocated guest sees exactly one variant)."""
    missing = [i for i, v in enumerate(variants) if v.buckets is None]
    if missing:
        return [f"[{missing[0]}].buckets: needed with universal assignment, e.g. [1, 60]"]
    problems = []
    ranges = sorted((v.buckets, i) for i, v in enumerate(variants) if v.buckets is not None)
    for r, i in ranges:
        if r[0] < allocation[0] or r[1] > allocation[1]:
            problems.append(
                f"[{i}].buckets: {_show(r)} is not inside the flow's buckets {_show(allocation)}"
            )
    for (a, i), (b, j) in itertools.pairwise(ranges):
        if b[0] <= a[1]:
            problems.append(f"[{j}].buckets: {_show(b)} overlaps [{i}].buckets {_show(a)}")
    covered = sum(r[1] - r[0] + 1 for r, _ in ranges)
    if not problems and covered != allocation[1] - allocation[0] + 1:
        problems.append(
            f"buckets: the variants' ranges cover {covered} of the flow's buckets "
            f"{_show(allocation)} ({allocation[1] - allocation[0] + 1}); they must cover all"
        )
    return problems


class LoadShape(_Frozen):
    """How `cdpsim load` shapes its users over the run (Locust LoadTestShape)."""

    shape: Literal["steady", "step", "spike", "diurnal"] = "steady"
    users: int = Field(default=20, ge=1, le=100_000)
    spawn_rate: float = Field(default=10.0, gt=0, alias="spawnRate")
    run_time_seconds: float = Field(default=60.0, gt=0, alias="runTimeSeconds")
    steps: int = Field(default=4, ge=1, le=100)
    spike_users: int = Field(default=100, ge=1, le=100_000, alias="spikeUsers")
    spike_at: Probability = Field(default=0.5, alias="spikeAt")
    spike_length: Probability = Field(default=0.1, alias="spikeLength")
    think_time_scale: float = Field(default=0.01, ge=0, le=1, alias="thinkTimeScale")
    batch_size: int = Field(default=1, ge=1, le=10_000, alias="batchSize")


class Profile(_Frozen):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(default=0, ge=0, lt=2**63)
    client_key: str = Field(pattern=r"^[A-Za-z0-9]{32}$", alias="clientKey")
    start: dt.datetime
    days: float = Field(default=7, gt=0, le=MAX_DAYS)
    points_of_sale: tuple[PointOfSale, ...] = Field(alias="pointsOfSale", min_length=1)
    population: Population = Population()
    behaviour: Behaviour = Behaviour()
    flows: tuple[Flow, ...] = ()
    load: LoadShape = LoadShape()
    # Filled in by load_profile, never by the YAML author.
    source: str = Field(default="<profile>", exclude=True)
    sha256: str = Field(default="", exclude=True)

    @field_validator("points_of_sale")
    @classmethod
    def _shares(cls, value: tuple[PointOfSale, ...]) -> tuple[PointOfSale, ...]:
        """Shares of guests: given for every point of sale (the one rule above), or for none
        (an equal split)."""
        given = ["share" in p.model_fields_set for p in value]
        if not any(given):
            shares = tuple(1.0 / len(value) for _ in value)
        elif all(given):
            shares = _split(tuple(p.share for p in value), "shares")
        else:
            missing = ", ".join(p.name for p, g in zip(value, given, strict=True) if not g)
            raise ValueError(
                f"give a share for every point of sale or for none (none for {missing})"
            )
        return tuple(
            p if p.share == share else p.model_copy(update={"share": share})
            for p, share in zip(value, shares, strict=True)
        )

    @field_validator("start")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2025-01-06T00:00:00Z")
        return value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _cross_checks(self) -> Profile:
        problems: list[str] = []
        names = [p.name for p in self.points_of_sale]
        if len(set(names)) != len(names):
            problems.append("pointsOfSale: names must be unique")
        ids = [f.friendly_id for f in self.flows]
        if len(set(ids)) != len(ids):
            problems.append("flows: friendlyId values must be unique")
        if len(self.flows) > 60:
            problems.append("flows: at most 60 flows")
        types = {p.type for p in self.behaviour.catalog}
        goals: dict[str, int] = {}
        for i, flow in enumerate(self.flows):
            if flow.goal_product_type not in types:
                problems.append(
                    f"flows[{i}].goalProductType: {flow.goal_product_type!r} is not in "
                    f"behaviour.catalog ({', '.join(sorted(types))})"
                )
            if flow.goal_product_type in goals:
                problems.append(
                    f"flows[{i}].goalProductType: {flow.goal_product_type!r} is already the goal "
                    f"of flows[{goals[flow.goal_product_type]}]; goals must differ so that each "
                    "conversion belongs to one flow"
                )
            goals.setdefault(flow.goal_product_type, i)
            for t in flow.trigger_product_types:
                if t not in types:
                    problems.append(
                        f"flows[{i}].triggerProductTypes: {t!r} is not in behaviour.catalog"
                    )
        if types and goals and set(goals) >= types:
            problems.append(
                "behaviour.catalog: every product type is some flow's goal; keep at least one "
                "type for organic baskets"
            )
        problems += _price_rates(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # Derived, stable identities: a flow's refs belong to the tenant, not to the run's seed.
    def flow_ref(self, flow: Flow) -> uuid.UUID:
        return flow.ref or _stable_uuid(self.client_key, "flow", flow.friendly_id)

    def variant_ref(self, flow: Flow, variant: Variant) -> uuid.UUID:
        return variant.ref or _stable_uuid(
            self.client_key, "variant", flow.friendly_id, variant.name
        )

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(days=self.days)

    def point_of_sale(self, name: str) -> PointOfSale | None:
        return next((p for p in self.points_of_sale if p.name == name), None)

    def flow(self, friendly_id: str) -> Flow | None:
        return next((f for f in self.flows if f.friendly_id == friendly_id), None)


def _price_rates(profile: Profile) -> list[str]:
    """Every point of sale can price the catalog: its own rate, or a reference one."""
    base = profile.behaviour.catalog_currency
    return [
        f"pointsOfSale[{i}].priceRate: needed: no reference rate from {base} to {p.currency}"
        for i, p in enumerate(profile.points_of_sale)
        if p.price_rate is None and reference_rate(base, p.currency) is None
    ]


def _stable_uuid(*parts: str) -> uuid.UUID:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def _loc(loc: tuple[int | str, ...], data: Any) -> str:
    """Render a pydantic error location the way the YAML author wrote it: flows[0].variants."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _follows_on(err: Any, errors: list[Any]) -> bool:
    """A list "too short" only because its items failed (pydantic drops them, then counts):
    the items' own errors say what is wrong."""
    loc = tuple(err["loc"])
    return err["type"] == "too_short" and any(
        len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors
    )


def parse_profile(data: Any, source: str = "<profile>", sha256: str = "") -> Profile:
    """Validate already-parsed YAML data into a Profile, or raise ProfileError."""
    if not isinstance(data, dict):
        raise ProfileError(
            source, ["the profile must be a mapping of fields (name, clientKey ...)"]
        )
    try:
        profile = Profile.model_validate({**data, "source": source, "sha256": sha256})
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        for err in errors:
            if _follows_on(err, errors):
                continue
            where = _loc(tuple(p for p in err["loc"] if not str(p).startswith("function-")), data)
            msg = err["msg"].removeprefix("Value error, ")
            for line in msg.split("\n"):
                problems.append(f"{where}: {line}" if where else line)
        raise ProfileError(source, problems) from None
    return profile


# libyaml's safe loader where PyYAML was built with it (several times faster), else PyYAML's.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a key written twice in one mapping (YAML keeps the last one
    silently: `seed` twice would run with the second)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base`: keys it brings may be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                line = first.setdefault(key, key_node.start_mark.line)
            except TypeError:
                continue  # an unhashable key: the constructor below says so
            if line != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (first on line {line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_profile(path: str | Path) -> Profile:
    """Read and validate a YAML profile file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ProfileError(str(path), ["no such file"]) from None
    except OSError as exc:
        raise ProfileError(str(path), [f"cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError(str(path), [f"{where}not valid YAML ({problem})"]) from None
    return parse_profile(data, source=str(path), sha256=hashlib.sha256(raw).hexdigest())
