"""Money as a profile prices it: each currency's minor unit, and reference rates between them."""

from __future__ import annotations

__all__ = ["REFERENCE_RATES", "minor_digits", "reference_rate"]

# Units of each currency per euro: fixed reference values (ECB euro reference rates of early
# January 2025, rounded), so that a profile gives the same prices on every machine and day. A
# profile that needs another currency, or another rate, sets pointsOfSale[].priceRate.
REFERENCE_RATES: dict[str, float] = {
    "EUR": 1.0,
    "USD": 1.04,
    "GBP": 0.83,
    "JPY": 163.0,
    "CHF": 0.94,
    "SEK": 11.5,
    "NOK": 11.8,
    "DKK": 7.46,
    "PLN": 4.27,
    "CZK": 25.2,
    "HUF": 412.0,
    "CAD": 1.49,
    "AUD": 1.66,
    "NZD": 1.84,
    "CNY": 7.6,
    "HKD": 8.1,
    "SGD": 1.41,
    "INR": 89.0,
    "KRW": 1530.0,
    "BRL": 6.4,
    "MXN": 21.3,
    "ZAR": 19.5,
}

# ISO 4217 minor units other than 2.
_MINOR = {
    "JPY": 0,
    "KRW": 0,
    "ISK": 0,
    "CLP": 0,
    "VND": 0,
    "PYG": 0,
    "UGX": 0,
    "XAF": 0,
    "XOF": 0,
    "BHD": 3,
    "JOD": 3,
    "KWD": 3,
    "OMR": 3,
    "TND": 3,
}


def minor_digits(currency: str) -> int:
    """Decimal digits of the currency's minor unit (JPY 0, EUR 2, KWD 3)."""
    return _MINOR.get(currency, 2)


def reference_rate(base: str, currency: str) -> float | None:
    """Units of `currency` per unit of `base` from the reference table; None if either is
    not in it (and they differ)."""
    if base == currency:
        return 1.0
    if base not in REFERENCE_RATES or currency not in REFERENCE_RATES:
        return None
    return REFERENCE_RATES[currency] / REFERENCE_RATES[base]
