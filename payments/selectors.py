"""Reads for views, the admin and tasks: checkout options, a payment's public
view, the gateways offered, the dashboard's figures.

With `services`, the only modules of `payments` that reach `gateways/`.
Every dashboard query is bounded by a time window or a partial index, so its
cost follows the recent volume, not the size of the table.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, IntegerField, Q, QuerySet, Sum, Value
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.module_loading import import_string

from gateways.base import GatewayConfigError
from gateways.money import to_provider
from gateways.registry import (
    ADAPTERS,
    GatewayInfo,
    gateway_infos,
    get_gateway,
    offered_codes,
)

from .exceptions import GatewayNotConfigured
from .models import (
    DeliveryOutcome,
    PaidVia,
    Payment,
    Plan,
    ReconciliationRun,
    Refund,
    RefundStatus,
    WebhookDelivery,
)
from .states import ENDED_UNPAID, PAID_STATUSES, PaymentStatus

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


def money_text(amount: Decimal | None, currency: str) -> str:
    """Format an amount at its currency's precision, e.g. "10.00 USD"."""
    if amount is None:
        return "-"
    return f"{to_provider(amount, currency)} {currency}"


def payment_public(payment: Payment) -> dict[str, Any]:
    """Return what a customer may see of a payment (no e-mail, no internal ids)."""
    return {
        "ref_id": payment.ref_id,
        "status": payment.status,
        "amount": to_provider(payment.amount, payment.currency),
        "currency": payment.currency,
        "payment_gateway": payment.payment_gateway,
        "payment_url": payment.payment_url,
        "expiry_datetime": _iso(payment.expiry_datetime),
        "date_paid": _iso(payment.date_paid),
        # What the provider captured, and whether a person is checking the
        # payment (e.g. a short payment): nothing should be delivered then.
        "amount_paid": to_provider(payment.amount_paid, payment.currency),
        "under_review": payment.needs_review,
    }


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def checkout_gateways() -> list[GatewayInfo]:
    """Return the gateways a customer can pay with now (configured ones only)."""
    return [info for info in gateway_infos() if info.configured]


def test_mode() -> bool:
    """Say whether checkout offers a pretend gateway (no real money moves)."""
    return any(info.test_mode for info in checkout_gateways())


def gateway_choices() -> list[tuple[str, str]]:
    """Return (code, display name) of every known gateway, for filters."""
    return [(code, import_string(path).display_name) for code, path in ADAPTERS.items()]


UNAVAILABLE = "payment method unavailable"


def gateway_problem(code: str) -> str:
    """Say why a gateway cannot take a payment now, or "" when it can."""
    if code not in offered_codes():
        return f"unknown gateway {code!r}"
    try:
        get_gateway(code)
    except GatewayConfigError:
        # The cause names settings: it is for the operator, never the customer.
        return UNAVAILABLE
    return ""


def gateway_options(code: str) -> list[str] | None:
    """Return the choices a gateway asks for at checkout (coins), None if unusable."""
    try:
        return get_gateway(code).checkout_options()
    except GatewayConfigError:
        return None


def pay_page(payment: Payment) -> tuple[str, dict[str, Any]] | None:
    """Return the template and context of a gateway's own pay page, if it has one.

    Raise GatewayNotConfigured when the payment's gateway is not available.
    """
    from .services import payment_ref

    try:
        gateway = get_gateway(payment.payment_gateway)
    except GatewayConfigError as exc:
        raise GatewayNotConfigured(str(exc)) from exc
    return gateway.pay_page(payment_ref(payment))


def pay_page_script_origins(payment: Payment) -> tuple[str, ...]:
    """Return the origins whose scripts a gateway's pay page loads (for its CSP)."""
    try:
        return get_gateway(payment.payment_gateway).pay_page_script_origins()
    except GatewayConfigError:
        return ()


def sandbox_charge(token: str) -> dict[str, Any] | None:
    """Return the sandbox's pretend charge for a hosted-page token, or None.

    Raise GatewayNotConfigured when the sandbox is not enabled.
    """
    try:
        return get_gateway("sandbox").charge(token)
    except GatewayConfigError as exc:
        raise GatewayNotConfigured(str(exc)) from exc


def sellable_plans() -> list[Plan]:
    """Return the active plans checkout can charge, in catalogue order."""
    return [plan for plan in Plan.objects.filter(active=True) if plan.sellable]


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


# --- monitoring (GET /metrics, GET /health/) --------------------------------------

# Upper bounds (seconds) of the age buckets of pending payments; the last is open.
PENDING_AGE_BUCKETS = ((300, "lt_5m"), (3600, "5m_1h"), (86400, "1h_24h"))
PENDING_AGE_OLDEST = "gt_24h"


@dataclass(frozen=True)
class MonitoringSnapshot:
    """What /metrics reports, read in a handful of index-backed aggregates."""

    pending_by_gateway_age: dict[tuple[str, str], int]
    needing_review: int
    refunds_pending: int
    payments_by_gateway_status: dict[tuple[str, str], int]
    deliveries_by_gateway_outcome: dict[tuple[str, str], int]
    last_reconciliation: ReconciliationRun | None
    notifications: list[GatewayNotifications] = field(default_factory=list)


@dataclass(frozen=True)
class GatewayNotifications:
    """How a gateway's recent completions were learned (webhook silence)."""

    gateway: str
    completions: int
    by_notification: int
    silent: bool

    @property
    def warning(self) -> str:
        return (
            f"{self.gateway}: {self.completions} payments completed in the last "
            f"{settings.WEBHOOK_SILENCE_MINUTES} minutes, none through a provider "
            f"notification; check the webhook set-up at the provider"
        )


def webhook_silence(*, now: datetime | None = None) -> list[GatewayNotifications]:
    """Tell, per gateway, whether its recent completions came with notifications.

    Only payments completed in the last WEBHOOK_SILENCE_MINUTES and learned
    some known way count; abandoned checkouts never complete, so they never
    count. A gateway is silent with at least WEBHOOK_SILENCE_MIN_COMPLETIONS
    completions and none learned from a notification.
    """
    now = now or timezone.now()
    since = now - timedelta(minutes=settings.WEBHOOK_SILENCE_MINUTES)
    rows = (
        Payment.objects.filter(date_paid__gte=since)
        .exclude(paid_via="")
        .order_by()
        .values("payment_gateway")
        .annotate(
            total=Count("id"),
            notified=Count("id", filter=Q(paid_via=PaidVia.NOTIFICATION)),
        )
    )
    minimum = settings.WEBHOOK_SILENCE_MIN_COMPLETIONS
    return [
        GatewayNotifications(
            gateway=row["payment_gateway"],
            completions=row["total"],
            by_notification=row["notified"],
            silent=row["total"] >= minimum and row["notified"] == 0,
        )
        for row in sorted(rows, key=lambda r: r["payment_gateway"])
    ]


def last_successful_reconciliation() -> ReconciliationRun | None:
    """Return the most recent reconciliation run that finished."""
    return (
        ReconciliationRun.objects.filter(finished_at__isnull=False)
        .order_by("-finished_at")
        .first()
    )


def monitoring_snapshot(*, now: datetime | None = None) -> MonitoringSnapshot:
    """Read the operational figures: counts by gateway, status, age and outcome.

    Pending payments and reviews read partial or leading-column indexes; the
    per-gateway totals read covering indexes, never the table's wide rows.
    """
    now = now or timezone.now()
    buckets = {
        label: Count("id", filter=Q(date_created__gt=now - timedelta(seconds=bound)))
        for bound, label in PENDING_AGE_BUCKETS
    }
    pending = {}
    for row in (
        Payment.objects.filter(status=Payment.Status.PENDING)
        .order_by()
        .values("payment_gateway")
        .annotate(total=Count("id"), **buckets)
    ):
        younger = 0
        for _bound, label in PENDING_AGE_BUCKETS:
            pending[(row["payment_gateway"], label)] = row[label] - younger
            younger = row[label]
        pending[(row["payment_gateway"], PENDING_AGE_OLDEST)] = row["total"] - younger
    by_status = {
        (row["payment_gateway"], row["status"]): row["n"]
        for row in Payment.objects.order_by()
        .values("payment_gateway", "status")
        .annotate(n=Count("id"))
    }
    deliveries = {
        (row["gateway"], row["outcome"]): row["n"]
        for row in WebhookDelivery.objects.order_by()
        .values("gateway", "outcome")
        .annotate(n=Count("id"))
    }
    return MonitoringSnapshot(
        pending_by_gateway_age=pending,
        needing_review=Payment.objects.filter(needs_review=True).count(),
        refunds_pending=Refund.objects.filter(status=RefundStatus.PENDING).count(),
        payments_by_gateway_status=by_status,
        deliveries_by_gateway_outcome=deliveries,
        notifications=webhook_silence(now=now),
        last_reconciliation=last_successful_reconciliation(),
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
