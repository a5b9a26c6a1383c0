"""Published e-commerce figures that a shop's traffic is judged against (issue 11's table).

One place for them: `cdpsim report` prints them beside a dataset's own figures and
bench/realism.py can import the same rows. `low`/`high` bound the range a realistic default
profile should fall in (None where no range is claimed); values are fractions or plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PUBLISHED", "Published", "by_key"]


@dataclass(frozen=True, slots=True)
class Published:
    key: str  # the name of the dataset figure it compares with (DatasetFigures.realism)
    metric: str
    published: str  # as the source says it
    source: str
    low: float | None = None
    high: float | None = None
    unit: str = ""  # "%" for fractions shown as percentages, "" for plain numbers

    def holds(self, value: float | None) -> bool | None:
        """Whether a value falls inside the range (None when no range is claimed or no value)."""
        if value is None or (self.low is None and self.high is None):
            return None
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


PUBLISHED: tuple[Published, ...] = (
    Published(
        "bounce_rate",
        "bounce rate (one-page sessions)",
        "median 47% (middle half 38-62%)",
        "Contentsquare Digital Experience Benchmark 2024",
        0.35,
        0.60,
        "%",
    ),
    Published(
        "pages_per_session",
        "pages per session",
        "about 5 (purchase sessions about 22)",
        "Contentsquare 2022",
        4.0,
        6.5,
    ),
    Published(
        "sessions_per_guest_month",
        "sessions per guest (per 30 days)",
        "about 1.4 a month",
        "Littledata 2022",
    ),
    Published(
        "returning_share",
        "returning share of sessions",
        "about half, steady",
        "Monetate; Contentsquare",
        0.35,
        0.65,
        "%",
    ),
    Published(
        "busiest_weekday",
        "busiest day of week",
        "Monday busiest, weekend quietest",
        "SaleCycle 2020; Doofinder",
    ),
    Published(
        "items_per_order",
        "items per order",
        "2.87 units per transaction",
        "Dynamic Yield",
        2.0,
        3.5,
    ),
    Published(
        "average_order_value",
        "average order value",
        "about USD 130",
        "Dynamic Yield",
    ),
    Published(
        "identified_share",
        "guests who identify",
        "95-99% of sessions anonymous",
        "Kissmetrics",
        None,
        0.20,
        "%",
    ),
    Published(
        "mobile_share",
        "mobile share of sessions",
        "64-78% of sessions mobile",
        "Contentsquare 2021; Salesforce Shopping Index",
        0.55,
        0.80,
        "%",
    ),
    Published(
        "returned_share",
        "orders cancelled or refunded",
        "about 19% of online sales returned",
        "NRF 2025",
        None,
        None,
        "%",
    ),
    Published(
        "cart_abandonment",
        "cart abandonment",
        "about 70%",
        "Baymard Institute",
        0.60,
        0.80,
        "%",
    ),
    Published(
        "session_conversion",
        "session conversion",
        "2.6-3.2%",
        "Invesp; Dynamic Yield",
        0.015,
        0.04,
        "%",
    ),
)


def by_key() -> dict[str, Published]:
    return {p.key: p for p in PUBLISHED}
