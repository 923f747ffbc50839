"""The settlement summary: payments paid per day or month, gateway and currency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate, TruncMonth
from django.utils import timezone

from ..models import (
    Payment,
)

DAY = "day"
MONTH = "month"
# A range longer than this is summed per month (each month opens per day).
DAILY_UP_TO_DAYS = 62


@dataclass(frozen=True)
class SettlementRow:
    """Payments paid on one day (or in one month) through one gateway in one currency.

    `day` is the period's first day: the day itself, or the month's first day
    when `period` is MONTH.
    """

    day: date
    gateway: str
    currency: str
    count: int
    paid: Decimal
    refunded: Decimal
    period: str = DAY

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


def settlement_grouping(start: date, end: date) -> str:
    """Return how a range is summed: per day up to DAILY_UP_TO_DAYS days, else per month."""
    return DAY if (end - start).days + 1 <= DAILY_UP_TO_DAYS else MONTH


def month_range(month: date, start: date, end: date) -> tuple[date, date]:
    """Return the days of `month` that lie within start..end (a month's drill-down)."""
    first = month.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return max(first, start), min(following - timedelta(days=1), end)


def settlement_summary(*, start: date, end: date, by: str = DAY) -> list[SettlementRow]:
    """Sum payments paid from `start` to `end` (local days) per day or month.

    Rows are per period (`by`: DAY or MONTH, in local time), gateway and
    currency. A payment counts on the day it was paid; its refunds (as of
    now) are set against that day, so the figures match a payment export
    filtered on the same paid dates.
    """
    if by not in (DAY, MONTH):
        raise ValueError(f"unknown grouping {by!r}")
    low, high = paid_between(start, end)
    tz = timezone.get_current_timezone()
    trunc = TruncDate if by == DAY else TruncMonth
    grouped = (
        Payment.objects.filter(date_paid__gte=low, date_paid__lt=high)
        .annotate(day=trunc("date_paid", tzinfo=tz))
        .values("day", "payment_gateway", "currency")
        .annotate(
            count=Count("id"), paid=Sum("amount_paid"), refunded=Sum("amount_refunded")
        )
        .order_by("day", "payment_gateway", "currency")
    )
    return [
        SettlementRow(
            day=_as_date(row["day"]),
            gateway=row["payment_gateway"],
            currency=row["currency"],
            count=row["count"],
            paid=row["paid"] or Decimal(0),
            refunded=row["refunded"] or Decimal(0),
            period=by,
        )
        for row in grouped
    ]


def _as_date(value: date | datetime) -> date:
    # TruncMonth of a datetime column gives an aware datetime (local midnight).
    if isinstance(value, datetime):
        return (
            timezone.localtime(value).date()
            if timezone.is_aware(value)
            else value.date()
        )
    return value


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
