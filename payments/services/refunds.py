"""Refunds: balance checks under the payment lock, idempotent provider calls."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from gateways.base import (
    GatewayConfigError,
    GatewayError,
    NotSupported,
    RefundRequest,
    RefundResult,
)
from gateways.base import RefundStatus as GatewayRefundStatus
from gateways.money import quantize
from gateways.registry import get_gateway

from ..exceptions import RefundNotAllowed
from ..models import EventKind, Payment, Refund, RefundStatus, new_refund_id
from ..states import REFUNDABLE_STATUSES, refunded_status
from .transitions import (
    SYSTEM,
    ZERO,
    Actor,
    Change,
    Entry,
    money_text,
    payment_add_entry,
    payment_change,
)

DONE = (RefundStatus.SUCCEEDED, RefundStatus.MANUAL)


def refundable_amount(payment: Payment) -> Decimal:
    """Return paid minus refunded minus refunds still pending."""
    totals = payment.refunds.aggregate(
        done=Sum("amount", filter=Q(status__in=DONE)),
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

    The balance check and the refund row are written under the payment's row
    lock, so two operators cannot both pass the check. The provider call
    happens after that commit, keyed by our refund id. `manual` records money
    returned outside the provider (e.g. crypto) and never needs the gateway.
    Raise RefundNotAllowed, writing nothing, when the refund cannot be made.
    """
    refund_id = new_refund_id()
    gateway_problem = "" if manual else _refund_gateway_problem(payment_id)

    def check(payment: Payment) -> Change:
        value = _refund_value(payment, amount)
        if gateway_problem:
            raise RefundNotAllowed(gateway_problem)
        kind = "manual refund" if manual else "refund"
        message = f"{kind} of {money_text(value, payment.currency)}"
        return Change(
            entries=(
                Entry(
                    EventKind.REFUND_REQUESTED,
                    message + (f": {reason}" if reason else ""),
                    {"refund": refund_id},
                ),
            )
        )

    with transaction.atomic():
        payment = payment_change(
            payment_id=payment_id, actor=actor, decide=check
        ).payment
        refund = Refund.objects.create(
            payment=payment,
            idempotency_id=refund_id,
            amount=quantize(Decimal(amount), payment.currency),
            currency=payment.currency,
            reason=reason,
            requested_by=actor.user,
            status=RefundStatus.MANUAL if manual else RefundStatus.PENDING,
            date_completed=timezone.now() if manual else None,
        )
        if manual:
            _book(refund, actor, ())
            return refund
    return refund_submit(refund_id=refund.pk, actor=actor)


def _refund_value(payment: Payment, amount: Decimal) -> Decimal:
    """Return the refund amount at the currency's precision, or raise."""
    if payment.status not in REFUNDABLE_STATUSES:
        raise RefundNotAllowed(
            f"a {payment.get_status_display().lower()} payment cannot be refunded"
        )
    value = quantize(Decimal(amount), payment.currency)
    if value <= 0:
        raise RefundNotAllowed("the refund amount must be positive")
    available = refundable_amount(payment)
    if value > available:
        raise RefundNotAllowed(
            f"at most {money_text(available, payment.currency)} can be refunded"
        )
    return value


def _refund_gateway_problem(payment_id: int) -> str:
    """Say why a payment's gateway cannot refund it, or ""."""
    code = Payment.objects.values_list("payment_gateway", flat=True).get(pk=payment_id)
    try:
        gateway = get_gateway(code)
    except GatewayConfigError:
        return f"gateway {code} is not configured: record a manual refund"
    if not gateway.supports_refunds:
        return f"{gateway.display_name} has no refund API: record a manual refund"
    return ""


def refunds_retry_pending(*, min_age_seconds: int, actor: Actor = SYSTEM) -> int:
    """Look up or resend refunds whose provider answer was lost; count the settled."""
    cutoff = timezone.now() - timedelta(seconds=min_age_seconds)
    pending = Refund.objects.filter(
        status=RefundStatus.PENDING, date_created__lt=cutoff
    ).values_list("pk", flat=True)[:1000]
    settled = 0
    for refund_id in pending:
        refund = refund_submit(refund_id=refund_id, actor=actor)
        settled += refund.status != RefundStatus.PENDING
    return settled


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
        message = f"refund {refund.idempotency_id} not confirmed: {exc}; will retry"
        payment_add_entry(
            payment_id=payment.pk,
            actor=actor,
            entry=Entry(EventKind.GATEWAY_ERROR, message),
        )
        refund.refresh_from_db()
        return refund
    return refund_finish(refund_id=refund.pk, result=result, actor=actor)


def refund_finish(
    *, refund_id: int, result: RefundResult, actor: Actor = SYSTEM
) -> Refund:
    """Record a provider's final refund answer once, and book a success."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if (
            refund.status != RefundStatus.PENDING
            or result.status == GatewayRefundStatus.PENDING
        ):
            return refund
        succeeded = result.status == GatewayRefundStatus.SUCCEEDED
        Refund.objects.filter(pk=refund.pk).update(
            status=RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED,
            gateway_refund_id=result.gateway_refund_id if succeeded else "",
            failure_reason="" if succeeded else result.message,
            date_completed=timezone.now(),
            date_updated=timezone.now(),
        )
        refund.refresh_from_db()
        amount = money_text(refund.amount, refund.currency)
        data = {"refund": refund.idempotency_id, "provider": dict(result.raw)}
        if succeeded:
            entry = Entry(
                EventKind.REFUND_SUCCEEDED, f"refund of {amount} succeeded", data
            )
            _book(refund, actor, (entry,))
        else:
            message = f"refund of {amount} failed: {result.message}"
            entry = Entry(EventKind.REFUND_FAILED, message, data)
            payment_add_entry(payment_id=refund.payment_id, actor=actor, entry=entry)
    return refund


def _book(refund: Refund, actor: Actor, entries: tuple[Entry, ...]) -> None:
    """Add finished refunds to their payment's total and status, under its lock."""

    def decide(payment: Payment) -> Change:
        done = payment.refunds.filter(status__in=DONE).aggregate(t=Sum("amount"))["t"]
        refunded = min(max(payment.amount_refunded, done or ZERO), payment.amount_paid)
        if refunded == payment.amount_refunded:
            return Change(entries=entries)  # the provider's report counted it
        return Change(
            status=refunded_status(refunded, payment.amount_paid),
            updates={"amount_refunded": refunded},
            message=f"{money_text(refunded, payment.currency)} refunded in total",
            data={"refund": refund.idempotency_id},
            entries=entries,
        )

    payment_change(payment_id=refund.payment_id, actor=actor, decide=decide)
