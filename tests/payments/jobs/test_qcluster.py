"""A real `manage.py qcluster` process runs a queued reconciliation.

The broker is whatever the environment configures: the ORM broker by default,
Redis when REDIS_URL is set (.ci/run runs this file both ways).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from payments import services
from payments.models import Payment, ReconciliationRun
from tests.conftest import subprocess_database_url

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def start_cluster() -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "false",
        "SANDBOX_ENABLED": "true",
        "SANDBOX_ALLOW_WITHOUT_DEBUG": "true",
        "PAYMENT_GATEWAYS": "sandbox",
        "Q_WORKERS": "1",
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
    }
    # Its own process group: a qcluster may ignore SIGTERM, so the group is
    # killed outright after a short grace period.
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop_cluster(process: subprocess.Popen) -> str:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    output, _ = process.communicate(timeout=10)
    return output.decode(errors="replace")


def test_broker_follows_the_environment():
    from django_q.brokers import get_broker

    expected = "Redis" if os.environ.get("REDIS_URL") else "ORM"
    assert type(get_broker()).__name__ == expected


def test_update_pending_is_run_by_a_real_cluster(client, plan, sandbox, settings):
    settings.RECONCILE_API_TOKEN = "cluster-test-token"
    payment = services.payment_create(
        plan=plan, gateway_code="sandbox", email="q@example.com", site_url="http://t"
    )
    # The payer paid at the provider, but its notification never arrived.
    sandbox.choose(payment.gateway_session_id, "paid")
    Payment.objects.filter(pk=payment.pk).update(next_check_at=None)
    response = client.post(
        "/api/payments/update-pending/",
        headers={"Authorization": "Bearer cluster-test-token"},
    )
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    cluster = start_cluster()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run = ReconciliationRun.objects.get(pk=run_id)
            if run.finished_at:
                break
            time.sleep(0.3)
    finally:
        log = stop_cluster(cluster)
    run = ReconciliationRun.objects.get(pk=run_id)
    assert run.finished_at, f"the cluster never ran the task:\n{log[-3000:]}"
    assert (run.checked, run.changed) == (1, 1)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    change = payment.events.get(kind="STATUS_CHANGE")
    assert change.source == "reconcile"


def test_queued_webhooks_are_applied_by_a_real_cluster(client, plan, sandbox, settings):
    from django.core.cache import cache

    from payments.models import WebhookDelivery
    from payments.services.webhooks import APPLY_KEY

    settings.WEBHOOK_APPLY = "queued"
    cache.delete(APPLY_KEY)
    payments = [
        services.payment_create(
            plan=plan, gateway_code="sandbox", email=f"w{i}@example.com", site_url="t"
        )
        for i in range(5)
    ]
    for payment in payments:
        body, headers = sandbox.choose(payment.gateway_session_id, "paid")
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        response = client.post(
            "/api/webhooks/sandbox/",
            body,
            content_type="application/json",
            headers=headers,
        )
        assert response.status_code == 200
    assert not Payment.objects.filter(status=Payment.Status.COMPLETED).exists()
    cluster = start_cluster()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if Payment.objects.filter(status=Payment.Status.COMPLETED).count() == 5:
                break
            time.sleep(0.3)
    finally:
        log = stop_cluster(cluster)
    completed = Payment.objects.filter(status=Payment.Status.COMPLETED).count()
    assert completed == 5, f"the cluster did not apply them:\n{log[-3000:]}"
    outcomes = set(WebhookDelivery.objects.values_list("outcome", flat=True))
    assert outcomes == {WebhookDelivery.Outcome.APPLIED}
