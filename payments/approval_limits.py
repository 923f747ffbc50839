"""REFUND_APPROVAL_LIMITS: the refund sums per currency that need a second person.

Read by backoffice/settings.py at start-up (so a bad value stops the process
with a clear message) and by services.approvals. No Django models here.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured

ANY_CURRENCY = "*"
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def parse_approval_limits(text: str) -> dict[str, Decimal]:
    """Parse "USD:100,EUR:100,*:100" into {"USD": Decimal("100"), ...}.

    Empty text means no limits (approval off). Raise ImproperlyConfigured
    naming the bad item: a currency that is not three letters (or `*`), an
    amount that is not a positive number, or a currency given twice.
    """
    limits: dict[str, Decimal] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        currency, sep, amount = item.partition(":")
        currency = currency.strip().upper()
        if not sep or not (currency == ANY_CURRENCY or _CURRENCY.match(currency)):
            raise ImproperlyConfigured(
                f"REFUND_APPROVAL_LIMITS: {item!r} is not CURRENCY:AMOUNT "
                "(e.g. USD:100, or *:100 for every other currency)"
            )
        try:
            value = Decimal(amount.strip())
        except InvalidOperation:
            value = Decimal("NaN")
        if not value.is_finite() or value <= 0:
            raise ImproperlyConfigured(
                f"REFUND_APPROVAL_LIMITS: the limit of {currency} must be a "
                f"positive amount, not {amount.strip()!r}"
            )
        if currency in limits:
            raise ImproperlyConfigured(
                f"REFUND_APPROVAL_LIMITS: {currency} is given twice"
            )
        limits[currency] = value
    return limits


def approval_limit(limits: dict[str, Decimal], currency: str) -> Decimal | None:
    """Return the limit for a currency (its own, else `*`), or None: no approval."""
    return limits.get(currency.upper(), limits.get(ANY_CURRENCY))
