"""The dashboard's figures and the sidebar's review badge.

Every query is bounded by a time window or a partial index, so its cost
follows the recent volume, not the size of the table. The 30- and 7-day
figures cover whole local days (TIME_ZONE): days before today are read from
the daily rollups (`services.rollups`) once they are complete, today always
live.
"""

from __future__ import annotations

import functools
import operator
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, DateField, Q, QuerySet, Sum, Value
from django.utils import timezone

from ..models import (
    DailyRollup,
    DeliveryOutcome,
    Payment,
    ReconciliationRun,
    Refund,
    RefundStatus,
    RollupDay,
    RollupFact,
    WebhookDelivery,
)
from ..states import ENDED_UNPAID, PAID_STATUSES, PaymentStatus
from .settlement import paid_between

S = PaymentStatus


# A payment still pending after this long is stuck: someone should look.
STUCK_AFTER = timedelta(hours=48)
# Refunds that gave money back (the dashboard's refund figures).
REFUNDS_DONE = (RefundStatus.SUCCEEDED, RefundStatus.MANUAL)
# A day's rollups are read only when recounted at least this long after the
# day ended: a transaction that stamped a time just before midnight commits a
# moment later, and the hosts' clocks differ a little.
ROLLUP_SETTLE = timedelta(minutes=1)


@dataclass(frozen=True)
class Volume:
    """Money in one currency over a period."""

    currency: str
    amount: Decimal
    count: int


@dataclass(frozen=True)
class GatewayStats:
    """Payments of one gateway created in a period, by status."""

    gateway: str
    by_status: dict[str, int]
    recent_paid: int
    recent_ended: int

    @property
    def success_rate(self) -> float | None:
        """Paid share of the recent payments that ended (None if none ended)."""
        if not self.recent_ended:
            return None
        return self.recent_paid / self.recent_ended


def needs_review_count() -> int:
    """Count payments flagged for review (a partial index)."""
    return Payment.objects.filter(needs_review=True).count()


# The sidebar's badge: (when counted, on time.monotonic(), the count).
_review_badge: tuple[float, int] | None = None


def review_badge_count() -> int:
    """Count payments flagged for review for the sidebar badge, shown on every page.

    Counted at most once every `REVIEW_BADGE_SECONDS` per process (0: on every
    call), and again at once after this process flags or clears a payment
    (`forget_review_badge`). Another process's change shows within that time.
    The dashboard counts live (`needs_review_count`).
    """
    global _review_badge
    now = time.monotonic()
    cached = _review_badge
    if cached is not None and now - cached[0] < settings.REVIEW_BADGE_SECONDS:
        return cached[1]
    count = needs_review_count()
    _review_badge = (now, count)
    return count


def forget_review_badge(**kwargs: Any) -> None:
    """Count the badge afresh on its next use (also a signal receiver)."""
    global _review_badge
    _review_badge = None


def rolled_up_days(*, days: int, now: datetime) -> frozenset[date]:
    """Return the days before today, of the last `days` local days, read from rollups.

    A day qualifies once its rollups were recounted in the current time zone
    at least ROLLUP_SETTLE after it ended (`services.rollups`); every other
    day, and today always, is aggregated live from the payments and refunds.
    """
    today = timezone.localdate(now)
    markers = RollupDay.objects.filter(
        day__gte=today - timedelta(days=days - 1),
        day__lt=today,
        time_zone=timezone.get_current_timezone_name(),
    ).values_list("day", "computed_at")
    return frozenset(
        day for day, at in markers if at >= paid_between(day, day)[1] + ROLLUP_SETTLE
    )


@dataclass(frozen=True)
class _Window:
    """The last `days` local days: which come from rollups, which are read live."""

    dates: list[date]
    rolled_up: list[date]
    live: list[date]

    def live_runs(self) -> list[tuple[datetime, datetime]]:
        """Return the live days as [low, high) bounds, consecutive days merged."""
        runs: list[list[date]] = []
        for day in self.live:
            if runs and runs[-1][1] + timedelta(days=1) == day:
                runs[-1][1] = day
            else:
                runs.append([day, day])
        return [paid_between(first, last) for first, last in runs]

    def live_filter(self, column: str) -> Q:
        """Match rows whose `column` falls on one of the live days."""
        ranges = [
            Q(**{f"{column}__gte": low, f"{column}__lt": high})
            for low, high in self.live_runs()
        ]
        return functools.reduce(operator.or_, ranges)


def _window(*, days: int, now: datetime, rolled_up: frozenset[date] | None) -> _Window:
    if days < 1:
        raise ValueError(f"a window has at least one day, not {days}")
    if rolled_up is None:
        rolled_up = rolled_up_days(days=days, now=now)
    today = timezone.localdate(now)
    dates = [today - timedelta(days=days - 1 - i) for i in range(days)]
    return _Window(
        dates=dates,
        rolled_up=[d for d in dates if d in rolled_up and d < today],
        live=[d for d in dates if d not in rolled_up or d >= today],
    )


def _union(branches: list[QuerySet]) -> QuerySet:
    """Join querysets of the same columns with UNION ALL (one statement)."""
    if len(branches) == 1:
        return branches[0]
    # No ORDER BY: a rollup branch would otherwise bring its model's ordering.
    return branches[0].union(*branches[1:], all=True).order_by()


def paid_volume(
    *, days: int, now: datetime, rolled_up: frozenset[date] | None = None
) -> list[Volume]:
    """Sum what was paid on the last `days` local dates, per currency."""
    return daily_paid_volume(days=days, now=now, rolled_up=rolled_up).totals(days)


@dataclass(frozen=True)
class PaidDays:
    """What was paid each local day of a window, per currency (oldest day first)."""

    dates: list[date]
    amounts: dict[str, list[Decimal]]
    counts: dict[str, list[int]]

    def totals(self, last_days: int) -> list[Volume]:
        """Sum the last `last_days` days per currency, largest first."""
        volumes = [
            Volume(
                currency,
                sum(amounts[-last_days:]),
                sum(self.counts[currency][-last_days:]),
            )
            for currency, amounts in self.amounts.items()
        ]
        return sorted((v for v in volumes if v.count), key=_largest_first)


def daily_paid_volume(
    *, days: int, now: datetime, rolled_up: frozenset[date] | None = None
) -> PaidDays:
    """Return what was paid on each of the last `days` local dates (one statement).

    Days in `rolled_up` (default: `rolled_up_days`) are read from the PAID
    rollups; today and every other day from the paid-volume index, one
    branch per day summing its range per currency, all joined by UNION ALL.
    Grouping a window by the local date of each row instead (TruncDate)
    converts every row's time, which costs more the more rows a day holds.
    """
    window = _window(days=days, now=now, rolled_up=rolled_up)
    branches: list[QuerySet] = []
    if window.rolled_up:
        branches.append(
            DailyRollup.objects.filter(fact=RollupFact.PAID, day__in=window.rolled_up)
            .values("currency", "day")
            .annotate(amount=Sum("amount"), count=Sum("count"))
            .order_by()
        )
    for day in window.live:
        low, high = paid_between(day, day)
        branches.append(
            Payment.objects.filter(date_paid__gte=low, date_paid__lt=high)
            .values("currency")
            .annotate(
                day=Value(day, output_field=DateField()),
                amount=Sum("amount_paid"),
                count=Count("*"),
            )
            .order_by()
        )
    index = {day: i for i, day in enumerate(window.dates)}
    amounts: dict[str, list[Decimal]] = {}
    counts: dict[str, list[int]] = {}
    for row in _union(branches):
        i = index[row["day"]]
        amounts.setdefault(row["currency"], [Decimal(0)] * days)[i] += row["amount"]
        counts.setdefault(row["currency"], [0] * days)[i] += row["count"]
    ordered = sorted(amounts, key=lambda c: (-sum(amounts[c]), c))
    return PaidDays(
        window.dates, {c: amounts[c] for c in ordered}, {c: counts[c] for c in ordered}
    )


def gateway_stats(
    *,
    days: int,
    recent_days: int,
    now: datetime,
    rolled_up: frozenset[date] | None = None,
) -> list[GatewayStats]:
    """Count payments created on the last `days` local dates per gateway and status.

    `recent_*` counts cover only the last `recent_days` of them: the paid
    payments, and all that ended (paid, failed, expired or voided). Past
    days come from the CREATED rollups, today and days not rolled up from
    the created-date index (one statement).
    """
    if not 1 <= recent_days <= days:
        raise ValueError(f"recent_days must be 1..{days}, not {recent_days}")
    window = _window(days=days, now=now, rolled_up=rolled_up)
    recent_first = window.dates[-recent_days]
    recent_low = paid_between(recent_first, recent_first)[0]
    branches: list[QuerySet] = []
    if window.rolled_up:
        branches.append(
            DailyRollup.objects.filter(
                fact=RollupFact.CREATED, day__in=window.rolled_up
            )
            .values("payment_gateway", "status")
            .annotate(
                total=Sum("count"),
                recent=Sum("count", filter=Q(day__gte=recent_first)),
            )
            .order_by()
        )
    branches.append(
        Payment.objects.filter(window.live_filter("date_created"))
        .values("payment_gateway", "status")
        .annotate(
            total=Count("*"),
            recent=Count("date_created", filter=Q(date_created__gte=recent_low)),
        )
        .order_by()
    )
    stats: dict[str, dict] = {}
    for row in _union(branches):
        entry = stats.setdefault(
            row["payment_gateway"], {"by_status": {}, "paid": 0, "ended": 0}
        )
        by_status = entry["by_status"]
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["total"]
        recent = row["recent"] or 0
        if row["status"] in PAID_STATUSES:
            entry["paid"] += recent
            entry["ended"] += recent
        elif row["status"] in ENDED_UNPAID:
            entry["ended"] += recent
    return [
        GatewayStats(code, e["by_status"], e["paid"], e["ended"])
        for code, e in sorted(stats.items())
    ]


def pending_counts(*, now: datetime) -> tuple[int, int]:
    """Count pending payments, and those pending for longer than STUCK_AFTER."""
    pending = Payment.objects.filter(status=S.PENDING)
    return (
        pending.count(),
        pending.filter(date_created__lt=now - STUCK_AFTER).count(),
    )


def refund_volume(
    *, days: int, now: datetime, rolled_up: frozenset[date] | None = None
) -> list[Volume]:
    """Sum refunds completed on the last `days` local dates (gateway and manual).

    Past days come from the REFUNDED rollups, today and days not rolled up
    from the completion-date index (one statement); per currency.
    """
    window = _window(days=days, now=now, rolled_up=rolled_up)
    branches: list[QuerySet] = []
    if window.rolled_up:
        branches.append(
            DailyRollup.objects.filter(
                fact=RollupFact.REFUNDED, day__in=window.rolled_up
            )
            .values("currency")
            .annotate(amount=Sum("amount"), count=Sum("count"))
            .order_by()
        )
    branches.append(
        Refund.objects.filter(window.live_filter("date_completed"))
        .filter(status__in=REFUNDS_DONE)
        .values("currency")
        .annotate(amount=Sum("amount"), count=Count("*"))
        .order_by()
    )
    totals: dict[str, tuple[Decimal, int]] = {}
    for row in _union(branches):
        amount, count = totals.get(row["currency"], (Decimal(0), 0))
        totals[row["currency"]] = (amount + row["amount"], count + row["count"])
    volumes = [Volume(c, amount, count) for c, (amount, count) in totals.items()]
    return sorted(volumes, key=_largest_first)


def _largest_first(volume: Volume) -> tuple[Decimal, str]:
    return (-volume.amount, volume.currency)


def payments_needing_attention(*, now: datetime, limit: int = 10) -> list[Payment]:
    """Return flagged payments and stuck pending ones, newest first.

    Two small indexed queries instead of one OR, which no index serves.
    """
    columns = Payment.objects.select_related("plan").only(
        "ref_id",
        "email",
        "amount",
        "currency",
        "payment_gateway",
        "status",
        "needs_review",
        "review_reason",
        "date_created",
        "plan__name",
    )
    flagged = list(columns.filter(needs_review=True).order_by("-date_created")[:limit])
    stuck = list(
        columns.filter(
            status=S.PENDING, date_created__lt=now - STUCK_AFTER, needs_review=False
        ).order_by("-date_created")[:limit]
    )
    merged = sorted(flagged + stuck, key=lambda p: p.date_created, reverse=True)
    return merged[:limit]


def last_reconciliation_run() -> ReconciliationRun | None:
    """Return the newest finished reconciliation run (walks the primary key back)."""
    return (
        ReconciliationRun.objects.filter(finished_at__isnull=False)
        .order_by("-pk")
        .first()
    )


def failing_deliveries(*, since: datetime) -> QuerySet[WebhookDelivery]:
    """Return webhook deliveries rejected or in error since a moment, newest first."""
    return WebhookDelivery.objects.filter(
        received_at__gte=since,
        outcome__in=(DeliveryOutcome.REJECTED, DeliveryOutcome.ERROR),
    ).order_by("-received_at")


def refunds_awaiting_approval(*, limit: int = 5) -> tuple[int, list[Refund]]:
    """Count refunds awaiting a second person's approval; the oldest `limit` of them.

    Both read the partial index of awaiting refunds (refund_awaiting).
    """
    awaiting = Refund.objects.filter(status=RefundStatus.AWAITING_APPROVAL)
    count = awaiting.count()
    oldest = []
    if count and limit:
        oldest = list(
            awaiting.select_related("payment", "requested_by").order_by(
                "date_created", "id"
            )[:limit]
        )
    return count, oldest
