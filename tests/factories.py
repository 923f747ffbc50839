"""factory-boy factories for the domain models, and statuses reached through services.

A factory makes a fresh PENDING payment; any other status is reached the way a
provider's reports reach it (`payment_in`, `move_to`), through the transition
service. Tests never assign a status.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from functools import partial

import factory

from gateways.base import StatusResult
from gateways.money import quantize
from payments.models import Payment, Plan
from payments.services.status import report_change
from payments.services.transitions import Actor, Change, payments_change
from payments.states import PaymentStatus


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"plan-{n}")
    name = factory.Sequence(lambda n: f"Plan {n}")
    price = Decimal("10.00")
    currency = "USD"
    active = True


class PaymentFactory(factory.django.DjangoModelFactory):
    """A fresh PENDING payment; other states come from services, not here."""

    class Meta:
        model = Payment

    plan = factory.SubFactory(PlanFactory)
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    amount = factory.LazyAttribute(lambda o: o.plan.price)
    currency = factory.LazyAttribute(lambda o: o.plan.currency)
    payment_gateway = "sandbox"


# The provider reports that bring a PENDING payment to each status.
REPORTS_TO = {
    PaymentStatus.PENDING: (),
    PaymentStatus.COMPLETED: (PaymentStatus.COMPLETED,),
    PaymentStatus.FAILED: (PaymentStatus.FAILED,),
    PaymentStatus.EXPIRED: (PaymentStatus.EXPIRED,),
    PaymentStatus.PARTIALLY_REFUNDED: (
        PaymentStatus.COMPLETED,
        PaymentStatus.PARTIALLY_REFUNDED,
    ),
    PaymentStatus.REFUNDED: (PaymentStatus.COMPLETED, PaymentStatus.REFUNDED),
    PaymentStatus.VOIDED: (PaymentStatus.COMPLETED, PaymentStatus.VOIDED),
}
# Payments changed per transaction (SQLite limits the parameters of one query).
MOVE_CHUNK = 2000


def payment_in(status: str, *, refunded: Decimal | None = None, **fields) -> Payment:
    """Make a payment (PaymentFactory `fields`) and bring it to `status`."""
    payment = PaymentFactory(**fields)
    move_to(status, [payment], refunded=refunded)
    payment.refresh_from_db()
    return payment


def move_to(
    status: str,
    payments: Iterable[Payment],
    *,
    refunded: Decimal | None = None,
    source: str = "test",
) -> None:
    """Bring PENDING payments to `status` as their provider's reports would.

    Each report is decided by `report_change` and written by `payments_change`,
    as the reconciler does: the price is captured in full; REFUNDED refunds
    all of it and PARTIALLY_REFUNDED `refunded` (default: half), as refund
    rows the provider made.
    """
    ids = [payment.pk for payment in payments]
    for reported in REPORTS_TO[status]:
        decide = partial(_report, reported=reported, refunded=refunded)
        for start in range(0, len(ids), MOVE_CHUNK):
            chunk = ids[start : start + MOVE_CHUNK]
            payments_change(decisions=dict.fromkeys(chunk, decide), actor=Actor(source))


def _report(payment: Payment, *, reported: str, refunded: Decimal | None) -> Change:
    amount_refunded = None
    if reported == PaymentStatus.REFUNDED:
        amount_refunded = payment.amount_paid
    elif reported == PaymentStatus.PARTIALLY_REFUNDED:
        amount_refunded = refunded
        if amount_refunded is None:
            amount_refunded = quantize(payment.amount_paid / 2, payment.currency)
    result = StatusResult(
        ref_id=payment.ref_id,
        status=reported,
        amount=payment.amount,
        currency=payment.currency,
        amount_refunded=amount_refunded,
    )
    return report_change(payment, result)
