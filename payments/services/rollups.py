"""Daily rollups of the dashboard's figures, recounted a whole day at a time.

Nothing here runs when a payment or a refund changes (no hot row to update in
a status change or a webhook): a scheduled task recounts the last
ROLLUP_WINDOW_DAYS local days every few minutes, since days keep changing
after they end (late payments, refunds, voids), and `manage.py
rebuild_rollups` recounts any range. The dashboard reads today live
(`selectors.dashboard`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Sum
from django.utils import timezone

from ..models import DailyRollup, Payment, Refund, RollupDay, RollupFact
from ..selectors import REFUNDS_DONE, paid_between


@dataclass(frozen=True)
class RollupRun:
    """What a recount did: the days recounted and the rollup rows they hold."""

    first: date
    last: date
    days: int
    rows: int


def rollup_recount(*, day: date) -> int:
    """Recount one local day's rollups and replace its rows; return their number.

    One transaction, under a lock on the day's `RollupDay` row: a second
    recount of the same day (another cluster) waits, then counts afresh, so
    the unique key never sees a duplicate and newer figures are never
    overwritten by older ones. On SQLite the IMMEDIATE transaction serialises
    writers instead (`select_for_update` is a no-op there).
    """
    zone = timezone.get_current_timezone_name()
    low, high = paid_between(day, day)
    with transaction.atomic():
        RollupDay.objects.bulk_create(
            [RollupDay(day=day, computed_at=timezone.now(), time_zone=zone)],
            ignore_conflicts=True,
        )
        marker = RollupDay.objects.select_for_update().get(day=day)
        # Taken once the lock is held and before counting: whatever was
        # committed before this moment is in the counts below.
        computed_at = timezone.now()
        rows = _day_rows(day, low, high)
        DailyRollup.objects.filter(day=day).delete()
        DailyRollup.objects.bulk_create(rows)
        RollupDay.objects.filter(pk=marker.pk).update(
            computed_at=computed_at, time_zone=zone
        )
    return len(rows)


def rollups_rebuild(
    *, first: date, last: date, progress: Callable[[int], None] | None = None
) -> RollupRun:
    """Recount the local days `first` to `last` (both included), oldest first.

    Each day is its own transaction; `progress` is called with the number of
    days done so far (for the command's progress bar).
    """
    if first > last:
        raise ValueError(f"the first day {first} is after the last day {last}")
    days = (last - first).days + 1
    rows = 0
    for done in range(days):
        rows += rollup_recount(day=first + timedelta(days=done))
        if progress is not None:
            progress(done + 1)
    return RollupRun(first=first, last=last, days=days, rows=rows)


def rollups_window(*, now: datetime | None = None) -> tuple[date, date]:
    """Return the days the scheduled recount covers: ROLLUP_WINDOW_DAYS to today."""
    today = timezone.localdate(now)
    return today - timedelta(days=settings.ROLLUP_WINDOW_DAYS - 1), today


def rollups_refresh(*, now: datetime | None = None) -> RollupRun:
    """Recount the last ROLLUP_WINDOW_DAYS local days, today included."""
    first, last = rollups_window(now=now)
    return rollups_rebuild(first=first, last=last)


def _day_rows(day: date, low: datetime, high: datetime) -> list[DailyRollup]:
    paid = (
        Payment.objects.filter(date_paid__gte=low, date_paid__lt=high)
        .values("payment_gateway", "currency")
        .annotate(amount=Sum("amount_paid"), count=Count("*"))
        .order_by()
    )
    created = (
        Payment.objects.filter(date_created__gte=low, date_created__lt=high)
        .values("payment_gateway", "currency", "status")
        .annotate(amount=Sum("amount"), count=Count("*"))
        .order_by()
    )
    refunded = (
        Refund.objects.filter(
            date_completed__gte=low, date_completed__lt=high, status__in=REFUNDS_DONE
        )
        .values("currency", payment_gateway=F("payment__payment_gateway"))
        .annotate(amount=Sum("amount"), count=Count("*"))
        .order_by()
    )
    return [
        DailyRollup(
            fact=fact,
            day=day,
            payment_gateway=row["payment_gateway"],
            currency=row["currency"],
            status=row.get("status", ""),
            count=row["count"],
            amount=row["amount"],
        )
        for fact, rows in (
            (RollupFact.PAID, paid),
            (RollupFact.CREATED, created),
            (RollupFact.REFUNDED, refunded),
        )
        for row in rows
    ]
