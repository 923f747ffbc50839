"""Four-eyes refunds: a second person approves, rejects, or lets a request lapse.

A refund at or above REFUND_APPROVAL_LIMITS is stored AWAITING_APPROVAL by
`refunds.refund_request` and sent to nobody. Here another user holding
`approve_refund` decides on it, under the payment's row lock: an approval
re-checks the refundable amount (a void or chargeback may have come in
meanwhile) and moves the refund to PENDING (or MANUAL), after which it is
sent exactly once through `refunds.refund_submit`, the path every refund
takes. Requests nobody decided on lapse after REFUND_APPROVAL_HOURS.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from audit import log as audit

from .. import clock
from ..exceptions import ApprovalNotAllowed
from ..models import EventKind, Payment, Refund, RefundStatus
from ..states import REFUNDABLE_STATUSES
from .refunds import (
    book_refunds,
    refund_move,
    refund_submit,
    refundable_amount,
)
from .transitions import SYSTEM, Actor, Change, Entry, money_text, payments_change

APPROVE_PERMISSION = "payments.approve_refund"


def may_decide_refund(user: Any, refund: Refund) -> bool:
    """Tell whether `user` may approve or reject this refund (never their own)."""
    return (
        user is not None
        and user.is_active
        and user.has_perm(APPROVE_PERMISSION)
        and refund.status == RefundStatus.AWAITING_APPROVAL
        and refund.requested_by_id != user.pk
    )


def refund_approve(*, refund_id: int, actor: Actor, reason: str) -> Refund:
    """Approve a refund awaiting approval and send it (once); return it.

    Raise ApprovalNotAllowed, writing nothing, when the user may not decide
    on it, it was decided already, or the payment can no longer be refunded
    by that much.
    """

    def check(payment: Payment, refund: Refund) -> Change:
        if payment.status not in REFUNDABLE_STATUSES:
            raise ApprovalNotAllowed(
                f"the payment is {payment.get_status_display().lower()} now: "
                "reject the refund"
            )
        available = refundable_amount(payment, leaving_out=refund.amount)
        if refund.amount > available:
            raise ApprovalNotAllowed(
                f"only {money_text(available, payment.currency)} can be refunded "
                "now (a void, chargeback or other refund came in): reject it"
            )
        return _decision(refund, EventKind.REFUND_APPROVED, "approved", actor, reason)

    with transaction.atomic():
        refund = _decide(refund_id, actor, reason, check)
        if refund.manual:
            refund = refund_move(
                refund,
                RefundStatus.MANUAL,
                date_completed=clock.now(),
                **_by(actor, reason),
            )
            book_refunds(refund, actor, ())
            return refund
        refund = refund_move(refund, RefundStatus.PENDING, **_by(actor, reason))
    return refund_submit(refund_id=refund.pk, actor=actor)


def refund_reject(*, refund_id: int, actor: Actor, reason: str) -> Refund:
    """Reject a refund awaiting approval: nothing is sent; return it."""

    def check(payment: Payment, refund: Refund) -> Change:
        return _decision(refund, EventKind.REFUND_REJECTED, "rejected", actor, reason)

    with transaction.atomic():
        refund = _decide(refund_id, actor, reason, check)
        return refund_move(
            refund,
            RefundStatus.REJECTED,
            date_completed=clock.now(),
            **_by(actor, reason),
        )


def refunds_lapse_overdue(*, now=None, limit: int = 500) -> list[int]:
    """Lapse refunds left awaiting approval past REFUND_APPROVAL_HOURS; their ids.

    Each lapses under its payment's lock, so an approval at the same moment
    either wins (the refund is no longer awaiting) or finds it lapsed.
    """
    now = now or clock.now()
    hours = settings.REFUND_APPROVAL_HOURS
    overdue = Refund.objects.filter(
        status=RefundStatus.AWAITING_APPROVAL,
        date_created__lt=now - timedelta(hours=hours),
    ).values_list("pk", "payment_id")[:limit]
    lapsed = []
    for refund_id, payment_id in overdue:

        def decide(payment: Payment, refund_id=refund_id) -> Change:
            refund = Refund.objects.get(pk=refund_id)
            if refund.status != RefundStatus.AWAITING_APPROVAL:
                return Change()
            message = (
                f"refund of {money_text(refund.amount, refund.currency)} lapsed: "
                f"not approved within {hours} h; nothing was sent"
            )
            data = {"refund": refund.idempotency_id}
            return Change(entries=(Entry(EventKind.REFUND_LAPSED, message, data),))

        with transaction.atomic():
            changed = payments_change(decisions={payment_id: decide}, actor=SYSTEM)
            if not changed[payment_id].change.entries:
                continue
            refund = refund_move(
                Refund.objects.get(pk=refund_id),
                RefundStatus.LAPSED,
                date_completed=now,
            )
        audit.record(
            audit.REFUND_LAPSED,
            target=refund,
            reason=f"not approved within {hours} h",
            detail={"amount": str(refund.amount), "currency": refund.currency},
        )
        lapsed.append(refund_id)
    return lapsed


def _decide(refund_id: int, actor: Actor, reason: str, check) -> Refund:
    """Lock the refund's payment, check who decides, write the timeline entry.

    Runs inside the caller's transaction; returns the refund, re-read under
    the lock, still AWAITING_APPROVAL.
    """
    if not reason.strip():
        raise ApprovalNotAllowed("give a reason for the decision")
    payment_id = Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id)

    def decide(payment: Payment) -> Change:
        refund = Refund.objects.get(pk=refund_id)
        if refund.status != RefundStatus.AWAITING_APPROVAL:
            raise ApprovalNotAllowed(
                f"the refund is {refund.get_status_display().lower()} already"
            )
        user = actor.user
        if user is not None and refund.requested_by_id == user.pk:
            raise ApprovalNotAllowed(
                "you requested this refund: another person must decide on it"
            )
        if user is None or not user.is_active or not user.has_perm(APPROVE_PERMISSION):
            raise ApprovalNotAllowed("you may not approve or reject refunds")
        return check(payment, refund)

    payments_change(decisions={payment_id: decide}, actor=actor)
    # Still awaiting: every decision on it is taken under the payment's lock.
    return Refund.objects.select_related("requested_by").get(pk=refund_id)


def _decision(
    refund: Refund, kind: str, verb: str, actor: Actor, reason: str
) -> Change:
    requester = refund.requested_by.get_username() if refund.requested_by else "system"
    message = (
        f"refund of {money_text(refund.amount, refund.currency)} requested by "
        f"{requester} {verb} by {actor.user.get_username()}: {reason.strip()}"
    )
    return Change(entries=(Entry(kind, message, {"refund": refund.idempotency_id}),))


def _by(actor: Actor, reason: str) -> dict[str, Any]:
    return {
        "decided_by": actor.user,
        "decided_at": clock.now(),
        "decision_reason": reason.strip(),
    }
