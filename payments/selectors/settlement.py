"""The settlement summary: payments paid per day, gateway and currency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from ..models import (
    Payment,
)


@dataclass(frozen=True)
class SettlementRow:
    """Payments paid on one day through one gateway in one currency."""

    day: date
    gateway: str
    currency: str
    count: int
    paid: Decimal
    refunded: Decimal

    @property
    def net(self) -> Decimal:
        return self.paid - self.refunded


SETTLEMENT_HEADERS = (
    "Day",
    "Gateway",
    "Currency",
    "Payments",
    "Paid",
    "Refunded",
    "Net",
)


def paid_between(start: date, end: date) -> tuple[datetime, datetime]:
    """Return the bounds of whole local days start..end (end included)."""
    tz = timezone.get_current_timezone()
    low = timezone.make_aware(datetime.combine(start, datetime.min.time()), tz)
    high = timezone.make_aware(
        datetime.combine(end + timedelta(days=1), datetime.min.time()), tz
    )
    return low, high


def settlement_summary(*, start: date, end: date) -> list[SettlementRow]:
    """Sum payments paid from `start` to `end` (local days) per day, gateway, currency.

    A payment counts on the day it was paid; its refunds (as of now) are
    set against that day, so the figures match a payment export filtered on
    the same paid dates.
    """
    low, high = paid_between(start, end)
    grouped = (
        Payment.objects.filter(date_paid__gte=low, date_paid__lt=high)
        .annotate(day=TruncDate("date_paid", tzinfo=timezone.get_current_timezone()))
        .values("day", "payment_gateway", "currency")
        .annotate(
            count=Count("id"), paid=Sum("amount_paid"), refunded=Sum("amount_refunded")
        )
        .order_by("day", "payment_gateway", "currency")
    )
    return [
        SettlementRow(
            day=row["day"],
            gateway=row["payment_gateway"],
            currency=row["currency"],
            count=row["count"],
            paid=row["paid"] or Decimal(0),
            refunded=row["refunded"] or Decimal(0),
        )
        for row in grouped
    ]


def settlement_totals(rows: list[SettlementRow]) -> list[SettlementRow]:
    """Add up summary rows per currency (amounts in different currencies never mix)."""
    totals: dict[str, list] = {}
    for row in rows:
        count, paid, refunded = totals.get(row.currency, (0, Decimal(0), Decimal(0)))
        totals[row.currency] = (
            count + row.count,
            paid + row.paid,
            refunded + row.refunded,
        )
    return [
        SettlementRow(None, "", currency, count, paid, refunded)
        for currency, (count, paid, refunded) in sorted(totals.items())
    ]
