"""Prometheus metrics, read from the database at scrape time.

Every figure comes from the database (`selectors.monitoring_snapshot`), not
from counters kept in a process: any web worker answers a scrape with the
same, complete numbers, and nothing is lost when a worker restarts.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from . import selectors


class PaymentsCollector:
    """Yield the payments back-office metrics from one snapshot of the database."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        snap = selectors.monitoring_snapshot(now=now)
        pending = GaugeMetricFamily(
            "payments_pending",
            "Payments still PENDING, by gateway and age since creation.",
            labels=["gateway", "age"],
        )
        for (gateway, age), count in sorted(snap.pending_by_gateway_age.items()):
            pending.add_metric([gateway, age], count)
        yield pending
        yield GaugeMetricFamily(
            "payments_needing_review",
            "Payments flagged for review (amount mismatch, late payment, ...).",
            value=snap.needing_review,
        )
        yield GaugeMetricFamily(
            "refunds_pending",
            "Refunds sent to a provider and not yet confirmed.",
            value=snap.refunds_pending,
        )
        created = CounterMetricFamily(
            "payments_created",
            "Checkout creations by gateway and the payment's current status "
            "(FAILED right after creation means the provider refused or was down).",
            labels=["gateway", "status"],
        )
        for (gateway, status), count in sorted(snap.payments_by_gateway_status.items()):
            created.add_metric([gateway, status], count)
        yield created
        deliveries = CounterMetricFamily(
            "webhook_deliveries",
            "Provider notifications received, by gateway and outcome.",
            labels=["gateway", "outcome"],
        )
        for key, count in sorted(snap.deliveries_by_gateway_outcome.items()):
            deliveries.add_metric(list(key), count)
        yield deliveries
        silent = GaugeMetricFamily(
            "payments_webhook_silent",
            "1 when a gateway's recent completions (WEBHOOK_SILENCE_MINUTES) were "
            "all learned by polling, none from a provider notification.",
            labels=["gateway"],
        )
        completions = GaugeMetricFamily(
            "payments_recent_completions",
            "Payments completed in the last WEBHOOK_SILENCE_MINUTES, by gateway "
            "and how the completion was learned (notification or polling).",
            labels=["gateway", "via"],
        )
        for item in snap.notifications:
            silent.add_metric([item.gateway], 1 if item.silent else 0)
            completions.add_metric([item.gateway, "notification"], item.by_notification)
            polled = item.completions - item.by_notification
            completions.add_metric([item.gateway, "polling"], polled)
        yield silent
        yield completions
        run = snap.last_reconciliation
        last_success = GaugeMetricFamily(
            "reconciliation_last_success_timestamp_seconds",
            "When the last reconciliation run finished (Unix time; 0: never).",
            value=run.finished_at.timestamp() if run else 0,
        )
        yield last_success
        yield GaugeMetricFamily(
            "reconciliation_last_duration_seconds",
            "How long the last finished reconciliation run took.",
            value=(run.duration_ms or 0) / 1000 if run else 0,
        )
        yield GaugeMetricFamily(
            "reconciliation_last_errors",
            "Provider errors met by the last finished reconciliation run.",
            value=run.errors if run else 0,
        )


def render_metrics() -> bytes:
    """Return every metric in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PaymentsCollector())
    return generate_latest(registry)
