"""Staff actions that only add to the timeline or clear a flag."""

from __future__ import annotations

from django.db import transaction

from ..models import (
    EventKind,
    Payment,
    PaymentEvent,
)
from .core import (
    Actor,
    _event,
    _lock,
)


def payment_add_note(*, payment_id: int, actor: Actor, message: str) -> PaymentEvent:
    """Add a staff note to the timeline."""
    with transaction.atomic():
        return _event(_lock(payment_id), EventKind.NOTE, actor, message)


def payment_resolve_review(*, payment_id: int, actor: Actor, message: str) -> Payment:
    """Clear a payment's review flag, recording who and why."""
    with transaction.atomic():
        payment = _lock(payment_id)
        if not payment.needs_review:
            return payment
        payment.needs_review = False
        payment.save(update_fields=["needs_review", "date_updated"])
        _event(
            payment,
            EventKind.REVIEW_RESOLVED,
            actor,
            message,
            {"review_reason": payment.review_reason},
        )
    return payment
