"""Reconciliation across real processes: two at once, and one killed mid-batch.

`manage.py reconcile` runs in subprocesses against the test database and the
fake CoinPayments server on loopback; the fake counts every request.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from payments import services
from payments.models import EventKind, Payment, PaymentEvent, ReconciliationRun
from payments.states import PaymentStatus as S
from tests.conftest import subprocess_database_url
from tests.payments.jobs.test_tasks import make_cp_payments

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def pending_coin_payments(plan, fake, count: int, paid_every: int = 4):
    """Create payments at the fake provider, a share of them paid there; all due."""
    payments = make_cp_payments(plan, count)
    for payment in payments[::paid_every]:
        fake.cp_set_status(payment.gateway_transaction_id, 100)
    fake.reset_calls()
    return payments


def reconcile_process(fake, *args: str) -> subprocess.Popen:
    cp = settings.GATEWAY_SETTINGS["coinpayments"]
    env = {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "false",
        "PAYMENT_GATEWAYS": "coinpayments",
        "COINPAYMENTS_PUBLIC_KEY": cp["public_key"],
        "COINPAYMENTS_PRIVATE_KEY": cp["private_key"],
        "COINPAYMENTS_MERCHANT_ID": cp["merchant_id"],
        "COINPAYMENTS_IPN_SECRET": cp["ipn_secret"],
        "COINPAYMENTS_API_URL": f"{fake.url}/api.php",
        "RECONCILE_CONCURRENCY": "4",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "reconcile", *args],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def status_changes() -> int:
    return PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).count()


def test_two_processes_check_each_due_payment_exactly_once(plan, providers):
    payments = pending_coin_payments(plan, providers, 1000)
    providers.latency = 0.02  # so the two processes overlap

    processes = [reconcile_process(providers, "--limit", "500") for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in processes]

    assert [p.returncode for p in processes] == [0, 0], outputs
    runs = list(ReconciliationRun.objects.values_list("checked", "errors"))
    assert sorted(runs) == [(500, 0), (500, 0)], outputs
    # Each id asked about exactly once, in full batches of 25.
    assert sorted(providers.cp_ids_asked.values()) == [1] * 1000
    assert set(providers.cp_ids_asked) == {p.gateway_transaction_id for p in payments}
    assert providers.count("cp:get_tx_info_multi") == 40
    assert status_changes() == 250
    attempts = dict(
        Payment.objects.filter(status=S.PENDING)
        .values_list("check_attempts")
        .annotate(n=Count("id"))
    )
    assert attempts == {1: 750}
    assert Payment.objects.filter(status=S.COMPLETED).count() == len(payments[::4])


def test_a_killed_run_leaves_nothing_half_written_and_the_next_finishes(
    plan, providers
):
    payments = pending_coin_payments(plan, providers, 400, paid_every=2)
    providers.latency = 0.25  # slow answers: the kill lands mid-cycle
    process = reconcile_process(providers)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and status_changes() == 0:
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL

    killed = ReconciliationRun.objects.get()
    assert killed.finished_at is None
    changed_ids = set(
        PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).values_list(
            "payment_id", flat=True
        )
    )
    completed = Payment.objects.filter(status=S.COMPLETED)
    # Every payment is either fully settled (status, money, date, one event)
    # or untouched: no status without its event, no event without its status.
    assert set(completed.values_list("pk", flat=True)) == changed_ids
    assert 0 < len(changed_ids) < 200
    assert not completed.filter(date_paid__isnull=True).exists()
    assert not completed.exclude(amount_paid=plan.price).exists()
    assert status_changes() == len(changed_ids)

    providers.latency = 0
    # The killed run's claims lapse after the lease; the next run takes them.
    later = timezone.now() + services.reconcile.CLAIM_LEASE + timedelta(seconds=1)
    run = services.reconcile_cycle(trigger="after-kill", now=later)

    assert run.finished_at is not None
    assert run.errors == 0
    assert Payment.objects.filter(status=S.COMPLETED).count() == len(payments[::2])
    assert status_changes() == len(payments[::2])
    assert not Payment.objects.filter(status=S.PENDING, check_attempts=0).exists()
