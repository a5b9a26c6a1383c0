"""Event types CDP stores, with the small integer codes the model's arrays carry."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CLIENT_TYPES", "EVENT_TYPE_NAMES", "EventType"]


class EventType(IntEnum):
    VIEW = 0
    SEARCH = 1
    IDENTITY = 2
    ADD = 3
    CONFIRM = 4
    CHECKOUT = 5
    PAYMENT = 6
    CLEAR_CART = 7
    FORCE_CLOSE = 8
    TRACKING = 9


# Types a client sends over the wire; TRACKING only ever exists in stored form.
CLIENT_TYPES = frozenset(t for t in EventType if t is not EventType.TRACKING)
# Every stored type by name, in code order: the registry that statistics and checks read.
EVENT_TYPE_NAMES = tuple(t.name for t in EventType)
