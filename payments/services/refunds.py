"""Refunds: balance checks under the payment lock, idempotent provider calls."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from gateways.base import (
    GatewayError,
    NotSupported,
    RefundRequest,
    RefundResult,
)
from gateways.base import RefundStatus as GatewayRefundStatus
from gateways.money import quantize
from gateways.registry import get_gateway

from ..models import (
    EventKind,
    Payment,
    Refund,
    RefundStatus,
)
from .core import (
    SYSTEM,
    ZERO,
    Actor,
    RefundNotAllowed,
    S,
    _event,
    _lock,
    _money,
    _move,
)


def refundable_amount(payment: Payment) -> Decimal:
    """Return paid minus refunded minus refunds still pending."""
    totals = payment.refunds.aggregate(
        done=Sum(
            "amount", filter=Q(status__in=[RefundStatus.SUCCEEDED, RefundStatus.MANUAL])
        ),
        pending=Sum("amount", filter=Q(status=RefundStatus.PENDING)),
    )
    refunded = max(payment.amount_refunded, totals["done"] or ZERO)
    return payment.amount_paid - refunded - (totals["pending"] or ZERO)


def refund_request(
    *,
    payment_id: int,
    amount: Decimal,
    actor: Actor,
    reason: str = "",
    manual: bool = False,
) -> Refund:
    """Refund part or all of a paid payment; over-refunding is impossible.

    The balance check and the PENDING refund row are written under the
    payment's row lock, so two operators cannot both pass the check. The
    provider call happens after that commit, keyed by our refund id.
    `manual` records money returned outside the provider (e.g. crypto).
    """
    with transaction.atomic():
        payment = _lock(payment_id)
        if payment.status not in (S.COMPLETED, S.PARTIALLY_REFUNDED):
            raise RefundNotAllowed(
                f"a {payment.get_status_display().lower()} payment cannot be refunded"
            )
        amount = quantize(Decimal(amount), payment.currency)
        available = refundable_amount(payment)
        if amount <= 0:
            raise RefundNotAllowed("the refund amount must be positive")
        if amount > available:
            raise RefundNotAllowed(
                f"at most {_money(available, payment.currency)} can be refunded"
            )
        gateway = get_gateway(payment.payment_gateway)
        if not manual and not gateway.supports_refunds:
            raise RefundNotAllowed(
                f"{gateway.display_name} has no refund API: record a manual refund"
            )
        refund = Refund.objects.create(
            payment=payment,
            amount=amount,
            currency=payment.currency,
            reason=reason,
            requested_by=actor.user,
            status=RefundStatus.MANUAL if manual else RefundStatus.PENDING,
            date_completed=timezone.now() if manual else None,
        )
        _event(
            payment,
            EventKind.REFUND_REQUESTED,
            actor,
            f"{'manual ' if manual else ''}refund of {_money(amount, payment.currency)}"
            + (f": {reason}" if reason else ""),
            {"refund": refund.idempotency_id},
        )
        if manual:
            _book_refund(payment, refund, actor)
            return refund
    return refund_submit(refund_id=refund.pk, actor=actor)


def refund_submit(*, refund_id: int, actor: Actor = SYSTEM) -> Refund:
    """Send a pending refund to the provider, safely after a lost answer.

    A refund that was sent before is looked up first, so a retry after a
    timeout never refunds twice.
    """
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    payment = refund.payment
    request = RefundRequest(
        ref_id=payment.ref_id,
        refund_id=refund.idempotency_id,
        amount=refund.amount,
        currency=refund.currency,
        transaction_id=payment.gateway_transaction_id,
        reason=refund.reason,
    )
    try:
        gateway = get_gateway(payment.payment_gateway)
        result = gateway.fetch_refund(request) if refund.attempts else None
        if result is None:
            Refund.objects.filter(pk=refund.pk).update(attempts=F("attempts") + 1)
            result = gateway.refund(request)
    except NotSupported as exc:
        result = RefundResult(
            refund.idempotency_id, GatewayRefundStatus.FAILED, message=str(exc)
        )
    except GatewayError as exc:
        with transaction.atomic():
            _event(
                _lock(payment.pk),
                EventKind.GATEWAY_ERROR,
                actor,
                f"refund {refund.idempotency_id} not confirmed: {exc}; will retry",
            )
        refund.refresh_from_db()
        return refund
    return refund_finish(refund_id=refund.pk, result=result, actor=actor)


def refund_finish(
    *, refund_id: int, result: RefundResult, actor: Actor = SYSTEM
) -> Refund:
    """Record a provider's refund answer once."""
    with transaction.atomic():
        refund = Refund.objects.select_related("payment").get(pk=refund_id)
        payment = _lock(refund.payment_id)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if (
            refund.status != RefundStatus.PENDING
            or result.status == GatewayRefundStatus.PENDING
        ):
            return refund
        now = timezone.now()
        if result.status == GatewayRefundStatus.SUCCEEDED:
            Refund.objects.filter(pk=refund.pk).update(
                status=RefundStatus.SUCCEEDED,
                gateway_refund_id=result.gateway_refund_id,
                date_completed=now,
            )
            refund.refresh_from_db()
            _event(
                payment,
                EventKind.REFUND_SUCCEEDED,
                actor,
                f"refund of {_money(refund.amount, refund.currency)} succeeded",
                {"refund": refund.idempotency_id, "provider": dict(result.raw)},
            )
            _book_refund(payment, refund, actor)
        else:
            Refund.objects.filter(pk=refund.pk).update(
                status=RefundStatus.FAILED,
                failure_reason=result.message,
                date_completed=now,
            )
            refund.refresh_from_db()
            _event(
                payment,
                EventKind.REFUND_FAILED,
                actor,
                f"refund of {_money(refund.amount, refund.currency)} failed: {result.message}",
                {"refund": refund.idempotency_id, "provider": dict(result.raw)},
            )
    return refund


def _book_refund(payment: Payment, refund: Refund, actor: Actor) -> None:
    """Add a finished refund to a locked payment's totals and status."""
    done = (
        payment.refunds.filter(
            status__in=[RefundStatus.SUCCEEDED, RefundStatus.MANUAL]
        ).aggregate(total=Sum("amount"))["total"]
        or ZERO
    )
    refunded = min(max(payment.amount_refunded, done), payment.amount_paid)
    if refunded == payment.amount_refunded:
        return  # the provider's own report already counted it
    payment.amount_refunded = refunded
    payment.save(update_fields=["amount_refunded", "date_updated"])
    target = S.REFUNDED if refunded >= payment.amount_paid else S.PARTIALLY_REFUNDED
    _move(
        payment,
        target,
        actor,
        f"{_money(refunded, payment.currency)} refunded in total",
        {"refund": refund.idempotency_id},
    )
