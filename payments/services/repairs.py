"""Repairs: a final status for a payment the provider cannot settle, by two people.

One user holding `repair_payment` proposes a target status with a reason;
a second, different holder confirms it (the change then goes through
`payments_change`, the one way a payment changes) or rejects it. Only the
moves of `states.REPAIR_TARGETS` may be proposed: PENDING to COMPLETED,
FAILED or EXPIRED; EXPIRED or FAILED to COMPLETED.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .. import clock
from ..exceptions import RepairNotAllowed
from ..models import EventKind, Payment, PaymentRepair, RepairStatus
from ..states import PaymentStatus, repair_targets
from .transitions import Actor, Change, Entry, payments_change

REPAIR_PERMISSION = "payments.repair_payment"


def may_repair(user: Any) -> bool:
    """Tell whether `user` may propose, confirm or reject repairs."""
    return user is not None and user.is_active and user.has_perm(REPAIR_PERMISSION)


def repair_propose(
    *, payment_id: int, actor: Actor, to_status: str, reason: str
) -> PaymentRepair:
    """Propose a final status for a stuck payment; a second person confirms it.

    Raise RepairNotAllowed, writing nothing, without a reason or permission,
    for a target the repair table does not allow from the payment's status,
    or while another proposal for the payment is open.
    """
    reason = reason.strip()
    _check_user(actor, reason)

    def decide(payment: Payment) -> Change:
        if to_status not in repair_targets(payment.status):
            allowed = ", ".join(sorted(repair_targets(payment.status))) or "none"
            raise RepairNotAllowed(
                f"a {payment.get_status_display().lower()} payment cannot be "
                f"repaired to {to_status} (allowed: {allowed})"
            )
        if payment.repairs.filter(status=RepairStatus.PROPOSED).exists():
            raise RepairNotAllowed("a repair of this payment already awaits a decision")
        message = (
            f"repair {payment.status} → {to_status} proposed by "
            f"{actor.user.get_username()}: {reason}"
        )
        return Change(entries=(Entry(EventKind.REPAIR_PROPOSED, message),))

    with transaction.atomic():
        changed = payments_change(decisions={payment_id: decide}, actor=actor)
        payment = changed[payment_id].payment
        return PaymentRepair.objects.create(
            payment=payment,
            from_status=payment.status,
            to_status=to_status,
            reason=reason,
            proposed_by=actor.user,
        )


def repair_confirm(*, repair_id: int, actor: Actor, reason: str = "") -> PaymentRepair:
    """Confirm another user's proposal: move the payment to the proposed status."""
    reason = reason.strip()
    _check_user(actor, reason or "confirmed")

    def decide(payment: Payment, repair: PaymentRepair) -> Change:
        if payment.status != repair.from_status:
            raise RepairNotAllowed(
                f"the payment is {payment.get_status_display().lower()} now, not "
                f"{repair.from_status} as proposed: reject the proposal"
            )
        names = (
            f"proposed by {repair.proposed_by.get_username()}, confirmed by "
            f"{actor.user.get_username()}"
        )
        message = f"repair to {repair.to_status} ({names}): {repair.reason}"
        if reason:
            message += f" — {reason}"
        data = {
            "repair": repair.pk,
            "proposed_by": repair.proposed_by.get_username(),
            "confirmed_by": actor.user.get_username(),
        }
        return Change(
            status=repair.to_status,
            updates=_repair_updates(payment, repair),
            message=f"repaired ({names})",
            data=data,
            entries=(Entry(EventKind.REPAIR, message, data),),
        )

    return _decide(repair_id, actor, reason, RepairStatus.CONFIRMED, decide)


def repair_reject(*, repair_id: int, actor: Actor, reason: str) -> PaymentRepair:
    """Reject another user's proposal: the payment stays as it is."""
    reason = reason.strip()
    _check_user(actor, reason)

    def decide(payment: Payment, repair: PaymentRepair) -> Change:
        message = (
            f"repair to {repair.to_status} proposed by "
            f"{repair.proposed_by.get_username()} rejected by "
            f"{actor.user.get_username()}: {reason}"
        )
        data = {"repair": repair.pk}
        return Change(entries=(Entry(EventKind.REPAIR_REJECTED, message, data),))

    return _decide(repair_id, actor, reason, RepairStatus.REJECTED, decide)


def _decide(repair_id: int, actor: Actor, reason: str, outcome: str, check):
    """Under the payment's lock: check the second person, apply, close the proposal."""
    payment_id = PaymentRepair.objects.values_list("payment_id", flat=True).get(
        pk=repair_id
    )

    def decide(payment: Payment) -> Change:
        repair = PaymentRepair.objects.select_related("proposed_by").get(pk=repair_id)
        if repair.status != RepairStatus.PROPOSED:
            raise RepairNotAllowed(
                f"the repair is {repair.get_status_display().lower()} already"
            )
        if repair.proposed_by_id == actor.user.pk:
            raise RepairNotAllowed(
                "you proposed this repair: another person must decide on it"
            )
        return check(payment, repair)

    with transaction.atomic():
        payments_change(decisions={payment_id: decide}, actor=actor)
        PaymentRepair.objects.filter(pk=repair_id, status=RepairStatus.PROPOSED).update(
            status=outcome,
            decided_by=actor.user,
            decided_at=clock.now(),
            decision_reason=reason,
        )
    return PaymentRepair.objects.select_related("payment").get(pk=repair_id)


def _repair_updates(payment: Payment, repair: PaymentRepair) -> dict[str, Any]:
    """Fields a repair sets beside the status: what was paid, or why it failed."""
    if repair.to_status == PaymentStatus.COMPLETED:
        # The proposer vouches the price was received in full.
        paid = payment.amount_paid or payment.amount
        return {"amount_paid": paid} if paid != payment.amount_paid else {}
    if repair.to_status == PaymentStatus.FAILED:
        return {"failure_reason": f"repaired: {repair.reason}"[:2000]}
    return {}


def _check_user(actor: Actor, reason: str) -> None:
    if not may_repair(actor.user):
        raise RepairNotAllowed("you may not repair payments")
    if not reason:
        raise RepairNotAllowed("give a reason")
