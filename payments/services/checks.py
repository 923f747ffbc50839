"""The check schedule of pending payments: when the janitor asks a provider next.

Only scheduled checks (reconciliation and expiry) count here: each one
records when it ran and backs the next one off. Customer-facing refreshes
(status API, return page) are throttled on `last_refreshed_at` alone and
never touch `check_attempts` or `next_check_at`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Q

from .. import clock
from ..models import Payment
from ..states import PaymentStatus

# Wait before the n-th consecutive check of a pending payment (then the last).
CHECK_BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=2),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=6),
)


def next_check_delay(attempts: int) -> timedelta:
    """Return the wait after `attempts` consecutive checks."""
    return CHECK_BACKOFF[min(attempts, len(CHECK_BACKOFF) - 1)]


def first_check_at(now: datetime) -> datetime:
    """Return when a new payment is first checked."""
    return now + CHECK_BACKOFF[0]


def check_updates(payment: Payment, *, checked_at: datetime) -> dict[str, Any]:
    """Return the fields that record one scheduled check of a payment.

    The next check is backed off while the payment stays pending; a payment
    that leaves PENDING in the same change has its next check cleared by the
    transition itself.
    """
    attempts = payment.check_attempts + 1
    return {
        "last_checked_at": checked_at,
        "check_attempts": attempts,
        "next_check_at": checked_at + next_check_delay(attempts),
    }


def payments_record_checks(*, payments: Iterable[Payment], checked_at: datetime) -> int:
    """Record a check that changed nothing, for many pending payments at once.

    One UPDATE per back-off step instead of one per payment; only rows still
    PENDING are touched.
    """
    by_attempts: dict[int, list[int]] = defaultdict(list)
    for payment in payments:
        by_attempts[payment.check_attempts + 1].append(payment.pk)
    written = 0
    for attempts, ids in by_attempts.items():
        written += Payment.objects.filter(
            pk__in=ids, status=PaymentStatus.PENDING
        ).update(
            last_checked_at=checked_at,
            check_attempts=F("check_attempts") + 1,
            next_check_at=checked_at + next_check_delay(attempts),
        )
    return written


def payment_claim_refresh(*, payment: Payment, min_age_seconds: int) -> bool:
    """Claim a customer-facing refresh of a payment; False if one ran too recently.

    A conditional UPDATE of `last_refreshed_at` makes the throttle hold across
    workers: of several concurrent status requests only one reaches the
    provider. The janitor's schedule is left alone.
    """
    now = clock.now()
    cutoff = now - timedelta(seconds=min_age_seconds)
    claimed = (
        Payment.objects.filter(pk=payment.pk)
        .filter(Q(last_refreshed_at__isnull=True) | Q(last_refreshed_at__lt=cutoff))
        .update(last_refreshed_at=now)
    )
    return claimed == 1
