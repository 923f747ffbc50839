"""django-q2 tasks: reconcile with the providers, expire overdue payments.

Tasks take ids, are safe to run twice and safe to run on two clusters at
once: due payments are claimed under row locks (SKIP LOCKED on PostgreSQL)
by pushing their next check into the future before any provider is called.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from gateways.base import GatewayError, StatusResult
from gateways.registry import get_gateway

from . import services
from .models import Payment, ReconciliationRun, Refund, RefundStatus
from .states import PaymentStatus

logger = logging.getLogger("payments.tasks")
CLAIM_LEASE = timedelta(minutes=5)


def enqueue_reconciliation(*, trigger: str) -> ReconciliationRun:
    """Record a run and queue it once the record is committed."""
    run = ReconciliationRun.objects.create(trigger=trigger)
    transaction.on_commit(
        lambda: async_task(
            "payments.tasks.reconcile_pending", run.pk, task_name=f"reconcile-{run.pk}"
        )
    )
    return run


def _claim_due(now, limit: int) -> list[Payment]:
    with transaction.atomic():
        due = list(
            Payment.objects.select_for_update(skip_locked=True)
            .filter(status=PaymentStatus.PENDING)
            .filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
            .order_by(F("next_check_at").asc(nulls_first=True))[:limit]
        )
        Payment.objects.filter(pk__in=[p.pk for p in due]).update(
            next_check_at=now + CLAIM_LEASE
        )
    return due


def _fetch(code: str, payments: list[Payment]) -> tuple[dict[str, StatusResult], int]:
    """Ask one provider about many payments, in batches on a bounded pool."""
    gateway = get_gateway(code)
    refs = [services.payment_ref(p) for p in payments]
    size = max(gateway.batch_size, 1)
    batches = [refs[i : i + size] for i in range(0, len(refs), size)]
    results: dict[str, StatusResult] = {}
    errors = 0

    def one(batch):
        try:
            return gateway.fetch_status_many(batch), 0
        except GatewayError as exc:
            logger.warning("%s status batch failed: %s", code, exc)
            return {}, len(batch)

    workers = max(1, min(settings.RECONCILE_CONCURRENCY, len(batches)))
    with ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=f"rec-{code}"
    ) as pool:
        for found, failed in pool.map(one, batches):
            results.update(found)
            errors += failed
    return results, errors


def reconcile_pending(run_id: int | None = None, limit: int = 20000) -> dict:
    """Check due pending payments with their providers; apply what changed."""
    started = time.monotonic()
    run = ReconciliationRun.objects.filter(pk=run_id).first() if run_id else None
    if run is None:
        run = ReconciliationRun.objects.create(trigger="schedule")
    now = timezone.now()
    due = _claim_due(now, limit)
    by_gateway: dict[str, list[Payment]] = defaultdict(list)
    for payment in due:
        by_gateway[payment.payment_gateway].append(payment)
    changed = errors = 0
    unchanged: dict[int, list[int]] = defaultdict(list)  # attempts -> ids
    actor = services.Actor("reconcile")
    for code, payments in by_gateway.items():
        try:
            results, failed = _fetch(code, payments)
        except GatewayError as exc:  # not configured any more
            logger.warning("cannot reconcile %s: %s", code, exc)
            results, failed = {}, len(payments)
        errors += failed
        for payment in payments:
            result = results.get(payment.ref_id)
            if result is not None and result.status != payment.status:
                applied = services.payment_apply_result(
                    payment_id=payment.pk, result=result, actor=actor, now=now
                )
                changed += applied.changed or applied.flagged
            else:
                unchanged[payment.check_attempts + 1].append(payment.pk)
    for attempts, ids in unchanged.items():
        # One UPDATE per backoff step instead of one per payment.
        Payment.objects.filter(pk__in=ids, status=PaymentStatus.PENDING).update(
            last_checked_at=now,
            check_attempts=F("check_attempts") + 1,
            next_check_at=now + services.next_check_delay(attempts),
        )
    ReconciliationRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(),
        checked=len(due),
        changed=changed,
        errors=errors,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    summary = {"run": run.pk, "checked": len(due), "changed": changed, "errors": errors}
    logger.info("reconciliation %s", summary)
    return summary


def expire_overdue() -> int:
    """Expire pending payments whose window has ended (checked first)."""
    return services.payment_expire_overdue()


def reconcile_refunds(min_age_seconds: int = 60) -> int:
    """Resolve refunds left pending by a lost provider answer."""
    cutoff = timezone.now() - timedelta(seconds=min_age_seconds)
    pending = Refund.objects.filter(
        status=RefundStatus.PENDING, date_created__lt=cutoff
    )
    done = 0
    for refund_id in pending.values_list("pk", flat=True)[:1000]:
        refund = services.refund_submit(
            refund_id=refund_id, actor=services.Actor("reconcile")
        )
        done += refund.status != RefundStatus.PENDING
    return done


# The only functions a django-q2 Schedule may name (see services.schedules):
# the cluster imports and runs whatever dotted path a schedule holds.
SCHEDULABLE_TASKS = (reconcile_pending, reconcile_refunds, expire_overdue)
