"""The engine: one transition path, one check schedule, and the defects it fixed.

Each `test_regression_*` failed on the main branch before the engine rework.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from payments import services, states
from payments.exceptions import IllegalTransition, RefundNotAllowed
from payments.models import (
    EventKind,
    IdempotencyRecord,
    Payment,
    PaymentEvent,
    ReconciliationRun,
    Refund,
    RefundStatus,
)
from payments.services.transitions import SYSTEM, Change, payments_change
from payments.states import PaymentStatus as S
from tests.factories import PaymentFactory, payment_in
from tests.payments.jobs.test_tasks import make_cp_payments
from tests.payments.services.test_refunds import paid_payment

pytestmark = pytest.mark.django_db


# --- the three defects -----------------------------------------------------------------


def test_regression_customer_polls_never_push_the_reconcilers_check(
    client, plan, sandbox, settings
):
    """Six status polls once set check_attempts to 6 and the next check 6 h out."""
    settings.STATUS_REFRESH_SECONDS = 0
    payment = services.payment_create(
        plan=plan, gateway_code="sandbox", email="p@example.com", site_url="http://t"
    )
    schedule = ("check_attempts", "next_check_at", "last_checked_at")
    before = Payment.objects.values(*schedule).get(pk=payment.pk)

    for _ in range(6):
        response = client.get(f"/api/payments/status/{payment.ref_id}/")
        assert response.json()["status"] == "PENDING"
        client.get(f"/checkout/return/{payment.ref_id}/")

    assert Payment.objects.values(*schedule).get(pk=payment.pk) == before


def test_regression_manual_refund_needs_no_configured_gateway(
    plan, sandbox, gateway_settings, admin_user
):
    """Recording a manual refund once failed when the gateway was unconfigured."""
    from gateways import registry

    payment = paid_payment(plan, sandbox)
    gateway_settings["sandbox"]["enabled"] = False
    registry.reset()

    refund = services.refund_request(
        payment_id=payment.pk,
        amount=Decimal("4.00"),
        actor=services.Actor("admin", user=admin_user),
        reason="paid back by bank transfer",
        manual=True,
    )

    assert refund.status == RefundStatus.MANUAL
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == (
        S.PARTIALLY_REFUNDED,
        Decimal("4.00"),
    )
    # A refund through the gateway is refused with the reason, writing nothing.
    with pytest.raises(RefundNotAllowed, match="not configured"):
        services.refund_request(
            payment_id=payment.pk, amount=Decimal("1"), actor=SYSTEM
        )
    assert Refund.objects.count() == 1


def test_regression_idempotency_record_shows_its_json_once(admin_client, payment=None):
    """The admin once showed the stored answer as a JSON string inside JSON."""
    body = json.dumps({"ref_id": "abc", "status": "PENDING"})
    record = IdempotencyRecord.objects.create(
        key="k-1", fingerprint="f", response_status=201, response_body=body
    )
    page = admin_client.get(
        reverse("admin:payments_idempotencyrecord_change", args=[record.pk])
    ).content.decode()
    assert "&quot;ref_id&quot;: &quot;abc&quot;" in page
    assert "\\&quot;" not in page and '\\"' not in page


# --- one transition path ---------------------------------------------------------------


def test_a_status_cannot_be_smuggled_in_as_a_field_update():
    payment = PaymentFactory()
    smuggled = Change(updates={"status": S.COMPLETED})
    with pytest.raises(IllegalTransition, match="Change.status only"):
        payments_change(decisions={payment.pk: lambda _p: smuggled}, actor=SYSTEM)
    payment.refresh_from_db()
    assert payment.status == S.PENDING


def test_a_batch_is_written_whole_or_not_at_all():
    good, bad = PaymentFactory(), payment_in(S.REFUNDED)
    changes_before = PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).count()
    decisions = {
        good.pk: lambda _p: Change(status=S.FAILED, message="x"),
        bad.pk: lambda _p: Change(status=S.COMPLETED),
    }
    with pytest.raises(IllegalTransition):
        payments_change(decisions=decisions, actor=SYSTEM)
    assert Payment.objects.get(pk=good.pk).status == S.PENDING
    assert Payment.objects.get(pk=bad.pk).status == S.REFUNDED
    assert (
        PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).count()
        == changes_before
    )


def test_a_batch_writes_its_events_in_one_insert(django_assert_max_num_queries):
    payments = [PaymentFactory() for _ in range(10)]
    decisions = {
        p.pk: (lambda _p: Change(status=S.FAILED, message="gone")) for p in payments
    }
    # SAVEPOINT/BEGIN, one SELECT ... FOR UPDATE, ten UPDATEs, one INSERT, RELEASE.
    with django_assert_max_num_queries(14):
        payments_change(decisions=decisions, actor=SYSTEM)
    assert PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).count() == 10


def test_report_verdicts_are_a_table_lookup():
    assert states.verdict(S.PENDING, S.COMPLETED) is states.Verdict.PAY
    assert states.verdict(S.COMPLETED, S.PENDING) is states.Verdict.IGNORE
    assert states.verdict(S.REFUNDED, S.COMPLETED) is states.Verdict.KEEP
    assert states.verdict(S.EXPIRED, None) is states.Verdict.KEEP
    for (current, reported), verdict in states.REPORTS.items():
        moves = verdict in (states.Verdict.PAY, states.Verdict.END)
        if reported == S.VOIDED and verdict is states.Verdict.END:
            reported = states.VOID_BEFORE_CAPTURE  # an authorisation voided
        assert not moves or states.can_transition(current, reported)
        if verdict is states.Verdict.VOID:
            assert states.can_transition(current, S.VOIDED)
    assert states.refunded_status(Decimal("5"), Decimal("10")) == S.PARTIALLY_REFUNDED
    assert states.refunded_status(Decimal("10"), Decimal("10")) == S.REFUNDED


# --- reconciliation ------------------------------------------------------------------------


def test_reconcile_command_runs_one_cycle_with_progress_and_a_summary(
    plan, providers, capsys
):
    payments = make_cp_payments(plan, 30)
    providers.cp_set_status(payments[0].gateway_transaction_id, 100)

    call_command("reconcile")

    output = capsys.readouterr()
    run = ReconciliationRun.objects.get()
    assert (run.trigger, run.checked, run.changed, run.errors) == ("command", 30, 1, 0)
    assert run.finished_at is not None and run.duration_ms is not None
    assert "30/30" in output.err  # the progress bar
    assert "checked 30, changed 1, expired 0, errors 0" in output.out


# Transactional: pool threads read the sandbox's ledger (the database cache).
@pytest.mark.django_db(transaction=True)
def test_an_outage_is_recorded_and_the_other_gateway_still_settles(
    plan, providers, sandbox
):
    coin = services.payment_create(
        plan=plan, gateway_code="coinpayments", email="c@example.com", site_url="h"
    )
    sandboxed = services.payment_create(
        plan=plan, gateway_code="sandbox", email="s@example.com", site_url="h"
    )
    sandbox.choose(sandboxed.gateway_session_id, "paid")  # paid, never notified
    providers.add_fault("cp:get_tx_info_multi", "500", times=10)
    Payment.objects.update(next_check_at=None)

    run = services.reconcile_cycle(trigger="test")

    assert (run.checked, run.changed, run.errors) == (2, 1, 1)
    assert "coinpayments" in run.message
    assert Payment.objects.get(pk=sandboxed.pk).status == S.COMPLETED
    coin.refresh_from_db()
    assert coin.status == S.PENDING and coin.check_attempts == 1
    assert coin.next_check_at > timezone.now() + timedelta(seconds=30)


def test_run_now_queues_a_cycle_from_the_admin(
    admin_client, django_capture_on_commit_callbacks
):
    url = reverse("admin:payments_reconciliationrun_run_now")
    assert admin_client.get(url).status_code == 200  # the dialog, nothing queued
    assert not ReconciliationRun.objects.exists()
    with django_capture_on_commit_callbacks() as queued:
        response = admin_client.post(url, {"_form_submitted": "True"})
    assert response.status_code == 302
    run = ReconciliationRun.objects.get()
    assert run.trigger == "admin:admin"
    assert len(queued) == 1
