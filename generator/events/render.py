"""Rendering a block's simulated facts as stored-form events and guest records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from generator.events.stored import envelope, tracking_event
from generator.events.timestamps import iso_strings
from generator.model.block import BlockFacts
from generator.model.world import World
from generator.profile import Page
from generator.vocabulary import (
    EMAIL_DOMAINS,
    EVENT_STATUSES,
    ORDER_STATUSES,
    PAY_TYPES,
    EventType,
    product_type_label,
)

__all__ = ["BlockRenderer", "identified_guests"]

_PAGES = tuple(Page)


def identified_guests(facts: BlockFacts) -> np.ndarray:
    """Per guest of the block: whether it sends an IDENTITY among the block's events."""
    rows = np.flatnonzero(facts.type == EventType.IDENTITY)
    out = np.zeros(len(facts.guest_halves), dtype=bool)
    out[facts.browser_guest[facts.session_browser[facts.session[rows]]]] = True
    return out


class BlockRenderer:
    """Turns BlockFacts into stored-form event dicts and guest records for one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        profile = world.profile
        catalog = world.catalog
        self.client_key = profile.client_key
        self.pos_names = tuple(p.name for p in profile.points_of_sale)
        self.pos_channels = tuple(tuple(str(c) for c in p.channels) for p in profile.points_of_sale)
        self.pos_language = tuple(p.language for p in profile.points_of_sale)
        self.pos_currency = tuple(p.currency for p in profile.points_of_sale)
        self.friendly_ids = tuple(f.friendly_id for f in profile.flows)
        self.type_label = tuple(p.name for p in profile.behaviour.catalog)
        self.item_ids = catalog.item_ids
        self.item_names = catalog.item_names
        # Per point of sale, in its currency (baskets.PriceList).
        self.item_price = world.prices.price
        self.item_type = catalog.item_type.tolist()
        self.type_names = catalog.type_names

    def guest_name(self, facts: BlockFacts, g: int) -> tuple[str, str, str]:
        pool = self.world.pools.names[int(facts.guest_pos[g])]
        i, j = int(facts.guest_first_name[g]), int(facts.guest_last_name[g])
        domain = EMAIL_DOMAINS[int(facts.guest_domain[g])]
        email = f"{pool.first_slug[i]}.{pool.last_slug[j]}.{facts.first_guest + g}@{domain}"
        return pool.first[i], pool.last[j], email

    def guests(self, facts: BlockFacts) -> Iterator[tuple[int, dict[str, Any]]]:
        """(global guest index, record) for every guest of the block: CUSTOMER, with the names
        its IDENTITY gave, if it has one among the block's events; else an anonymous VISITOR."""
        guest_refs = facts.guest_ref.tolist()
        browser_refs = facts.browser_ref.tolist()
        agents = self.world.pools.user_agents
        customer = identified_guests(facts).tolist()
        since = iso_strings(facts.guest_since_ms)
        for g, gref in enumerate(guest_refs):
            pos = int(facts.guest_pos[g])
            b0 = int(facts.guest_browsers[g])
            browsers = [
                {
                    "browserRef": browser_refs[b].decode(),
                    "channel": self.pos_channels[pos][int(facts.browser_channel[b])],
                    "userAgent": agents[int(facts.browser_agent[b])],
                }
                for b in range(b0, b0 + int(facts.guest_browser_count[g]))
            ]
            record: dict[str, Any] = {"guestRef": gref.decode()}
            if customer[g]:
                first, last, email = self.guest_name(facts, g)
                record.update(
                    type="CUSTOMER",
                    firstName=first,
                    lastName=last,
                    name=f"{first} {last}",
                    email=email,
                )
            else:
                record["type"] = "VISITOR"
            record.update(
                pointOfSale=self.pos_names[pos],
                language=self.pos_language[pos],
                browsers=browsers,
                firstSeen=since[g],
            )
            yield facts.first_guest + g, record

    def events(self, facts: BlockFacts) -> Iterator[tuple[int, dict[str, Any]]]:
        """(event index in facts, stored event) in the block's (createdAt, ref) order."""
        E = EventType
        n = len(facts)
        created = iso_strings(facts.created_ms)
        modified = iso_strings(facts.modified_ms)
        refs = [r.decode() for r in facts.ref.tolist()]
        types = facts.type.tolist()
        sessions = facts.session.tolist()
        pages = facts.page.tolist()
        items = facts.item.tolist()
        session_refs = [r.decode() for r in facts.session_ref.tolist()]
        session_browser = facts.session_browser.tolist()
        browser_refs = [r.decode() for r in facts.browser_ref.tolist()]
        browser_guest = facts.browser_guest.tolist()
        browser_channel = facts.browser_channel.tolist()
        guest_pos = facts.guest_pos.tolist()
        order_refs = facts.session_order_ref.tolist()
        # The *_ref properties format every ref of the block: read each once, never per event.
        execution_refs = facts.execution_ref.tolist()
        pay_types = facts.session_pay_type.tolist()
        guest_refs = [r.decode() for r in facts.guest_ref.tolist()]
        quantities = facts.quantity.tolist()
        failed = facts.failed.tolist()
        statuses = facts.order_status.tolist()
        carts: dict[int, list[int]] = {}
        client_key = self.client_key
        for i in range(n):
            t = types[i]
            s = sessions[i]
            b = session_browser[s]
            g = browser_guest[b]
            pos = guest_pos[g]
            channel = self.pos_channels[pos][browser_channel[b]]
            if t == E.TRACKING:
                f = int(facts.flow[i])
                v = int(facts.variant[i])
                yield (
                    i,
                    tracking_event(
                        ref=refs[i],
                        client_key=client_key,
                        created_at=created[i],
                        modified_at=modified[i],
                        channel=channel,
                        point_of_sale=self.pos_names[pos],
                        browser_ref=browser_refs[b],
                        session_ref=session_refs[s],
                        flow_execution_ref=execution_refs[i].decode(),
                        occurred_ms=int(facts.occurred_ms[i]),
                        flow_ref=self.world.flow_refs[f],
                        flow_friendly_id=self.friendly_ids[f],
                        flow_variant_ref=self.world.variant_refs[f][v],
                        guest_ref=guest_refs[g],
                        execution_ms=int(facts.execution_ms[i]),
                    ),
                )
                continue
            page = pages[i]
            item = items[i]
            data: dict[str, Any] = {
                "language": self.pos_language[pos],
                "currency": self.pos_currency[pos],
            }
            if t == E.VIEW or t == E.SEARCH or t == E.ADD:
                data["page"] = self._page_name(page, item)
            if t == E.SEARCH:
                data["product_name"] = self.type_label[item]
                data["product_type"] = self.type_names[item]
            elif t == E.ADD:
                carts.setdefault(s, []).append(item)
                data["product"] = {
                    "type": product_type_label(self.type_names[self.item_type[item]]),
                    "item_id": self.item_ids[item],
                    "name": self.item_names[item],
                    "orderedAt": created[i],
                    "quantity": quantities[i],
                    "price": self.item_price[pos][item],
                    "productId": self.item_ids[item],
                    "currency": self.pos_currency[pos],
                    "referenceId": order_refs[s].decode(),
                }
            elif t == E.CONFIRM:
                listed = carts.get(s, [])
                if failed[i]:  # it lists an item never added: CDP stores it FAILED
                    listed = [*listed, item]
                data["product"] = [{"item_id": self.item_ids[x]} for x in listed]
            elif t == E.CHECKOUT:
                data["reference_id"] = order_refs[s].decode()
                data["status"] = ORDER_STATUSES[statuses[i]]
                if not failed[i]:
                    carts.pop(s, None)
            elif t == E.PAYMENT:
                data["pay_type"] = PAY_TYPES[pay_types[s]]
            elif t == E.CLEAR_CART:
                carts.pop(s, None)
            elif t == E.IDENTITY:
                first, last, email = self.guest_name(facts, g)
                data["email"] = email
                data["firstname"] = first
                data["lastname"] = last
                data["identifiers"] = [{"provider": "email", "id": email}]
            yield (
                i,
                envelope(
                    ref=refs[i],
                    client_key=client_key,
                    created_at=created[i],
                    modified_at=modified[i],
                    type=E(t).name,
                    channel=channel,
                    point_of_sale=self.pos_names[pos],
                    browser_ref=browser_refs[b],
                    session_ref=session_refs[s],
                    arbitrary_data=data,
                    status=EVENT_STATUSES[failed[i]],
                ),
            )

    def _page_name(self, page: int, item: int) -> str:
        kind = _PAGES[page]
        if kind is Page.PRODUCT:
            return f"product/{self.item_ids[item]}"
        if kind is Page.CATEGORY:
            return f"category/{self.type_names[item]}"
        return kind.value
