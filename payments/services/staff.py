"""Staff actions that only add to the timeline or clear a flag."""

from __future__ import annotations

from ..models import EventKind, Payment
from .transitions import Actor, Change, Entry, payment_add_entry, payment_change


def payment_add_note(*, payment_id: int, actor: Actor, message: str) -> None:
    """Add a staff note to the timeline."""
    payment_add_entry(
        payment_id=payment_id, actor=actor, entry=Entry(EventKind.NOTE, message)
    )


def payment_resolve_review(*, payment_id: int, actor: Actor, message: str) -> Payment:
    """Clear a payment's review flag, recording who and why."""

    def decide(payment: Payment) -> Change:
        if not payment.needs_review:
            return Change()
        return Change(
            updates={"needs_review": False},
            entries=(
                Entry(
                    EventKind.REVIEW_RESOLVED,
                    message,
                    {"review_reason": payment.review_reason},
                ),
            ),
        )

    return payment_change(payment_id=payment_id, actor=actor, decide=decide).payment
