"""Guests' histories as stored-form events, one guest at a time (for Locust journeys and tests)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from generator.events.render import BlockRenderer
from generator.model.block import simulate_block
from generator.model.world import BLOCK_GUESTS, World
from generator.profile import Profile

__all__ = ["GuestHistory", "guest_histories"]


@dataclass(frozen=True, slots=True)
class GuestHistory:
    """One guest: its ref, home point of sale, browsers, and its stored events in time order."""

    guest_ref: str
    point_of_sale: str
    browsers: tuple[str, ...]
    events: tuple[dict[str, Any], ...]


def guest_histories(
    profile: Profile, *, seed: int | None = None, blocks: Iterable[int] = (0,)
) -> Iterator[GuestHistory]:
    """Histories of every guest in the given blocks (BLOCK_GUESTS guests each), in guest order.

    Any block index is valid: the population is taken as large as the highest block needs.
    """
    wanted = sorted(set(blocks))
    if not wanted:
        return
    world = World(profile, seed=seed, guests=(wanted[-1] + 1) * BLOCK_GUESTS)
    renderer = BlockRenderer(world)
    for block in wanted:
        facts = simulate_block(world, block)
        per_guest: dict[int, list[dict[str, Any]]] = {}
        browser_guest = facts.browser_guest
        session_browser = facts.session_browser
        for i, event in renderer.events(facts):
            g = int(browser_guest[session_browser[facts.session[i]]])
            per_guest.setdefault(g, []).append(event)
        for index, record in renderer.guests(facts):
            g = index - facts.first_guest
            yield GuestHistory(
                guest_ref=record["guestRef"],
                point_of_sale=record["pointOfSale"],
                browsers=tuple(b["browserRef"] for b in record["browsers"]),
                events=tuple(per_guest.get(g, ())),
            )
