"""The guarded state machine: the one writer of a payment's status.

`_move` is the only code that assigns a payment's status, and it runs only on
a row locked by `_lock` inside a transaction, after checking the table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from gateways.money import to_provider

from ..models import (
    EventKind,
    Payment,
    PaymentEvent,
)
from ..states import PAID_STATUSES, PaymentStatus, can_transition

logger = logging.getLogger("payments")


S = PaymentStatus


ZERO = Decimal("0")


SECRET_MARKERS = (
    "secret",
    "password",
    "hmac",
    "signature",
    "authorization",
    "private",
    "indicator",
)


class IllegalTransition(Exception):
    """The transition table forbids this move."""


class RefundNotAllowed(Exception):
    """A refund was asked for that cannot be made (amount, status, provider)."""


class GatewayDown(Exception):
    """The provider failed while a payment was being created."""

    def __init__(self, payment: Payment, reason: str):
        super().__init__(reason)
        self.payment = payment
        self.reason = reason


@dataclass(frozen=True)
class Actor:
    """Who causes a change: a staff user, or a named system source."""

    source: str = "system"
    user: Any = None


SYSTEM = Actor()


def _money(amount: Decimal, currency: str) -> str:
    return f"{to_provider(amount, currency)} {currency}"


def _lock(payment_id: int) -> Payment:
    return Payment.objects.select_for_update().get(pk=payment_id)


def _event(
    payment: Payment,
    kind: str,
    actor: Actor,
    message: str = "",
    data: Mapping[str, Any] | None = None,
    *,
    from_status: str = "",
    to_status: str = "",
) -> PaymentEvent:
    return PaymentEvent.objects.create(
        payment=payment,
        kind=kind,
        actor=actor.user,
        source=actor.source,
        message=message[:2000],
        data=redact(data or {}),
        from_status=from_status,
        to_status=to_status,
    )


def _move(
    payment: Payment,
    to_status: str,
    actor: Actor,
    message: str = "",
    data: Mapping[str, Any] | None = None,
    also: list[str] | None = None,
) -> PaymentEvent:
    """Change the status of a payment locked by the caller; the only writer.

    `also` names other fields the caller changed, saved in the same UPDATE
    (the list is emptied once they are written).
    """
    from_status = payment.status
    if not can_transition(from_status, to_status):
        raise IllegalTransition(f"{from_status} -> {to_status} is not allowed")
    payment.status = to_status
    fields = ["status", "date_updated", *(also or [])]
    if also:
        also.clear()
    if to_status in PAID_STATUSES and payment.date_paid is None:
        payment.date_paid = timezone.now()
        fields.append("date_paid")
    if to_status != S.PENDING:
        payment.next_check_at = None
        fields.append("next_check_at")
    payment.save(update_fields=list(dict.fromkeys(fields)))
    return _event(
        payment,
        EventKind.STATUS_CHANGE,
        actor,
        message,
        data,
        from_status=from_status,
        to_status=to_status,
    )


def payment_transition(
    *,
    payment_id: int,
    to_status: str,
    actor: Actor = SYSTEM,
    message: str = "",
    data: Mapping[str, Any] | None = None,
    updates: Mapping[str, Any] | None = None,
) -> Payment:
    """Move a payment to a new status under a row lock, with one event."""
    with transaction.atomic():
        payment = _lock(payment_id)
        for field, value in (updates or {}).items():
            setattr(payment, field, value)
        if updates:
            payment.save(update_fields=[*updates, "date_updated"])
        _move(payment, to_status, actor, message, data)
    return payment


def _flag(payment: Payment, reason: str, actor: Actor, data=None) -> bool:
    """Flag a locked payment for review once per distinct reason."""
    if payment.needs_review and reason in payment.review_reason:
        return False
    payment.needs_review = True
    payment.review_reason = "\n".join(filter(None, [payment.review_reason, reason]))
    payment.save(update_fields=["needs_review", "review_reason", "date_updated"])
    _event(payment, EventKind.REVIEW_FLAGGED, actor, reason, data)
    return True


def redact(data: Any) -> Any:
    """Replace values under secret-looking keys, recursively."""
    if isinstance(data, Mapping):
        return {
            str(k): "[redacted]"
            if any(marker in str(k).lower() for marker in SECRET_MARKERS)
            else redact(v)
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return [redact(v) for v in data]
    if isinstance(data, Decimal):
        return str(data)
    return data
