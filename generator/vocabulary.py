"""Names every layer shares: event type codes, pay types, email domains and how events spell a
product type (pages and channels live with the profile schema, on the same layer)."""

from __future__ import annotations

import re
import sys
from enum import EnumType, IntEnum

__all__ = [
    "AFTER_SALE_STATUSES",
    "CLIENT_TYPES",
    "CUSTOM_TYPE_MAX_LENGTH",
    "CUSTOM_TYPE_RULE",
    "EMAIL_DOMAINS",
    "EVENT_STATUSES",
    "EVENT_TYPE_NAMES",
    "FAILURE_REASONS",
    "ORDER_STATUSES",
    "PAY_TYPES",
    "SALE_STATUSES",
    "EventType",
    "is_custom_type",
    "product_type_label",
]


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

# A custom event type (spec section 6): an upper-case name, not one of CDP's, not starting SC_
# (reserved for Sitecore). The length cap is ours: a name is a key of the server's statistics
# and of every report, so it stays the size of a name.
CUSTOM_TYPE_MAX_LENGTH = 64
CUSTOM_TYPE_RULE = (
    f"upper-case letters, digits and _, starting with a letter, at most "
    f"{CUSTOM_TYPE_MAX_LENGTH} characters, not starting SC_"
)
_CUSTOM_TYPE = re.compile(rf"[A-Z][A-Z0-9_]{{0,{CUSTOM_TYPE_MAX_LENGTH - 1}}}")


def is_custom_type(name: str) -> bool:
    """True for a name a client may use as its own event type (not one of CDP's types)."""
    return (
        _CUSTOM_TYPE.fullmatch(name) is not None
        and not name.startswith("SC_")
        and name not in EVENT_TYPE_NAMES
    )


# A PAYMENT's pay_type; the model draws an index into this tuple.
PAY_TYPES = ("Card", "PayPal", "Voucher", "Other")

# A CHECKOUT's `status` (spec section 6); the model carries an index into this tuple. The
# CHECKOUT that places an order says PURCHASED or PAYMENT_PENDING (SALE_STATUSES: the sale, and
# the answer key's conversion); later ones of the same reference_id move it on: CONFIRMED in the
# same session, CANCELLED or REFUNDED after the sale (AFTER_SALE_STATUSES).
ORDER_STATUSES = ("PURCHASED", "PAYMENT_PENDING", "CONFIRMED", "CANCELLED", "REFUNDED")
SALE_STATUSES = frozenset({"PURCHASED", "PAYMENT_PENDING"})
AFTER_SALE_STATUSES = frozenset({"CANCELLED", "REFUNDED"})

# A stored event's envelope `status`: PROCESSED, or FAILED for an event CDP could not process.
EVENT_STATUSES = ("PROCESSED", "FAILED")
# Why a generated event is FAILED, by type: the manifest counts them under these reasons.
FAILURE_REASONS = {
    "CONFIRM": "lists an item never added to the session's cart",
    "CHECKOUT": "checks out a cart whose CONFIRM failed",
}

# Reserved for documentation (RFC 2606): no generated person can receive mail. The model draws
# an index into this tuple.
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")


def product_type_label(catalog_type: str) -> str:
    """A catalog product type (lower_snake_case in the profile) as events spell it (ADD
    `product.type`, as CDP's product types are upper case), and so as the manifest's
    `goalProductType` spells it: one spelling, so that joins on it are literal."""
    return catalog_type.upper()
