"""Names every layer shares: event type codes, pay types and email domains (pages and channels
live with the profile schema, on the same layer)."""

from __future__ import annotations

import sys
from enum import EnumType, IntEnum

__all__ = ["CLIENT_TYPES", "EMAIL_DOMAINS", "EVENT_TYPE_NAMES", "PAY_TYPES", "EventType"]


class _CodeEnumType(EnumType):
    """The class of an enum whose members go into numpy expressions (`types == EventType.ADD`).

    numpy asks each operand's class for `__array_ufunc__` and `__array_function__` and clears
    any error that lookup raises (numpy gh-14801). On Python 3.11 a missing attribute of an enum
    class falls to EnumType.__getattr__, which is Python code: a Ctrl-C pending since the last
    long numpy call is raised there, and numpy drops it (`generate --workers 1` went on to the
    end after about one Ctrl-C in ten). The members live in the class dict, so the fallback
    finds nothing the ordinary lookup missed: let that lookup's AttributeError stand, in C,
    where no signal handler can run. (3.12 removed EnumType.__getattr__.)
    """

    if sys.version_info < (3, 12):
        __getattr__ = type.__getattribute__


class EventType(IntEnum, metaclass=_CodeEnumType):
    """Event types CDP stores, with the small integer codes the model's arrays carry."""

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

# A PAYMENT's pay_type; the model draws an index into this tuple.
PAY_TYPES = ("Card", "PayPal", "Voucher", "Other")

# Reserved for documentation (RFC 2606): no generated person can receive mail. The model draws
# an index into this tuple.
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
