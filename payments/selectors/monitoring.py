"""What /metrics and /health/ report: counts by gateway, status, age and outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from ..models import (
    ExportJob,
    ExportStatus,
    PaidVia,
    Payment,
    ReconciliationRun,
    Refund,
    RefundStatus,
    WebhookDelivery,
)

# Upper bounds (seconds) of the age buckets of pending payments; the last is open.
PENDING_AGE_BUCKETS = ((300, "lt_5m"), (3600, "5m_1h"), (86400, "1h_24h"))


PENDING_AGE_OLDEST = "gt_24h"
# The window (seconds) of the "recent" figures alerting rules read: rejected
# deliveries, failed exports and reconciliation runs. Gauges over a window,
# not counters of rows, because pruning and purging delete those rows.
RECENT_SECONDS = 3600
# A run started this long ago and still unfinished has no worker left
# (django-q2 stops a task at Q_CLUSTER["timeout"]).
RUN_GIVEN_UP_SECONDS = 1800


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
    # Alerting figures (docs/prometheus-alerts.yml).
    pending_past_expiry: dict[str, int] = field(default_factory=dict)
    refunds_by_status: dict[str, int] = field(default_factory=dict)
    # Age in seconds of the oldest unfinished refund (no date_completed), by status.
    refunds_open_oldest_age: dict[str, float] = field(default_factory=dict)
    rejected_recent: dict[str, int] = field(default_factory=dict)
    exports_failed_recent: int = 0
    # Runs started in the last RECENT_SECONDS: ok, errors, unfinished (given up).
    reconciliation_runs_recent: dict[str, int] = field(default_factory=dict)


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
        **_alerting_figures(now),
        pending_by_gateway_age=pending,
        needing_review=Payment.objects.filter(needs_review=True).count(),
        refunds_pending=Refund.objects.filter(status=RefundStatus.PENDING).count(),
        payments_by_gateway_status=by_status,
        deliveries_by_gateway_outcome=deliveries,
        notifications=webhook_silence(now=now),
        last_reconciliation=last_successful_reconciliation(),
    )


def _alerting_figures(now: datetime) -> dict:
    """Read what the alerting rules need beyond the dashboard's figures."""
    recent = now - timedelta(seconds=RECENT_SECONDS)
    past_expiry = {
        row["payment_gateway"]: row["n"]
        for row in Payment.objects.filter(
            status=Payment.Status.PENDING, expiry_datetime__lt=now
        )
        .order_by()
        .values("payment_gateway")
        .annotate(n=Count("id"))
    }
    refunds = dict.fromkeys(RefundStatus.values, 0)
    oldest = {}
    for row in (
        Refund.objects.order_by()
        .values("status")
        .annotate(
            n=Count("id"),
            oldest=Min("date_created", filter=Q(date_completed__isnull=True)),
        )
    ):
        refunds[row["status"]] = row["n"]
        if row["oldest"] is not None:
            oldest[row["status"]] = max(0.0, (now - row["oldest"]).total_seconds())
    rejected = {
        row["gateway"]: row["n"]
        for row in WebhookDelivery.objects.filter(
            outcome=WebhookDelivery.Outcome.REJECTED, received_at__gte=recent
        )
        .order_by()
        .values("gateway")
        .annotate(n=Count("id"))
    }
    runs = ReconciliationRun.objects.filter(started_at__gte=recent).aggregate(
        ok=Count("id", filter=Q(finished_at__isnull=False, errors=0)),
        errors=Count("id", filter=Q(finished_at__isnull=False, errors__gt=0)),
        unfinished=Count(
            "id",
            filter=Q(
                finished_at__isnull=True,
                started_at__lt=now - timedelta(seconds=RUN_GIVEN_UP_SECONDS),
            ),
        ),
    )
    return {
        "pending_past_expiry": past_expiry,
        "refunds_by_status": refunds,
        "refunds_open_oldest_age": oldest,
        "rejected_recent": rejected,
        "exports_failed_recent": ExportJob.objects.filter(
            status=ExportStatus.FAILED, created_at__gte=recent
        ).count(),
        "reconciliation_runs_recent": runs,
    }
