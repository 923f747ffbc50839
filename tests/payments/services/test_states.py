"""The transition table, the guarded transition and provider reports."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase as HypothesisTestCase

from gateways.base import StatusResult
from payments.exceptions import IllegalTransition
from payments.models import EventKind, Payment
from payments.services.status import payment_apply_status
from payments.services.transitions import SYSTEM, Change, payments_change
from payments.states import TRANSITIONS, can_transition
from payments.states import PaymentStatus as S
from tests.factories import PaymentFactory, PlanFactory, payment_in

ALL = [s.value for s in S]


def report(status, amount="10.00", currency="USD", refunded=None):
    return StatusResult(
        ref_id="x",
        status=status,
        amount=None if amount is None else Decimal(amount),
        currency=currency,
        amount_refunded=None if refunded is None else Decimal(refunded),
        message=f"test says {status}",
    )


def apply(payment, *args, **kwargs):
    return payment_apply_status(
        payment_id=payment.pk,
        result=report(*args, **kwargs),
        actor=SYSTEM,
        kind=EventKind.WEBHOOK,
    )


@pytest.mark.parametrize(("frm", "to"), list(itertools.product(ALL, ALL)))
def test_table_matches_the_design(frm, to):
    allowed = {
        ("PENDING", "COMPLETED"),
        ("PENDING", "FAILED"),
        ("PENDING", "EXPIRED"),
        ("EXPIRED", "COMPLETED"),
        ("FAILED", "COMPLETED"),
        ("COMPLETED", "PARTIALLY_REFUNDED"),
        ("COMPLETED", "REFUNDED"),
        ("COMPLETED", "VOIDED"),
        ("PARTIALLY_REFUNDED", "PARTIALLY_REFUNDED"),
        ("PARTIALLY_REFUNDED", "REFUNDED"),
        # Captured money first seen already refunded (e.g. in the portal).
        *(
            (frm, to)
            for frm in ("PENDING", "EXPIRED", "FAILED")
            for to in ("PARTIALLY_REFUNDED", "REFUNDED")
        ),
    }
    assert can_transition(frm, to) == ((frm, to) in allowed)
    assert set(TRANSITIONS) == set(ALL)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("frm", "to"),
    [(f, t) for f, t in itertools.product(ALL, ALL) if not can_transition(f, t)],
)
def test_illegal_transitions_are_refused_and_leave_no_event(frm, to):
    payment = payment_in(frm)
    before = payment.events.count()
    move = Change(status=to)
    with pytest.raises(IllegalTransition, match=f"{frm} -> {to}"):
        payments_change(decisions={payment.pk: lambda _p: move}, actor=SYSTEM)
    payment.refresh_from_db()
    assert payment.status == frm
    assert payment.events.count() == before


@pytest.mark.django_db
def test_completion_sets_paid_fields_and_one_event():
    payment = PaymentFactory()
    applied = apply(payment, "COMPLETED")
    payment.refresh_from_db()
    assert applied.changed and payment.status == S.COMPLETED
    assert payment.date_paid is not None and payment.amount_paid == Decimal("10.00")
    kinds = list(payment.events.values_list("kind", flat=True))
    assert kinds == [EventKind.WEBHOOK, EventKind.STATUS_CHANGE]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("9.99", "underpaid: provider reported 9.99 of 10.00 USD"),
        ("10.50", "overpaid: provider reported 10.50 for a price of 10.00 USD"),
    ],
)
def test_a_short_or_excess_capture_is_paid_with_what_was_captured_and_flagged(
    amount, reason
):
    payment = PaymentFactory()
    applied = apply(payment, "COMPLETED", amount=amount)
    payment.refresh_from_db()
    assert applied.flagged and applied.changed
    assert payment.status == S.COMPLETED and payment.date_paid is not None
    assert payment.amount_paid == Decimal(amount)
    assert payment.needs_review and payment.review_reason == reason


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "currency", "reason"),
    [
        ("10.00", "EUR", "currency mismatch"),
        (None, "USD", "without an amount"),
        ("0", "USD", "nothing captured"),
    ],
)
def test_captured_money_that_cannot_be_booked_is_flagged_and_never_expires(
    amount, currency, reason
):
    payment = PaymentFactory()
    applied = apply(payment, "COMPLETED", amount=amount, currency=currency)
    payment.refresh_from_db()
    assert applied.flagged and not applied.changed
    assert payment.status == S.PENDING and payment.date_paid is None
    assert payment.needs_review and reason in payment.review_reason
    assert "settling" in payment.gateway_data  # held from expiry


@pytest.mark.django_db
def test_backwards_reports_are_recorded_as_ignored():
    payment = PaymentFactory()
    apply(payment, "COMPLETED")
    for late in ("PENDING", "FAILED", "EXPIRED"):
        assert apply(payment, late).ignored
    payment.refresh_from_db()
    assert payment.status == S.COMPLETED
    ignored = payment.events.filter(kind=EventKind.IGNORED_TRANSITION)
    assert sorted(ignored.values_list("to_status", flat=True)) == [
        "EXPIRED",
        "FAILED",
        "PENDING",
    ]


@pytest.mark.django_db
def test_late_payment_after_expiry_completes_and_needs_review():
    payment = PaymentFactory()
    apply(payment, "EXPIRED")
    apply(payment, "COMPLETED")
    payment.refresh_from_db()
    assert payment.status == S.COMPLETED
    assert payment.needs_review and "late payment" in payment.review_reason


@pytest.mark.django_db
def test_provider_refund_totals_move_to_partial_then_full():
    payment = PaymentFactory()
    apply(payment, "COMPLETED")
    apply(payment, "PARTIALLY_REFUNDED", refunded="4.00")
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == (
        S.PARTIALLY_REFUNDED,
        Decimal("4"),
    )
    apply(payment, "REFUNDED", refunded="10.00")
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == (S.REFUNDED, Decimal("10"))


class TestProviderReportSequences(HypothesisTestCase):
    """Any sequence of provider reports keeps the invariants."""

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(ALL + [None]),
                st.sampled_from(["10.00", "9.00", "12.00", None]),
                st.sampled_from(["USD", "USD", "EUR"]),
                st.sampled_from([None, "0", "3.00", "10.00", "15.00"]),
            ),
            max_size=12,
        )
    )
    def test_invariants(self, reports):
        plan = PlanFactory(code="prop", price=Decimal("10.00"), currency="USD")
        payment = PaymentFactory(plan=plan)
        ever_paid = False
        for status, amount, currency, refunded in reports:
            before = Payment.objects.get(pk=payment.pk).status
            apply(payment, status, amount=amount, currency=currency, refunded=refunded)
            now = Payment.objects.get(pk=payment.pk)
            ever_paid = ever_paid or now.status in (
                S.COMPLETED,
                S.PARTIALLY_REFUNDED,
                S.REFUNDED,
            )
            if before in (S.COMPLETED, S.PARTIALLY_REFUNDED, S.REFUNDED):
                assert now.status not in (S.PENDING, S.FAILED, S.EXPIRED)
            assert before == now.status or can_transition(before, now.status)
            assert (now.date_paid is not None) == ever_paid
            assert Decimal(0) <= now.amount_refunded <= now.amount_paid
            changes = now.events.filter(kind=EventKind.STATUS_CHANGE).count()
            assert changes <= len(reports)
