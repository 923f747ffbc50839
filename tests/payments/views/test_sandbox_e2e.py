"""The sandbox flow end to end over real HTTP (Django's live server)."""

from __future__ import annotations

import re

import pytest
import requests

from payments.models import EventKind, Payment
from tests.api import create_payment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def start_payment(live_server, plan) -> tuple[requests.Session, dict]:
    http = requests.Session()
    created = create_payment(
        live_server.url, plan, "sandbox", email="e2e@example.com", http=http
    )
    return http, created


def press(http: requests.Session, payment_url: str, button: str) -> requests.Response:
    page = http.get(payment_url, timeout=10)
    assert page.status_code == 200
    for label in ("Pay", "Decline", "Abandon"):
        assert f">{label}</button>" in page.text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return http.post(
        payment_url,
        data={"csrfmiddlewaretoken": token, "choice": button},
        headers={"Referer": payment_url},
        timeout=10,
    )


def status(live_server, http, ref_id) -> dict:
    response = http.get(f"{live_server.url}/api/payments/status/{ref_id}/", timeout=10)
    assert response.status_code == 200
    return response.json()


def test_pay_completes_the_payment(live_server, plan, sandbox):
    http, created = start_payment(live_server, plan)
    result = press(http, created["payment_url"], "pay")
    assert result.status_code == 200
    assert f"/checkout/return/{created['ref_id']}/" in result.url
    assert "Payment received" in result.text
    body = status(live_server, http, created["ref_id"])
    assert body["status"] == "COMPLETED"
    assert body["date_paid"]
    payment = Payment.objects.get(ref_id=created["ref_id"])
    kinds = list(payment.events.values_list("kind", flat=True))
    assert kinds[:2] == [EventKind.CREATED, EventKind.CHECKOUT]
    assert EventKind.WEBHOOK in kinds
    change = payment.events.get(kind=EventKind.STATUS_CHANGE)
    assert (change.from_status, change.to_status) == ("PENDING", "COMPLETED")
    assert payment.deliveries.get().signature_valid is True


def test_decline_fails_the_payment(live_server, plan, sandbox):
    http, created = start_payment(live_server, plan)
    result = press(http, created["payment_url"], "decline")
    assert "Payment failed" in result.text
    assert status(live_server, http, created["ref_id"])["status"] == "FAILED"


def test_abandon_leaves_the_payment_pending(live_server, plan, sandbox):
    http, created = start_payment(live_server, plan)
    result = press(http, created["payment_url"], "abandon")
    assert "Waiting for confirmation" in result.text
    assert status(live_server, http, created["ref_id"])["status"] == "PENDING"
    payment = Payment.objects.get(ref_id=created["ref_id"])
    assert not payment.deliveries.exists()
    assert not payment.events.filter(kind=EventKind.STATUS_CHANGE).exists()


def test_flow_under_gunicorn_with_two_workers(
    plan, sandbox, settings, collected_static
):
    """The sandbox's notification never calls back into the server: no deadlock."""
    import os

    from tests.conftest import production_env, subprocess_database_url
    from tests.servers import gunicorn

    env = production_env(
        DATABASE_URL=subprocess_database_url(),
        REDIS_URL=os.environ.get("REDIS_URL"),
        SANDBOX_ENABLED="true",
        SANDBOX_ALLOW_WITHOUT_DEBUG="true",
        STATIC_ROOT=str(collected_static),
        SANDBOX_WEBHOOK_SECRET=settings.GATEWAY_SETTINGS["sandbox"]["secret"],
        PAYMENT_GATEWAYS="sandbox",
    )
    with gunicorn(env, workers=2) as base:

        class Server:
            url = base

        http, created = start_payment(Server, plan)
        result = press(http, created["payment_url"], "pay")
        assert "Payment received" in result.text
        assert status(Server, http, created["ref_id"])["status"] == "COMPLETED"
    payment = Payment.objects.get(ref_id=created["ref_id"])
    assert payment.deliveries.get().outcome == "APPLIED"
