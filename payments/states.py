"""Canonical payment statuses and the only transitions allowed between them."""

from __future__ import annotations

from django.db import models

from gateways.base import Status as S


class PaymentStatus(models.TextChoices):
    PENDING = S.PENDING, "Pending"
    COMPLETED = S.COMPLETED, "Completed"
    FAILED = S.FAILED, "Failed"
    EXPIRED = S.EXPIRED, "Expired"
    PARTIALLY_REFUNDED = S.PARTIALLY_REFUNDED, "Partially refunded"
    REFUNDED = S.REFUNDED, "Refunded"


TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.COMPLETED, S.FAILED, S.EXPIRED}),
    S.EXPIRED: frozenset({S.COMPLETED}),  # late payment: also needs review
    S.FAILED: frozenset({S.COMPLETED}),  # provider later reports success: review
    S.COMPLETED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.REFUNDED: frozenset(),
}

# Statuses in which money has been received.
PAID_STATUSES = frozenset({S.COMPLETED, S.PARTIALLY_REFUNDED, S.REFUNDED})
# Statuses the reconciler keeps asking the provider about.
OPEN_STATUSES = frozenset({S.PENDING})
# Reaching COMPLETED from these needs a human to look.
LATE_COMPLETION = frozenset({S.EXPIRED, S.FAILED})


def can_transition(from_status: str, to_status: str) -> bool:
    """Tell whether the table allows a move."""
    return to_status in TRANSITIONS.get(from_status, frozenset())
