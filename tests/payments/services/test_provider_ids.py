"""The id a provider names a payment by once it is paid (StatusResult.transaction_id).

Stripe knows a payment by its Checkout Session until the payer pays, then by
the PaymentIntent that charge and dispute events name; MPGS names the paying
transaction. The domain keeps the newest id a report names.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateways.base import StatusResult
from payments import services
from payments.models import Payment
from payments.services.status import payment_apply_status
from tests.factories import PaymentFactory

pytestmark = pytest.mark.django_db
Status = Payment.Status
ACTOR = services.Actor("test")


def report(payment: Payment, status: str, transaction_id: str, **extra):
    result = StatusResult(
        ref_id=payment.ref_id,
        status=status,
        transaction_id=transaction_id,
        amount=extra.pop("amount", payment.amount),
        currency=payment.currency,
        **extra,
    )
    payment_apply_status(payment_id=payment.pk, result=result, actor=ACTOR)
    payment.refresh_from_db()
    return payment


def test_a_paying_report_replaces_the_checkout_id_with_the_paid_one():
    payment = PaymentFactory(gateway_transaction_id="cs_test_session")

    report(payment, Status.COMPLETED, "pi_paid")

    assert payment.status == Status.COMPLETED
    assert payment.gateway_transaction_id == "pi_paid"


def test_a_pending_report_naming_an_id_keeps_it_too():
    payment = PaymentFactory(gateway_transaction_id="")

    report(payment, Status.PENDING, "pi_first_attempt", amount=None)

    assert payment.status == Status.PENDING
    assert payment.gateway_transaction_id == "pi_first_attempt"


@pytest.mark.parametrize("named", ["", "x" * 129, "pi_\x00nul"])
def test_no_id_or_one_a_payment_cannot_hold_keeps_the_known_one(named):
    payment = PaymentFactory(gateway_transaction_id="cs_test_session")

    report(payment, Status.COMPLETED, named)

    assert payment.status == Status.COMPLETED
    assert payment.gateway_transaction_id == "cs_test_session"


def test_an_ignored_report_changes_no_id():
    payment = report(
        PaymentFactory(gateway_transaction_id="cs_test_session"),
        Status.COMPLETED,
        "pi_paid",
    )

    # PENDING after COMPLETED would move it backwards: kept as an ignored event.
    report(payment, Status.PENDING, "pi_other", amount=Decimal("1.00"))

    assert payment.status == Status.COMPLETED
    assert payment.gateway_transaction_id == "pi_paid"
