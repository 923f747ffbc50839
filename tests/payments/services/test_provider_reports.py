"""What a provider's review request, declined attempts and exact amounts do."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateways.base import StatusResult
from payments import selectors, services
from payments.models import EventKind, Payment
from payments.services.status import payment_apply_status
from payments.services.transitions import Changed
from tests.factories import PaymentFactory, PlanFactory, payment_in

pytestmark = pytest.mark.django_db
Status = Payment.Status
ACTOR = services.Actor("refresh")


def apply(payment: Payment, **fields) -> Changed:
    result = StatusResult(ref_id=payment.ref_id, **fields)
    return payment_apply_status(payment_id=payment.pk, result=result, actor=ACTOR)


def test_a_declined_attempt_goes_on_the_timeline_once():
    payment = PaymentFactory()

    for _ in range(3):
        apply(payment, status=Status.PENDING, declined=("t1",))
    apply(payment, status=Status.PENDING, declined=("t1", "t2"))

    payment.refresh_from_db()
    notes = payment.events.filter(message__startswith="payment attempt")
    assert list(notes.values_list("message", flat=True)) == [
        "payment attempt t1 declined; the payer may try again until the "
        "checkout session ends",
        "payment attempt t2 declined; the payer may try again until the "
        "checkout session ends",
    ]
    assert payment.gateway_data["declined_attempts"] == ["t1", "t2"]
    assert payment.status == Status.PENDING and not payment.needs_review


def test_a_success_after_declines_completes_without_review():
    payment = PaymentFactory()
    apply(payment, status=Status.PENDING, declined=("t1",))

    applied = apply(
        payment,
        status=Status.COMPLETED,
        amount=payment.amount,
        currency=payment.currency,
        declined=("t1",),
    )

    assert applied.payment.status == Status.COMPLETED
    assert not applied.flagged and applied.payment.review_reason == ""


def test_a_review_request_flags_once_even_after_it_was_resolved():
    payment = PaymentFactory()
    apply(payment, status=Status.COMPLETED, amount=payment.amount)
    review = "MPGS: chargeback of 10.00 USD (order CHARGEBACK_PROCESSED)"

    first = apply(payment, status=Status.COMPLETED, review=review)
    services.payment_resolve_review(payment_id=payment.pk, actor=ACTOR, message="ok")
    again = apply(payment, status=Status.COMPLETED, review=review)
    other = apply(payment, status=Status.COMPLETED, review=review + " more")

    assert (first.flagged, again.flagged, other.flagged) == (True, False, True)
    assert first.payment.status == Status.COMPLETED
    assert first.payment.amount_refunded == 0
    assert payment.events.filter(kind=EventKind.REVIEW_FLAGGED).count() == 2


@pytest.mark.parametrize(
    ("reported", "exact"),
    [("9.995", False), ("9.999", False), ("10", True), ("10.000", True)],
)
def test_amounts_are_compared_before_any_rounding(reported, exact):
    payment = PaymentFactory(plan=PlanFactory(price=Decimal("10.00")))

    applied = apply(
        payment, status=Status.COMPLETED, amount=Decimal(reported), currency="USD"
    )

    # Captured money is always booked, as captured; a short one is flagged.
    assert applied.payment.status == Status.COMPLETED
    assert applied.payment.amount_paid == Decimal(reported)
    assert applied.flagged is not exact
    if not exact:
        assert f"provider reported {reported} of 10.00 USD" in (
            applied.payment.review_reason
        )


# --- what a provider asks to keep (StatusResult.data) -------------------------------


def test_provider_data_is_kept_with_the_payment_and_handed_back():
    payment = PaymentFactory(gateway_data={"checkouts": ["c1"]})

    apply(
        payment,
        status=Status.COMPLETED,
        amount=payment.amount,
        currency=payment.currency,
        data={"entity_id": "mada-entity", "payment_id": "p1"},
    )

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.gateway_data == {
        "checkouts": ["c1"],
        "entity_id": "mada-entity",
        "payment_id": "p1",
    }
    assert selectors.payment_ref(payment).data["entity_id"] == "mada-entity"


def test_provider_data_is_kept_even_from_an_ignored_report():
    payment = payment_in(Status.COMPLETED)

    applied = apply(payment, status=Status.PENDING, data={"payment_id": "p2"})

    assert applied.ignored
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.gateway_data["payment_id"] == "p2"


def test_provider_data_never_overwrites_what_the_domain_keeps():
    payment = PaymentFactory()
    apply(payment, status=Status.PENDING, declined=("t1",))

    apply(
        payment,
        status=Status.PENDING,
        declined=("t1",),
        data={"declined_attempts": [], "settling": "no", "entity_id": "e1"},
    )

    payment.refresh_from_db()
    assert payment.gateway_data == {"declined_attempts": ["t1"], "entity_id": "e1"}


def test_unchanged_provider_data_writes_nothing():
    payment = PaymentFactory(gateway_data={"entity_id": "e1"})
    before = payment.date_updated

    applied = apply(payment, status=Status.PENDING, data={"entity_id": "e1"})

    assert "gateway_data" not in applied.change.updates
    payment.refresh_from_db()
    assert payment.date_updated == before
