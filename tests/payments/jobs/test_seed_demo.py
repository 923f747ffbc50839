"""seed_demo's history holds together: what every timeline shows is what happened."""

from __future__ import annotations

import socket
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from payments.models import (
    EventKind,
    Payment,
    ReconciliationRun,
    Refund,
    RefundStatus,
    WebhookDelivery,
)
from payments.states import PAID_STATUSES, PaymentStatus

S = PaymentStatus
DONE_REFUNDS = (RefundStatus.SUCCEEDED, RefundStatus.MANUAL)


def closed_port_url() -> str:
    """A loopback URL nobody listens on: the fake's notifications go nowhere."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def seed(count: int) -> str:
    from django.conf import settings

    settings.DEBUG = True  # seed_demo creates known passwords only in DEBUG
    out = StringIO()
    call_command(
        "seed_demo",
        payments=count,
        providers_port=0,
        site_url=closed_port_url(),
        stdout=out,
    )
    return out.getvalue()


@pytest.mark.slow
@pytest.mark.django_db
def test_the_seeded_history_holds_together(settings):
    """One seed (it takes seconds), every invariant over it."""
    output = seed(120)
    payments = list(Payment.objects.prefetch_related("events", "refunds"))
    check_progress_and_statuses(output, payments)
    check_no_event_precedes_its_payment_and_timelines_run_forward(payments)
    check_the_status_is_where_the_timeline_ends(payments)
    check_paid_money_matches_the_timeline_and_the_refunds(payments)
    check_a_refund_completes_after_it_is_created_and_after_the_payment()
    check_every_review_reason_is_told_by_the_timeline(payments)
    check_support_has_its_practice_cases(payments)
    check_reconciliation_runs_found_nothing_wrong()


def timeline(payment: Payment):
    return sorted(payment.events.all(), key=lambda event: event.pk)


def changes(payment: Payment):
    return [e for e in timeline(payment) if e.kind == EventKind.STATUS_CHANGE]


def check_progress_and_statuses(seeded, payments):
    assert "120/120" in seeded and "[#" in seeded
    assert len(payments) == 120
    assert {p.status for p in payments} == set(S.values)
    assert {p.payment_gateway for p in payments} == {"sandbox", "coinpayments", "mpgs"}
    spread = sorted(p.date_created for p in payments)
    assert (spread[-1] - spread[0]).days > 30


def check_no_event_precedes_its_payment_and_timelines_run_forward(payments):
    for payment in payments:
        events = timeline(payment)
        assert events[0].kind == EventKind.CREATED, payment.ref_id
        assert all(e.created_at >= payment.date_created for e in events)
        stamps = [e.created_at for e in events]
        assert stamps == sorted(stamps), payment.ref_id
        assert payment.date_updated >= payment.date_created


def check_the_status_is_where_the_timeline_ends(payments):
    for payment in payments:
        steps = changes(payment)
        if payment.status == S.PENDING:
            assert steps == [], payment.ref_id
            continue
        assert steps[0].from_status == S.PENDING
        assert steps[-1].to_status == payment.status, payment.ref_id
        for before, after in zip(steps, steps[1:], strict=False):
            assert after.from_status == before.to_status, payment.ref_id


def check_paid_money_matches_the_timeline_and_the_refunds(payments):
    for payment in payments:
        paid_steps = [e for e in changes(payment) if e.to_status == S.COMPLETED]
        if payment.status in PAID_STATUSES:
            assert paid_steps, payment.ref_id
            # Stamped when the change starts; its event row a moment later.
            step = paid_steps[0].created_at
            assert step - timedelta(seconds=1) <= payment.date_paid <= step
            assert payment.amount_paid > 0
        else:
            assert payment.amount_paid == 0 and payment.date_paid is None
        done = [r for r in payment.refunds.all() if r.status in DONE_REFUNDS]
        assert payment.amount_refunded == sum((r.amount for r in done), Decimal(0))
        assert payment.amount_refunded <= payment.amount_paid
        if payment.status == S.REFUNDED:
            assert payment.amount_refunded == payment.amount_paid
        if payment.status == S.PARTIALLY_REFUNDED:
            assert 0 < payment.amount_refunded < payment.amount_paid
        succeeded = [
            e for e in timeline(payment) if e.kind == EventKind.REFUND_SUCCEEDED
        ]
        assert len(succeeded) == sum(r.status == RefundStatus.SUCCEEDED for r in done)


def check_a_refund_completes_after_it_is_created_and_after_the_payment():
    refunds = list(Refund.objects.select_related("payment"))
    assert refunds
    for refund in refunds:
        assert refund.date_created > refund.payment.date_paid
        if refund.status in DONE_REFUNDS:
            assert refund.date_completed >= refund.date_created, refund.pk
        elif refund.status == RefundStatus.FAILED:
            assert refund.date_completed is None or (
                refund.date_completed >= refund.date_created
            )


def check_every_review_reason_is_told_by_the_timeline(payments):
    flagged = [p for p in payments if p.needs_review]
    assert flagged
    for payment in payments:
        events = timeline(payment)
        flags = [e for e in events if e.kind == EventKind.REVIEW_FLAGGED]
        if payment.needs_review:
            assert flags, payment.ref_id
            assert any(e.message in payment.review_reason for e in flags)
        for flag in flags:
            earlier = [e for e in events if e.pk < flag.pk]
            if "late payment" in flag.message:
                # The EXPIRED step comes first, then the provider's success.
                assert any(
                    e.kind == EventKind.STATUS_CHANGE and e.to_status == S.EXPIRED
                    for e in earlier
                ), payment.ref_id
            if flag.message.startswith("underpaid"):
                assert payment.amount_paid < payment.amount
            if "chargeback" in flag.message:
                assert payment.amount_charged_back > 0
            if "voided" in flag.message:
                assert payment.status == S.VOIDED


def check_support_has_its_practice_cases(payments):
    now = timezone.now()
    by_reason = " ".join(p.review_reason for p in payments)
    assert "late payment: provider reported success after EXPIRED" in by_reason
    assert "underpaid" in by_reason
    assert any(p.amount_charged_back > 0 for p in payments)
    assert any(
        p.status == S.PENDING and now - p.date_created > timedelta(days=2)
        for p in payments
    )
    assert any(
        p.status == S.PENDING and now - p.date_created < timedelta(hours=1)
        for p in payments
    )
    assert Refund.objects.filter(status=RefundStatus.FAILED).exists()
    assert Refund.objects.filter(status=RefundStatus.MANUAL).exists()
    rejected = WebhookDelivery.objects.filter(signature_valid=False)
    assert set(rejected.values_list("gateway", flat=True)) >= {"coinpayments", "mpgs"}
    assert set(rejected.values_list("outcome", flat=True)) == {"REJECTED"}


def check_reconciliation_runs_found_nothing_wrong():
    runs = ReconciliationRun.objects.all()
    assert runs.count() >= 3
    assert runs.aggregate(errors=Sum("errors"))["errors"] == 0
    assert runs.aggregate(checked=Sum("checked"))["checked"] > 0
    assert not runs.filter(finished_at__isnull=True).exists()
