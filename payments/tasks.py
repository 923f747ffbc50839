"""django-q2 tasks: thin wrappers, ids in, one service call each.

Tasks are safe to run twice and on two clusters at once: the services claim
due payments under row locks (SKIP LOCKED on PostgreSQL), every change is
guarded by the transition table, and a day's rollups are recounted under a
lock on that day.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django_q.tasks import async_task

from . import services
from .models import ExportJob, ReconciliationRun
from .services import exports
from .services.webhook_batches import APPLY_LINGER_SECONDS


def enqueue_reconciliation(*, trigger: str) -> ReconciliationRun:
    """Record a run and queue it once the record is committed."""
    run = services.reconciliation_start(trigger=trigger)
    transaction.on_commit(
        lambda: async_task(
            "payments.tasks.reconcile_pending", run.pk, task_name=f"reconcile-{run.pk}"
        )
    )
    return run


def reconcile_pending(run_id: int | None = None, limit: int = 20000) -> dict:
    """Run one reconciliation cycle (the run row is created when not given)."""
    run = services.reconcile_cycle(run_id=run_id, limit=limit)
    return {
        "run": run.pk,
        "checked": run.checked,
        "changed": run.changed,
        "expired": run.expired,
        "errors": run.errors,
    }


def expire_overdue() -> int:
    """Expire pending payments whose window has ended (checked first)."""
    return services.payment_expire_overdue()


def reconcile_refunds(min_age_seconds: int = 60) -> int:
    """Resolve refunds left pending by a lost provider answer."""
    return services.refunds_retry_pending(
        min_age_seconds=min_age_seconds, actor=services.Actor("reconcile")
    )


def lapse_refund_approvals() -> int:
    """Lapse refunds nobody approved within REFUND_APPROVAL_HOURS."""
    return len(services.refunds_lapse_overdue())


def apply_webhooks() -> int:
    """Apply stored notifications (WEBHOOK_APPLY=queued), many per transaction."""
    return services.webhooks_apply_received(linger=APPLY_LINGER_SECONDS)


EXPORT_TASK_TIMEOUT = 3600


def enqueue_export(*, user, filters: str, fmt: str) -> ExportJob:
    """Record an export job and queue it once the record is committed."""
    job = exports.export_job_create(user=user, filters=filters, fmt=fmt)
    # Its own timeout: a large XLSX on SQLite may outlast the cluster's 300 s.
    # A redelivery after Q_CLUSTER["retry"] finds the job claimed and stops.
    transaction.on_commit(
        lambda: async_task(
            "payments.tasks.run_export",
            job.pk,
            task_name=f"export-{job.pk}",
            timeout=EXPORT_TASK_TIMEOUT,
        )
    )
    return job


def run_export(job_id: int) -> dict:
    """Write an export job's file (a second delivery finds it claimed)."""
    job = exports.export_job_run(job_id=job_id)
    return {"job": job.pk, "status": job.status, "rows": job.row_count}


def purge_exports() -> int:
    """Delete export files past EXPORT_RETENTION_DAYS; end exports whose worker died.

    The cluster stops a task at EXPORT_TASK_TIMEOUT: a job still RUNNING ten
    minutes after that has no worker left.
    """
    return exports.exports_purge_expired(
        stale_after=timedelta(seconds=EXPORT_TASK_TIMEOUT + 600)
    )


def refresh_rollups() -> dict:
    """Recount the dashboard's rollups of the last ROLLUP_WINDOW_DAYS local days."""
    run = services.rollups_refresh()
    return {
        "first": run.first.isoformat(),
        "last": run.last.isoformat(),
        "days": run.days,
        "rows": run.rows,
    }


def prune_audit_log() -> dict:
    """Delete audit entries past AUDIT_RETENTION_DAYS, anchoring the chain."""
    from audit.chain import prune

    pruned = prune()
    return {
        "removed": pruned.removed,
        "anchor": pruned.anchor.seq if pruned.anchor else None,
    }


def prune_rejected_deliveries() -> int:
    """Delete deliveries that failed verification, past their retention."""
    return services.webhooks_prune_rejected(
        older_than_days=settings.REJECTED_DELIVERY_RETENTION_DAYS
    )


# The only functions a django-q2 Schedule may name: the cluster imports and
# runs whatever dotted path a schedule holds. Given to services.schedules by
# its callers (the schedule admin and the model-level guard in apps.py).
SCHEDULABLE_TASKS = (
    reconcile_pending,
    reconcile_refunds,
    expire_overdue,
    purge_exports,
    refresh_rollups,
    prune_audit_log,
    prune_rejected_deliveries,
    lapse_refund_approvals,
)
