"""Customer-facing refreshes against a hanging provider: a total time budget.

The fake MPGS hangs every Retrieve Order; the adapter's own timeouts (20 s
read, as in production) and retries would hold the request far longer. The
status API and the return page answer the stored status within the budget.
Bounds are generous (budget + 1.5 s): they tell "bounded" from "9-19 s".
"""

from __future__ import annotations

import json
import time

import pytest

from payments.models import EventKind, IdempotencyRecord, Payment

BUDGET = 1.0
HANG = 8.0


@pytest.fixture
def hanging_mpgs(providers, gateway_settings, settings):
    from gateways import registry

    settings.STATUS_REFRESH_BUDGET_SECONDS = BUDGET
    settings.STATUS_REFRESH_SECONDS = 0
    gateway_settings["mpgs"].update(read_timeout=20.0, connect_timeout=5.0)
    registry.reset()
    return providers


def create_mpgs(client, plan) -> Payment:
    response = client.post(
        "/api/payments/",
        json.dumps({"plan": plan.code, "payment_gateway": "mpgs", "email": "a@b.io"}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return Payment.objects.get(ref_id=response.json()["ref_id"])


@pytest.mark.slow
@pytest.mark.django_db
def test_status_poll_answers_the_stored_status_within_the_budget(
    client, plan, hanging_mpgs
):
    fake = hanging_mpgs
    payment = create_mpgs(client, plan)
    schedule = (payment.next_check_at, payment.check_attempts)
    fake.add_fault("mpgs:order", "timeout", times=10, seconds=HANG)
    asked = fake.count("mpgs:order")

    started = time.monotonic()
    response = client.get(f"/api/payments/status/{payment.ref_id}/")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.json()["status"] == "PENDING"
    assert elapsed < BUDGET + 1.5, f"status poll took {elapsed:.1f} s"
    # One call, no retries; the reconciler's schedule is left for it to check.
    assert fake.count("mpgs:order") - asked == 1
    payment.refresh_from_db()
    assert (payment.next_check_at, payment.check_attempts) == schedule


@pytest.mark.slow
@pytest.mark.django_db
def test_return_page_shows_the_stored_status_within_the_budget(
    client, plan, hanging_mpgs
):
    fake = hanging_mpgs
    payment = create_mpgs(client, plan)
    fake.add_fault("mpgs:order", "timeout", times=10, seconds=HANG)

    started = time.monotonic()
    response = client.get(f"/checkout/return/{payment.ref_id}/?resultIndicator=x")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed < BUDGET + 1.5, f"return page took {elapsed:.1f} s"
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
    assert payment.events.filter(kind=EventKind.GATEWAY_ERROR).exists()


def test_a_spent_budget_fails_the_next_call_at_once(fake):
    from gateways.base import GatewayUnavailable
    from gateways.http import GatewayHTTP, time_budget

    http = GatewayHTTP("fake", read_timeout=20.0)
    fake.add_fault("*", "timeout", times=1, seconds=HANG)
    started = time.monotonic()
    with time_budget(0.5):
        with pytest.raises(GatewayUnavailable, match="read timeout"):
            http.request("GET", f"{fake.url}/anything", op="probe", idempotent=True)
        with pytest.raises(GatewayUnavailable, match="budget spent") as spent:
            http.request("GET", f"{fake.url}/anything", op="probe", idempotent=True)
    assert spent.value.contacted is False
    assert time.monotonic() - started < 0.5 + 1.5
    fake.clear_faults()


# --- idempotency: a 5xx is not a final answer ----------------------------------------


@pytest.mark.slow
@pytest.mark.django_db
def test_a_real_provider_503_frees_the_idempotency_key(client, plan, providers):
    """MPGS answers 503 to the first session request; the same key then succeeds."""
    body = json.dumps({"plan": plan.code, "payment_gateway": "mpgs", "email": "a@b.io"})
    headers = {"Idempotency-Key": "order-503-then-ok"}
    providers.add_fault("mpgs:session", "503", times=1)

    first = client.post(
        "/api/payments/", body, content_type="application/json", headers=headers
    )
    assert first.status_code == 503
    assert first.json()["error"].startswith("the payment provider is unavailable")
    assert not IdempotencyRecord.objects.exists()

    second = client.post(
        "/api/payments/", body, content_type="application/json", headers=headers
    )
    replay = client.post(
        "/api/payments/", body, content_type="application/json", headers=headers
    )
    assert second.status_code == replay.status_code == 201
    assert second.content == replay.content
    assert providers.count("mpgs:session") == 2
    record = IdempotencyRecord.objects.get()
    assert record.response_status == 201
    assert record.payment.ref_id == second.json()["ref_id"]
    statuses = sorted(Payment.objects.values_list("status", flat=True))
    assert statuses == ["FAILED", "PENDING"]
