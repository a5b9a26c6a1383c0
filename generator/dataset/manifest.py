"""The manifest: what was asked, what came out, and the answer key for every flow and variant."""

from __future__ import annotations

import datetime as dt
from typing import Any

from generator import __version__
from generator.dataset.answer_key import VariantOutcome
from generator.events.stored import iso_ms
from generator.events.types import EventType
from generator.profile import Profile
from generator.vocabulary import product_type_label

__all__ = ["build_manifest"]


def build_manifest(
    *,
    profile: Profile,
    plan_seed: int,
    plan_days: float,
    guests_simulated: int,
    counts: dict[str, int],
    results: list[list[VariantOutcome]],
    guests: int,
    customers: int,
    last_event_key: bytes,
    requested_events: int | None,
    events_file: str,
) -> dict[str, Any]:
    start = profile.start
    end = start + dt.timedelta(days=plan_days)
    flows: dict[str, Any] = {}
    for f, flow in enumerate(profile.flows):
        flows[flow.friendly_id] = {
            "flowRef": str(profile.flow_ref(flow)),
            "kind": flow.kind.value,
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
                    "conversionRate": v.conversion_rate,
                    "exposures": results[f][i].exposures,
                    "exposedGuests": results[f][i].exposed_guests,
                    "convertedGuests": results[f][i].converted_guests,
                }
                for i, v in enumerate(flow.variants)
            ],
        }
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
        "guests": {"simulated": guests_simulated, "seen": guests, "customers": customers},
        "flows": flows,
    }
