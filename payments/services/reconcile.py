"""The janitor: settle pending payments with their providers, expire overdue ones.

A cycle claims the due payments (row locks, SKIP LOCKED on PostgreSQL, a
lease in `next_check_at`), asks each provider in batches on one bounded
thread pool, and applies answers while later batches are still in flight:
changed payments in one transaction per group (rows locked together, events
in one INSERT), unchanged ones with one UPDATE per back-off step. A provider
outage or a bad batch is recorded and backs those payments off; it never
stops the rest of the cycle. Every cycle is a `ReconciliationRun`.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from gateways.base import GatewayError, StatusResult
from gateways.registry import get_gateway

from .. import clock
from ..exceptions import GatewayNotConfigured
from ..models import Payment, ReconciliationRun
from ..selectors import payment_ref
from ..states import PaymentStatus
from .checks import payments_record_checks
from .status import (
    DECLINED_KEY,
    EXPIRY_ACTOR,
    SETTLING,
    payment_refresh,
    report_change,
)
from .transitions import Actor, Change, logger, payments_change
from .webhook_batches import webhooks_apply_received

S = PaymentStatus
RECONCILE_ACTOR = Actor("reconcile")
# Claimed payments are not due again before this, so a second cluster skips
# them; a crashed run's claims lapse after it.
CLAIM_LEASE = timedelta(minutes=5)
# A stored notification still waiting after this was lost by its task.
LOST_WEBHOOK_SECONDS = 10
# Changed payments written per transaction; unchanged ones per back-off write.
APPLY_GROUP = 50
BACKOFF_GROUP = 500
# Payments claimed per transaction: provider calls start after the first one.
CLAIM_CHUNK = 500
# What a provider check reads of a claimed payment (see selectors.payment_ref).
CLAIM_FIELDS = (
    "ref_id",
    "payment_gateway",
    "status",
    "amount",
    "currency",
    "gateway_transaction_id",
    "gateway_session_id",
    "gateway_data",
    "crypto_amount",
    "crypto_currency",
    "date_created",
    "expiry_datetime",
    "check_attempts",
    "next_check_at",
)

Progress = Callable[[int], None]


@dataclass
class Tally:
    """What one cycle did, written to its ReconciliationRun."""

    checked: int = 0
    changed: int = 0
    expired: int = 0
    errors: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)


def reconciliation_start(*, trigger: str) -> ReconciliationRun:
    """Record a run that is about to be queued or run."""
    return ReconciliationRun.objects.create(trigger=trigger[:32])


def reconcile_cycle(
    *,
    run_id: int | None = None,
    trigger: str = "schedule",
    limit: int = 20000,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> ReconciliationRun:
    """Run one reconciliation cycle: settle due payments, then expire overdue ones.

    `progress` is called with the number of payments settled so far (for the
    foreground command's progress bar).
    """
    started = time.monotonic()
    run = ReconciliationRun.objects.filter(pk=run_id).first() if run_id else None
    run = run or reconciliation_start(trigger=trigger)
    now = now or clock.now()
    tally = Tally()
    _settle(now, limit, tally, progress or (lambda _done: None))
    tally.expired = payment_expire_overdue(now=now)
    # Notifications stored for a batch task that never ran (WEBHOOK_APPLY=queued).
    webhooks_apply_received(min_age_seconds=LOST_WEBHOOK_SECONDS)
    ReconciliationRun.objects.filter(pk=run.pk).update(
        finished_at=clock.now(),
        checked=tally.checked,
        changed=tally.changed,
        expired=tally.expired,
        errors=tally.errors,
        duration_ms=int((time.monotonic() - started) * 1000),
        message="\n".join(tally.problems)[:4000],
    )
    run.refresh_from_db()
    logger.info(
        "reconciliation %s: checked %s, changed %s, expired %s, errors %s",
        run.pk,
        run.checked,
        run.changed,
        run.expired,
        run.errors,
    )
    return run


def _due(now: datetime):
    return Payment.objects.filter(status=S.PENDING).filter(
        Q(next_check_at__isnull=True) | Q(next_check_at__lte=now)
    )


def due_count(*, now: datetime | None = None) -> int:
    """Count pending payments due for a check now."""
    return _due(now or clock.now()).count()


def claim_due(*, now: datetime, limit: int) -> list[Payment]:
    """Claim pending payments due for a check (locked rows are skipped).

    Only the columns a provider check needs are read.
    """
    with transaction.atomic():
        due = list(
            _due(now)
            .select_for_update(skip_locked=True)
            .only(*CLAIM_FIELDS)
            .order_by(F("next_check_at").asc(nulls_first=True), "pk")[:limit]
        )
        Payment.objects.filter(pk__in=[p.pk for p in due]).update(
            next_check_at=now + CLAIM_LEASE
        )
    return due


def _settle(now, limit: int, tally: Tally, progress: Progress) -> None:
    """Claim due payments in chunks, ask providers, apply answers as they arrive.

    Each claimed chunk's batches go to the pool at once, so provider calls
    start after the first chunk's claim, not after the whole claim. Finished
    batches come back through a queue (no per-call wait on every future).
    """
    finished: queue.SimpleQueue = queue.SimpleQueue()
    applier = _Applier(now, tally)
    batcher = _Batcher(tally, now)
    submitted = 0
    workers = max(1, settings.RECONCILE_CONCURRENCY)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rec") as pool:

        def submit(code: str, batch: list[Payment]) -> None:
            future = pool.submit(_ask, code, batch)
            future.add_done_callback(lambda f: finished.put((code, batch, f)))

        while tally.checked < limit:
            chunk = claim_due(now=now, limit=min(CLAIM_CHUNK, limit - tally.checked))
            tally.checked += len(chunk)
            for code, batch in batcher.full_batches(chunk, last=False):
                submit(code, batch)
                submitted += 1
            applier.drain(finished, progress, wait=False)
            if len(chunk) < CLAIM_CHUNK:
                break
        for code, batch in batcher.full_batches([], last=True):
            submit(code, batch)
            submitted += 1
        while applier.taken < submitted:
            applier.drain(finished, progress, wait=True)
    applier.flush(final=True)
    progress(applier.settled)


class _Batcher:
    """Group claimed payments into full provider batches; hold back the rest."""

    def __init__(self, tally: Tally, now):
        self.tally, self.now = tally, now
        self.waiting: dict[str, list[Payment]] = {}
        self.sizes: dict[str, int] = {}

    def full_batches(self, payments: list[Payment], *, last: bool):
        for payment in payments:
            code = payment.payment_gateway
            if code not in self.sizes:
                self.sizes[code] = self._size(code)
            if self.sizes[code]:
                self.waiting.setdefault(code, []).append(payment)
            else:  # nobody can ask this provider: back it off
                self.tally.errors += 1
                payments_record_checks(payments=[payment], checked_at=self.now)
        for code, queued in self.waiting.items():
            size = self.sizes[code]
            while len(queued) >= size or (last and queued):
                yield code, queued[:size]
                del queued[:size]

    def _size(self, code: str) -> int:
        try:
            return max(get_gateway(code).batch_size, 1)
        except GatewayError as exc:  # not configured any more
            self.tally.problem(f"{code}: {exc}")
            return 0


def _ask(code: str, batch: list[Payment]) -> tuple[dict[str, StatusResult], str]:
    """Fetch one batch's statuses (in a pool thread: no database here)."""
    try:
        return get_gateway(code).fetch_status_many([payment_ref(p) for p in batch]), ""
    except GatewayError as exc:
        logger.warning("%s status batch failed: %s", code, exc)
        return {}, f"{code}: {exc}"


class _Applier:
    """Collect provider answers and write them in groups, in the calling thread."""

    def __init__(self, now, tally: Tally):
        self.now, self.tally = now, tally
        self.changed: dict[int, StatusResult] = {}
        self.unchanged: list[Payment] = []
        self.settled = self.taken = 0

    def drain(self, finished: queue.SimpleQueue, progress: Progress, *, wait: bool):
        """Take every finished batch (waiting for one if asked), then write."""
        try:
            item = finished.get() if wait else finished.get_nowait()
            while True:
                code, batch, future = item
                self.take(code, batch, *future.result())
                item = finished.get_nowait()
        except queue.Empty:
            pass
        self.flush(final=False)
        progress(self.settled)

    def take(self, code: str, batch: list[Payment], results, error: str) -> None:
        self.taken += 1
        if error:
            self.tally.problem(error)
        for payment in batch:
            result = results.get(payment.ref_id)
            if result is None:
                self.tally.errors += 1
                self.unchanged.append(payment)
            elif (
                result.status not in (None, payment.status)
                or result.settling != (SETTLING in payment.gateway_data)
                or _has_news(payment, result)
            ):
                self.changed[payment.pk] = result
            else:
                self.unchanged.append(payment)

    def flush(self, *, final: bool) -> None:
        if len(self.changed) >= APPLY_GROUP or (final and self.changed):
            self._apply_changed()
        if len(self.unchanged) >= BACKOFF_GROUP or (final and self.unchanged):
            payments_record_checks(payments=self.unchanged, checked_at=self.now)
            self.settled += len(self.unchanged)
            self.unchanged = []

    def _apply_changed(self) -> None:
        decisions = {pk: self._decide(result) for pk, result in self.changed.items()}
        done = payments_change(decisions=decisions, actor=RECONCILE_ACTOR)
        self.tally.changed += sum(c.changed or c.flagged for c in done.values())
        self.settled += len(self.changed)
        self.changed = {}

    def _decide(self, result: StatusResult) -> Callable[[Payment], Change]:
        def decide(payment: Payment) -> Change:
            if payment.status != S.PENDING:
                return Change()  # settled meanwhile (a webhook): nothing to do
            return report_change(payment, result, checked_at=self.now)

        return decide


def _has_news(payment: Payment, result: StatusResult) -> bool:
    """Tell whether an unchanged status still brings something for the timeline."""
    seen = payment.gateway_data.get(DECLINED_KEY) or []
    new_review = bool(result.review) and result.review not in payment.review_reason
    return new_review or any(a not in seen for a in result.declined)


def payment_expire_overdue(*, now: datetime | None = None, limit: int = 500) -> int:
    """Expire pending payments past their expiry, after one last provider check.

    The least recently checked go first, so payments whose provider cannot be
    reached (they stay pending) never starve the others. A payment whose
    provider holds money not settled yet (SETTLING, as the last check found)
    never expires: the reconciler keeps asking, with back-off, until the
    provider completes or ends it.
    """
    now = now or clock.now()
    overdue = list(
        Payment.objects.filter(status=S.PENDING, expiry_datetime__lt=now)
        .exclude(gateway_data__has_key=SETTLING)
        .order_by(F("last_checked_at").asc(nulls_first=True), "expiry_datetime")[:limit]
    )
    expired = 0
    for payment in overdue:
        try:
            applied = payment_refresh(
                payment=payment, actor=EXPIRY_ACTOR, scheduled=True
            )
        except GatewayNotConfigured:
            applied = None
        if applied is None:
            continue  # provider unreachable: keep it pending, try again later
        if applied.payment.status == S.PENDING:
            applied = payments_change(
                decisions={payment.pk: _expire}, actor=EXPIRY_ACTOR
            )[payment.pk]
        expired += applied.payment.status == S.EXPIRED
    return expired


def _expire(payment: Payment) -> Change:
    if payment.status != S.PENDING or SETTLING in payment.gateway_data:
        return Change()
    reason = "payment window ended without payment"
    return Change(status=S.EXPIRED, updates={"failure_reason": reason}, message=reason)
