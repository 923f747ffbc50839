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

from . import selectors, services


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
            "Provider notifications stored, by gateway and outcome (pruning "
            "rejected ones lowers it: alert on webhook_rejected_recent).",
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
        yield from _alerting_metrics(snap)
        health = GaugeMetricFamily(
            "health_check",
            "1 when a /health/ check (database, cache, broker) passes, else 0.",
            labels=["check"],
        )
        for check, result in sorted(services.health_checks().items()):
            health.add_metric([check], 1 if result == "ok" else 0)
        yield health


def _alerting_metrics(snap) -> Iterator[Metric]:
    """Yield the figures docs/prometheus-alerts.yml reads."""
    window = f"{selectors.RECENT_SECONDS // 60} minutes"
    past_expiry = GaugeMetricFamily(
        "payments_pending_past_expiry",
        "Payments still PENDING after their expiry_datetime, by gateway.",
        labels=["gateway"],
    )
    for gateway, count in sorted(snap.pending_past_expiry.items()):
        past_expiry.add_metric([gateway], count)
    yield past_expiry
    refunds = GaugeMetricFamily(
        "refunds", "Refunds by status (every status, 0 included).", labels=["status"]
    )
    for status, count in sorted(snap.refunds_by_status.items()):
        refunds.add_metric([status], count)
    yield refunds
    oldest = GaugeMetricFamily(
        "refunds_open_oldest_age_seconds",
        "Age of the oldest refund not finished yet (pending at the provider, "
        "awaiting approval, ...), by status.",
        labels=["status"],
    )
    for status, age in sorted(snap.refunds_open_oldest_age.items()):
        oldest.add_metric([status], age)
    yield oldest
    rejected = GaugeMetricFamily(
        "webhook_rejected_recent",
        f"Notifications that failed verification in the last {window}, by gateway.",
        labels=["gateway"],
    )
    for gateway, count in sorted(snap.rejected_recent.items()):
        rejected.add_metric([gateway], count)
    yield rejected
    yield GaugeMetricFamily(
        "export_jobs_failed_recent",
        f"Background exports that failed, started in the last {window}.",
        value=snap.exports_failed_recent,
    )
    runs = GaugeMetricFamily(
        "reconciliation_runs_recent",
        f"Reconciliation runs started in the last {window}, by outcome (ok, "
        "errors: finished with provider errors, unfinished: no worker left).",
        labels=["outcome"],
    )
    for outcome, count in sorted(snap.reconciliation_runs_recent.items()):
        runs.add_metric([outcome], count)
    yield runs


def render_metrics() -> bytes:
    """Return every metric in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PaymentsCollector())
    return generate_latest(registry)
