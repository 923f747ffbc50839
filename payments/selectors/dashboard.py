"""The dashboard's figures and the sidebar's review badge.

Every query is bounded by a time window or a partial index, so its cost
follows the recent volume, not the size of the table.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, IntegerField, Q, QuerySet, Sum, Value
from django.utils import timezone

from ..models import (
    DeliveryOutcome,
    Payment,
    ReconciliationRun,
    Refund,
    RefundStatus,
    WebhookDelivery,
)
from ..states import ENDED_UNPAID, PAID_STATUSES, PaymentStatus

S = PaymentStatus


# A payment still pending after this long is stuck: someone should look.
STUCK_AFTER = timedelta(hours=48)


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


def paid_volume(*, since: datetime) -> list[Volume]:
    """Sum what was paid since a moment, per currency."""
    rows = (
        Payment.objects.filter(date_paid__gte=since)
        .values("currency")
        .annotate(amount=Sum("amount_paid"), count=Count("*"))
        .order_by("-amount")
    )
    return [Volume(r["currency"], r["amount"], r["count"]) for r in rows]


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
        return sorted((v for v in volumes if v.count), key=lambda v: -v.amount)


def daily_paid_volume(*, days: int, now: datetime) -> PaidDays:
    """Return what was paid on each of the last `days` local dates (one statement).

    One branch per local day, joined by UNION ALL: each sums a range of the
    paid-volume index per currency. Grouping the whole window by the local
    date of each row instead (TruncDate) converts every row's time, which
    took 2.3× as long on PostgreSQL at 1 M payments (docs/benchmarks.md).
    """
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    dates = [first + timedelta(days=i) for i in range(days)]
    bounds = [
        timezone.make_aware(datetime.combine(day, dt_time.min))
        for day in [*dates, today + timedelta(days=1)]
    ]
    branches = [
        Payment.objects.filter(date_paid__gte=low, date_paid__lt=high)
        .values("currency")
        .annotate(
            day=Value(index, output_field=IntegerField()),
            amount=Sum("amount_paid"),
            count=Count("*"),
        )
        .order_by()
        for index, (low, high) in enumerate(itertools.pairwise(bounds))
    ]
    rows = branches[0].union(*branches[1:], all=True).order_by()
    amounts: dict[str, list[Decimal]] = {}
    counts: dict[str, list[int]] = {}
    for row in rows:
        index = row["day"]
        amounts.setdefault(row["currency"], [Decimal(0)] * days)[index] += row["amount"]
        counts.setdefault(row["currency"], [0] * days)[index] += row["count"]
    ordered = sorted(amounts, key=lambda currency: -sum(amounts[currency]))
    return PaidDays(
        dates, {c: amounts[c] for c in ordered}, {c: counts[c] for c in ordered}
    )


def gateway_stats(*, since: datetime, recent_since: datetime) -> list[GatewayStats]:
    """Count payments per gateway and status since a moment (one index scan).

    `recent_*` counts cover only payments created since `recent_since`: the
    paid ones, and all that ended (paid, failed or expired).
    """
    recent = Q(date_created__gte=recent_since)
    rows = (
        Payment.objects.filter(date_created__gte=since)
        .values("payment_gateway", "status")
        .annotate(total=Count("*"), recent=Count("date_created", filter=recent))
        .order_by()
    )
    stats: dict[str, dict] = {}
    for row in rows:
        entry = stats.setdefault(
            row["payment_gateway"], {"by_status": {}, "paid": 0, "ended": 0}
        )
        entry["by_status"][row["status"]] = row["total"]
        if row["status"] in PAID_STATUSES:
            entry["paid"] += row["recent"]
            entry["ended"] += row["recent"]
        elif row["status"] in ENDED_UNPAID:
            entry["ended"] += row["recent"]
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


def refund_volume(*, since: datetime) -> list[Volume]:
    """Sum refunds completed since a moment (gateway and manual), per currency."""
    rows = (
        Refund.objects.filter(
            date_completed__gte=since,
            status__in=(RefundStatus.SUCCEEDED, RefundStatus.MANUAL),
        )
        .values("currency")
        .annotate(amount=Sum("amount"), count=Count("*"))
        .order_by("-amount")
    )
    return [Volume(r["currency"], r["amount"], r["count"]) for r in rows]


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
