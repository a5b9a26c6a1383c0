"""The manifest: what was asked, what came out, and the answer key for every flow and variant."""

from __future__ import annotations

import datetime as dt
from typing import Any

from generator import __version__
from generator.dataset.analysis import flow_analysis
from generator.dataset.answer_key import WINDOW_HOURS, Tally, bandit_period_count, currencies
from generator.events.stored import iso_ms
from generator.events.types import EventType
from generator.model.assignment import MINIMUM_WEIGHT, MONTE_CARLO_DRAWS, FlowTable
from generator.profile import Assignment, Flow, Profile
from generator.vocabulary import FAILURE_REASONS, product_type_label

__all__ = ["build_manifest"]


def build_manifest(
    *,
    profile: Profile,
    plan_seed: int,
    plan_days: float,
    guests_simulated: int,
    counts: dict[str, int],
    tally: Tally,
    failed: dict[str, int] | None = None,
    guests: int,
    customers: int,
    last_event_key: bytes,
    requested_events: int | None,
    events_file: str,
) -> dict[str, Any]:
    start = profile.start
    end = start + dt.timedelta(days=plan_days)
    flows: dict[str, Any] = {}
    table = FlowTable(profile)
    money = currencies(p.currency for p in profile.points_of_sale)
    own_window = {h: w for w, h in enumerate(WINDOW_HOURS)}
    for f, flow in enumerate(profile.flows):
        names = [v.name for v in flow.variants]
        analysis, per_variant = flow_analysis(
            names,
            product_type_label(flow.goal_product_type),
            flow.attribution_hours,
            money,
            tally,
            f,
        )
        entry: dict[str, Any] = {
            "flowRef": str(profile.flow_ref(flow)),
            "kind": flow.kind.value,
            "assignment": flow.assignment.value,
            # Spelt as the events spell a product's type (ADD `product.type`): a literal join.
            "goalProductType": product_type_label(flow.goal_product_type),
            "triggerPages": [str(p) for p in flow.trigger_pages],
            "attributionHours": flow.attribution_hours,
            "trafficAllocation": flow.traffic_allocation,
            "variants": [
                {
                    "name": v.name,
                    "flowVariantRef": str(profile.variant_ref(flow, v)),
                    "weight": v.weight,
                    **({"buckets": list(v.buckets)} if v.buckets is not None else {}),
                    "conversionRate": v.conversion_rate,
                    "exposures": int(tally.exposures[f, i]),
                    "exposedGuests": int(tally.exposed_guests[f, i]),
                    "convertedGuests": int(
                        tally.converted_guests[f, i, own_window[flow.attribution_hours]]
                    ),
                    **per_variant[i],
                }
                for i, v in enumerate(flow.variants)
            ],
            **analysis,
        }
        if flow.buckets is not None:
            entry["buckets"] = list(flow.buckets)
        if flow.assignment is Assignment.OPTIMIZED:
            entry["bandit"] = _bandit(table, f, flow, tally, start, plan_days)
        flows[flow.friendly_id] = entry
    all_counts = {t.name: counts.get(t.name, 0) for t in EventType}
    # The key starts with createdAt in epoch ms (`plan.sort_key`): formatted, not cut.
    last = iso_ms(int(last_event_key[:15])) if last_event_key else None
    return {
        "profile": {"name": profile.name, "sha256": profile.sha256, "source": profile.source},
        "seed": plan_seed,
        "generator": {"name": "cdpsim", "version": __version__},
        "start": iso_ms(int(start.timestamp() * 1000)),
        "end": iso_ms(int(end.timestamp() * 1000)),
        "lastEventAt": last,
        "requestedEvents": requested_events,
        "clientKey": profile.client_key,
        "eventsFile": events_file,
        "pointsOfSale": {
            p.name: {
                "sessionTimeoutMinutes": p.session_timeout_minutes,
                "timezone": p.timezone,
                "language": p.language,
                "currency": p.currency,
                "channels": [str(c) for c in p.channels],
            }
            for p in profile.points_of_sale
        },
        "counts": all_counts,
        "events": sum(all_counts.values()),
        # Events stored FAILED, by type and why (vocabulary.FAILURE_REASONS); counted in counts.
        "failed": {
            "events": sum((failed or {}).values()),
            "byType": {t: n for t, n in sorted((failed or {}).items()) if n},
            "reasons": {t: FAILURE_REASONS[t] for t, n in sorted((failed or {}).items()) if n},
        },
        "guests": {"simulated": guests_simulated, "seen": guests, "customers": customers},
        "flows": flows,
    }


def _bandit(
    table: FlowTable, f: int, flow: Flow, tally: Tally, start: dt.datetime, days: float
) -> dict[str, Any]:
    """An optimized flow's weight history over the dataset's window: per period the weights it
    ran with, the expected counts they were computed from, and what the dataset holds."""
    assert flow.bandit is not None
    schedule = table.schedule(f)
    period_ms = table.period_ms[f]
    count = len(tally.period_exposed.get(f, ())) or bandit_period_count(period_ms, days)
    exposed = tally.period_exposed.get(f)
    converted = tally.period_converted.get(f)
    start_ms = int(start.timestamp() * 1000)
    k = len(flow.variants)
    periods = []
    for p in range(count):
        seen, bought = schedule.counted(p)
        periods.append(
            {
                "period": p,
                "start": iso_ms(start_ms + p * period_ms),
                "weights": schedule.weights(p).tolist(),
                "countedImpressions": seen.tolist(),
                "countedConversions": bought.tolist(),
                "exposedGuests": [] if exposed is None else exposed[p, :k].tolist(),
                "convertedGuests": [] if converted is None else converted[p, :k].tolist(),
            }
        )
    return {
        "periodHours": flow.bandit.period_hours,
        "impressionsPerPeriod": schedule.impressions,
        "monteCarloDraws": MONTE_CARLO_DRAWS,
        "minimumWeight": MINIMUM_WEIGHT,
        "periods": periods,
    }
