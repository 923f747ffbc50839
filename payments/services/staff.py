"""Staff actions that only add to the timeline or clear a flag."""

from __future__ import annotations

from ..models import EventKind, Payment
from .transitions import Actor, Change, Entry, payments_change


def payment_add_note(*, payment_id: int, actor: Actor, message: str) -> None:
    """Add a staff note to the timeline."""
    note = Change(entries=(Entry(EventKind.NOTE, message),))
    payments_change(decisions={payment_id: lambda _payment: note}, actor=actor)


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

    done = payments_change(decisions={payment_id: decide}, actor=actor)
    return done[payment_id].payment
