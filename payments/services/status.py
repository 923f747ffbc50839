"""Applying what providers report, and asking them (refresh, expiry)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from gateways.base import (
    GatewayConfigError,
    GatewayError,
    PaymentRef,
    StatusResult,
)
from gateways.money import quantize
from gateways.registry import get_gateway

from ..models import (
    EventKind,
    Payment,
    PaymentEvent,
)
from ..states import LATE_COMPLETION, PAID_STATUSES
from .core import (
    ZERO,
    Actor,
    S,
    _event,
    _flag,
    _lock,
    _money,
    _move,
    logger,
)

# Wait before the n-th consecutive check of a pending payment (then the last).
CHECK_BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=2),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=6),
)

REFRESH_ACTOR = Actor("refresh")


@dataclass(frozen=True)
class Applied:
    payment: Payment
    changed: bool
    flagged: bool
    ignored: bool


def _amount_problem(payment: Payment, result: StatusResult) -> str:
    if result.currency and result.currency.upper() != payment.currency.upper():
        return (
            f"currency mismatch: provider reported {result.currency}, "
            f"payment is in {payment.currency}"
        )
    if result.amount is None:
        return "provider reported success without an amount"
    paid = quantize(result.amount, payment.currency)
    due = quantize(payment.amount, payment.currency)
    if paid < due:
        return f"underpaid: provider reported {paid} of {due} {payment.currency}"
    return ""


def payment_apply_status(
    *,
    payment_id: int,
    result: StatusResult,
    actor: Actor,
    kind: str = EventKind.REFRESH,
    data: Mapping[str, Any] | None = None,
    checked_at=None,
) -> Applied:
    """Apply a provider's report to a payment, never moving it backwards.

    COMPLETED needs the reported amount and currency to cover the payment; a
    mismatch leaves the status alone and flags the payment for review. A
    report that contradicts a later state is kept as an ignored event.
    `kind` WEBHOOK and RETURN always leave an event; a refresh only when
    something happened. `checked_at` also records the provider check (and
    the next one's back-off) in the same UPDATE.
    """
    # No savepoint when nested: any error must undo the caller's whole unit.
    with transaction.atomic(savepoint=False):
        payment = _lock(payment_id)
        current, reported = payment.status, result.status
        event_data = {**(data or {}), "provider": dict(result.raw)}
        changed = flagged = ignored = False
        dirty: list[str] = []
        if checked_at is not None:
            payment.last_checked_at = checked_at
            payment.check_attempts += 1
            payment.next_check_at = (
                checked_at + next_check_delay(payment.check_attempts)
                if current == S.PENDING
                else None
            )
            dirty += ["last_checked_at", "check_attempts", "next_check_at"]
        if kind != EventKind.REFRESH:
            _event(
                payment,
                kind,
                actor,
                result.message or f"reported {reported}",
                event_data,
            )

        if (
            reported is None
            or reported == current
            and reported not in (S.PARTIALLY_REFUNDED,)
        ):
            pass
        elif reported == S.COMPLETED and current in (S.PENDING, *LATE_COMPLETION):
            problem = _amount_problem(payment, result)
            if problem:
                flagged = _flag(payment, problem, actor, event_data)
            else:
                payment.amount_paid = result.amount
                payment.failure_reason = ""
                dirty += ["amount_paid", "failure_reason"]
                _move(payment, S.COMPLETED, actor, result.message, event_data, dirty)
                changed = True
                if current in LATE_COMPLETION:
                    flagged = _flag(
                        payment,
                        f"late payment: provider reported success after {current}",
                        actor,
                    )
        elif reported in (S.FAILED, S.EXPIRED) and current == S.PENDING:
            payment.failure_reason = result.message or reported.lower()
            dirty.append("failure_reason")
            _move(payment, reported, actor, result.message, event_data, dirty)
            changed = True
        elif reported in (S.PARTIALLY_REFUNDED, S.REFUNDED) and current in (
            S.COMPLETED,
            S.PARTIALLY_REFUNDED,
        ):
            changed, flagged = _apply_provider_refunds(
                payment, result, actor, event_data
            )
        elif reported == S.COMPLETED and current in PAID_STATUSES:
            pass  # already paid; refunds are applied by their own reports
        else:
            ignored = True
            _event(
                payment,
                EventKind.IGNORED_TRANSITION,
                actor,
                f"ignored: provider reported {reported} while payment is {current}",
                event_data,
                from_status=current,
                to_status=reported,
            )
            if reported in (S.PARTIALLY_REFUNDED, S.REFUNDED):
                flagged = _flag(
                    payment,
                    f"provider reports {reported} but payment is {current}",
                    actor,
                )
        if dirty:
            payment.save(update_fields=[*dirty, "date_updated"])
    return Applied(payment, changed, flagged, ignored)


def _apply_provider_refunds(
    payment: Payment, result: StatusResult, actor: Actor, data
) -> tuple[bool, bool]:
    """Take refunds made at the provider (e.g. its portal) into account."""
    reported = result.amount_refunded
    if reported is None:
        reported = payment.amount_paid if result.status == S.REFUNDED else ZERO
    flagged = False
    if reported > payment.amount_paid:
        flagged = _flag(
            payment,
            f"provider reports {_money(reported, payment.currency)} refunded of "
            f"{_money(payment.amount_paid, payment.currency)} paid",
            actor,
        )
        reported = payment.amount_paid
    if reported <= payment.amount_refunded:
        return False, flagged
    payment.amount_refunded = reported
    payment.save(update_fields=["amount_refunded"])
    target = S.REFUNDED if reported >= payment.amount_paid else S.PARTIALLY_REFUNDED
    _move(
        payment,
        target,
        actor,
        f"provider reports {_money(reported, payment.currency)} refunded",
        data,
    )
    return True, flagged


def payment_ref(payment: Payment) -> PaymentRef:
    """Describe a payment to its gateway."""
    return PaymentRef(
        ref_id=payment.ref_id,
        transaction_id=payment.gateway_transaction_id,
        session_id=payment.gateway_session_id,
        amount=payment.amount,
        currency=payment.currency,
        created_at=payment.date_created,
        expires_at=payment.expiry_datetime,
        data={
            **payment.gateway_data,
            "crypto_amount": str(payment.crypto_amount or ""),
            "crypto_currency": payment.crypto_currency,
        },
    )


def next_check_delay(attempts: int) -> timedelta:
    return CHECK_BACKOFF[min(attempts, len(CHECK_BACKOFF) - 1)]


def payment_refresh(
    *,
    payment: Payment,
    actor: Actor = REFRESH_ACTOR,
    kind: str = EventKind.REFRESH,
    data: Mapping[str, Any] | None = None,
) -> Applied | None:
    """Ask the provider for a payment's status and apply it.

    Return None when the provider could not be asked; the fault is recorded
    as an event for staff-initiated refreshes and the next check is backed off.
    """
    now = timezone.now()
    try:
        result = get_gateway(payment.payment_gateway).fetch_status(payment_ref(payment))
    except GatewayError as exc:
        _record_failed_check(payment.pk, now)
        if actor.user is not None or kind != EventKind.REFRESH:
            with transaction.atomic():
                _event(_lock(payment.pk), EventKind.GATEWAY_ERROR, actor, str(exc))
        logger.warning("refresh of %s failed: %s", payment.ref_id, exc)
        return None
    return payment_apply_result(
        payment_id=payment.pk, result=result, actor=actor, kind=kind, data=data, now=now
    )


def payment_apply_result(
    *,
    payment_id: int,
    result: StatusResult,
    actor: Actor,
    kind: str = EventKind.REFRESH,
    data: Mapping[str, Any] | None = None,
    now=None,
) -> Applied:
    """Apply a fetched status and note when the payment was last checked."""
    return payment_apply_status(
        payment_id=payment_id,
        result=result,
        actor=actor,
        kind=kind,
        data=data,
        checked_at=now or timezone.now(),
    )


def _record_failed_check(payment_id: int, now) -> None:
    # No lock: the status itself is never touched here.
    payment = Payment.objects.only("check_attempts", "status").get(pk=payment_id)
    attempts = payment.check_attempts + 1
    Payment.objects.filter(pk=payment_id).update(
        last_checked_at=now,
        check_attempts=F("check_attempts") + 1,
        next_check_at=now + next_check_delay(attempts)
        if payment.status == S.PENDING
        else None,
    )


RETURN_ACTOR = Actor("return")


def payment_return(*, payment: Payment, params: Mapping[str, str]) -> Payment:
    """Confirm server-to-server where a returning payer landed; return the payment.

    Throttled like the status endpoint. The payer's return goes on the
    timeline once per status it was seen in: reloading the result page adds
    nothing unless the provider reports something new.
    """
    if payment.status != S.PENDING or not payment_claim_refresh(
        payment=payment, min_age_seconds=2
    ):
        return payment
    try:
        gateway = get_gateway(payment.payment_gateway)
        note = gateway.return_message(payment_ref(payment), params)
    except GatewayConfigError:
        note = ""
    seen = PaymentEvent.objects.filter(
        payment=payment, kind=EventKind.RETURN, data__status=payment.status
    ).exists()
    payment_refresh(
        payment=payment,
        actor=RETURN_ACTOR,
        kind=EventKind.REFRESH if seen else EventKind.RETURN,
        data={
            "note": note,
            "cancelled": "cancelled" in params,
            "status": payment.status,
        },
    )
    payment.refresh_from_db()
    return payment


def payment_claim_refresh(*, payment: Payment, min_age_seconds: int) -> bool:
    """Claim the right to refresh a payment now; False if checked too recently.

    A conditional UPDATE makes the throttle hold across workers: of several
    concurrent status requests only one reaches the provider.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=min_age_seconds)
    claimed = (
        Payment.objects.filter(pk=payment.pk)
        .filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lt=cutoff))
        .update(last_checked_at=now)
    )
    return claimed == 1


def payment_expire_overdue(*, now=None, limit: int = 500) -> int:
    """Expire pending payments past their expiry, after one last provider check.

    The least recently checked go first, so payments whose provider cannot be
    reached (they stay pending) never starve the others.
    """
    now = now or timezone.now()
    overdue = list(
        Payment.objects.filter(status=S.PENDING, expiry_datetime__lt=now).order_by(
            F("last_checked_at").asc(nulls_first=True), "expiry_datetime"
        )[:limit]
    )
    actor = Actor("expiry")
    expired = 0
    for payment in overdue:
        applied = payment_refresh(payment=payment, actor=actor)
        if applied is None:
            continue  # provider unreachable: keep it pending, try again later
        if applied.payment.status != S.PENDING:
            expired += applied.payment.status == S.EXPIRED
            continue
        with transaction.atomic():
            locked = _lock(payment.pk)
            if locked.status == S.PENDING:
                locked.failure_reason = "payment window ended without payment"
                _move(
                    locked,
                    S.EXPIRED,
                    actor,
                    locked.failure_reason,
                    also=["failure_reason"],
                )
                expired += 1
    return expired
