"""Status polls cannot tie up a web worker while a provider hangs.

Issue 22, case 3: at most STATUS_REFRESH_CONCURRENCY customer-facing
refreshes per process wait on providers; a poll beyond that answers the
stored status at once, and /health/ never waits behind them. Checked against
a real gunicorn process with gthread workers (as the deploy guide runs it)
and the fake MPGS hanging every Retrieve Order.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from payments.models import Payment
from payments.services.status import customer_refresh_slot
from tests.conftest import production_env, subprocess_database_url
from tests.servers import gunicorn

CAP = 2
THREADS = 4
POLLS = 8
BUDGET = 2.0
HANG = 10.0


def pending_mpgs(plan, count: int) -> list[str]:
    expiry = timezone.now() + timedelta(hours=2)
    payments = Payment.objects.bulk_create(
        Payment(
            plan=plan,
            email=f"p{i}@example.com",
            amount=plan.price,
            currency=plan.currency,
            payment_gateway="mpgs",  # PENDING: a new payment's status
            gateway_session_id=f"SESSION{i:06d}",
            expiry_datetime=expiry,
        )
        for i in range(count)
    )
    return [payment.ref_id for payment in payments]


def timed_get(url: str) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = requests.get(url, headers={"Connection": "close"}, timeout=30)
    return time.monotonic() - started, response


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_polls_past_the_cap_answer_at_once_and_health_never_waits(plan, fake):
    refs = pending_mpgs(plan, POLLS)
    mpgs = fake.gateway_settings()["mpgs"]
    env = production_env(
        DATABASE_URL=subprocess_database_url(),
        PAYMENT_GATEWAYS="mpgs",
        MPGS_API_BASE_URL=str(mpgs["api_base_url"]),
        MPGS_MERCHANT_ID=str(mpgs["merchant_id"]),
        MPGS_API_PASSWORD=str(mpgs["api_password"]),
        MPGS_WEBHOOK_SECRET=str(mpgs["webhook_secret"]),
        RATE_LIMIT_STATUS="",
        STATUS_REFRESH_CONCURRENCY=str(CAP),
        STATUS_REFRESH_BUDGET_SECONDS=str(BUDGET),
    )
    polls: list[tuple[float, requests.Response]] = []
    lock = threading.Lock()

    with gunicorn(env, threads=THREADS) as base:
        fake.add_fault("mpgs:order", "timeout", times=10**6, seconds=HANG)
        asked = fake.count("mpgs:order")

        def poll(ref_id: str) -> None:
            result = timed_get(f"{base}/api/payments/status/{ref_id}/")
            with lock:
                polls.append(result)

        pollers = [threading.Thread(target=poll, args=(ref,)) for ref in refs]
        try:
            for thread in pollers:
                thread.start()
            time.sleep(0.3)  # the first refreshes are waiting on MPGS by now
            health = [timed_get(f"{base}/health/") for _ in range(3)]
            for thread in pollers:
                thread.join(30)
            hung = fake.count("mpgs:order") - asked
        finally:
            fake.clear_faults()

    assert [r.status_code for _, r in polls] == [200] * POLLS
    assert {r.json()["status"] for _, r in polls} == {"PENDING"}
    # Only CAP polls waited on MPGS (each for its budget); the rest answered
    # the stored status without asking.
    assert hung == CAP
    waited = sorted(seconds for seconds, _ in polls)[-CAP:]
    assert all(BUDGET - 0.5 < seconds < BUDGET + 1.5 for seconds in waited)
    quick = sorted(seconds for seconds, _ in polls)[:-CAP]
    assert max(quick) < 1.0, quick
    assert [r.status_code for _, r in health] == [200] * 3
    assert max(seconds for seconds, _ in health) < 1.0, health


def test_a_slot_is_given_back_even_when_the_refresh_fails(settings):
    settings.STATUS_REFRESH_CONCURRENCY = 1
    with pytest.raises(RuntimeError), customer_refresh_slot() as free:
        assert free
        with customer_refresh_slot() as second:
            assert not second  # the one slot is taken
        raise RuntimeError("provider fault")
    with customer_refresh_slot() as again:
        assert again
