"""Reconciliation and expiry jobs against the fake providers."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from payments import services, tasks
from payments.models import EventKind, Payment, PaymentEvent, ReconciliationRun

Status = Payment.Status


def make_cp_payments(plan, count: int) -> list[Payment]:
    payments = [
        services.payment_create(
            plan=plan,
            gateway_code="coinpayments",
            email=f"r{i}@example.com",
            site_url="http://testserver",
        )
        for i in range(count)
    ]
    # Make them all due now.
    Payment.objects.filter(pk__in=[p.pk for p in payments]).update(next_check_at=None)
    return payments


def status_changes() -> int:
    return PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).count()


@pytest.mark.django_db
def test_reconcile_batches_25_ids_and_applies_changes(plan, providers):
    payments = make_cp_payments(plan, 60)
    for payment in payments[:20]:
        providers.cp_set_status(payment.gateway_transaction_id, 100)
    for payment in payments[20:30]:
        providers.cp_set_status(payment.gateway_transaction_id, -1)
    providers.reset_calls()
    summary = tasks.reconcile_pending()
    assert (
        summary["checked"] == 60 and summary["changed"] == 30 and summary["errors"] == 0
    )
    # Concurrent calls may reach the provider out of nonce order; those are
    # refused and retried, so count the answered ones.
    assert providers.count("cp:get_tx_info_multi") - providers.cp_nonce_rejections == 3
    assert providers.count("cp:get_tx_info") == 0
    counts = dict(Payment.objects.values_list("status").annotate(n=Count("id")))
    assert counts == {"COMPLETED": 20, "FAILED": 10, "PENDING": 30}
    assert status_changes() == 30
    run = ReconciliationRun.objects.get()
    assert (run.checked, run.changed, run.errors) == (60, 30, 0)
    assert run.finished_at is not None
    # Nothing is due again right away: the pending ones backed off.
    providers.reset_calls()
    assert tasks.reconcile_pending()["checked"] == 0
    assert providers.count("cp:get_tx_info_multi") == 0
    still = Payment.objects.filter(status=Status.PENDING)
    assert all(p.next_check_at > timezone.now() for p in still)
    assert set(still.values_list("check_attempts", flat=True)) == {1}


@pytest.mark.django_db
def test_provider_faults_back_off_and_count_errors(plan, providers):
    make_cp_payments(plan, 30)
    providers.add_fault("cp:get_tx_info_multi", "503", times=1)
    summary = tasks.reconcile_pending()
    assert summary["errors"] > 0 and summary["changed"] == 0
    assert Payment.objects.filter(status=Status.PENDING).count() == 30
    assert not Payment.objects.filter(next_check_at__lte=timezone.now()).exists()


@pytest.mark.django_db
def test_expire_checks_the_provider_first(plan, providers):
    late, paid = make_cp_payments(plan, 2)
    providers.cp_set_status(paid.gateway_transaction_id, 100)
    past = timezone.now() - timedelta(minutes=1)
    Payment.objects.filter(pk__in=[late.pk, paid.pk]).update(expiry_datetime=past)
    assert tasks.expire_overdue() == 1
    late.refresh_from_db()
    paid.refresh_from_db()
    assert late.status == Status.EXPIRED and "window ended" in late.failure_reason
    assert paid.status == Status.COMPLETED


@pytest.mark.django_db
def test_expire_keeps_pending_when_the_provider_is_down(plan, providers):
    (payment,) = make_cp_payments(plan, 1)
    Payment.objects.filter(pk=payment.pk).update(
        expiry_datetime=timezone.now() - timedelta(minutes=1)
    )
    providers.add_fault("*", "503", times=3)
    assert tasks.expire_overdue() == 0
    payment.refresh_from_db()
    assert payment.status == Status.PENDING


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_check_each_payment_once(plan, providers):
    payments = make_cp_payments(plan, 50)
    for payment in payments:
        providers.cp_set_status(payment.gateway_transaction_id, 100)
    providers.reset_calls()
    barrier = threading.Barrier(2)
    summaries = []

    def run():
        try:
            barrier.wait()
            summaries.append(tasks.reconcile_pending())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(s["checked"] for s in summaries) == 50
    assert status_changes() == 50
    assert Payment.objects.filter(status=Status.COMPLETED).count() == 50
    # Claimed rows are never asked about twice (the two runs may split them
    # into more than two batches).
    assert sorted(providers.cp_ids_asked.values()) == [1] * 50
    assert set(providers.cp_ids_asked) == {p.gateway_transaction_id for p in payments}


@pytest.mark.django_db
def test_setup_schedules_is_idempotent():
    from django.core.management import call_command
    from django_q.models import Schedule

    call_command("setup_schedules")
    first = dict(Schedule.objects.values_list("name", "next_run"))
    call_command("setup_schedules")
    assert dict(Schedule.objects.values_list("name", "next_run")) == first
    assert set(first) == {
        "reconcile-pending-payments",
        "reconcile-pending-refunds",
        "expire-overdue-payments",
        "purge-expired-exports",
        "refresh-dashboard-rollups",
        "prune-audit-log",
        "prune-rejected-deliveries",
        "lapse-refund-approvals",
    }


@pytest.mark.django_db
def test_expiry_rotates_past_payments_it_cannot_check(plan, providers):
    """Unreachable payments stay pending but do not starve the others."""
    stuck, fine = make_cp_payments(plan, 2)
    past = timezone.now() - timedelta(minutes=1)
    Payment.objects.filter(pk__in=[stuck.pk, fine.pk]).update(expiry_datetime=past)
    Payment.objects.filter(pk=stuck.pk).update(last_checked_at=None)
    Payment.objects.filter(pk=fine.pk).update(last_checked_at=past)
    providers.add_fault("*", "503", times=1)  # the first (stuck) check fails
    assert services.payment_expire_overdue(limit=1) == 0
    assert services.payment_expire_overdue(limit=1) == 1
    fine.refresh_from_db()
    stuck.refresh_from_db()
    assert (fine.status, stuck.status) == (Status.EXPIRED, Status.PENDING)
