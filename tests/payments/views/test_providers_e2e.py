"""CoinPayments, MPGS and HyperPay end to end over loopback against the fake providers."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from decimal import Decimal

import pytest
import requests

from payments import services
from payments.models import EventKind, Payment, PaymentEvent, WebhookDelivery
from tests.api import create_payment

Status = Payment.Status


def create(live_server, plan, gateway, **extra) -> dict:
    return create_payment(live_server.url, plan, gateway, **extra)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_coinpayments_checkout_ipn_completes(live_server, plan, providers):
    fake = providers
    created = create(live_server, plan, "coinpayments", crypto_currency="LTC")
    assert created["payment_url"].startswith(f"{fake.url}/cp/checkout/")
    http = requests.Session()
    assert http.get(created["payment_url"], timeout=10).status_code == 200
    # The fake posts the signed IPN to our webhook, then sends the payer back.
    result = http.post(created["payment_url"], data={"action": "pay"}, timeout=10)
    assert result.status_code == 200
    assert f"/checkout/return/{created['ref_id']}/" in result.url
    assert "Payment received" in result.text
    payment = Payment.objects.get(ref_id=created["ref_id"])
    assert payment.status == Status.COMPLETED and payment.date_paid
    assert payment.crypto_currency == "LTC" and payment.crypto_address
    assert fake.cp_transaction(payment.gateway_transaction_id)["currency2"] == "LTC"
    delivery = WebhookDelivery.objects.get(payment=payment)
    assert (delivery.signature_valid, delivery.outcome) == (True, "APPLIED")
    assert delivery.headers.get("Hmac") == "[redacted]"
    kinds = list(payment.events.values_list("kind", flat=True))
    assert kinds[:2] == [EventKind.CREATED, EventKind.CHECKOUT]
    assert {EventKind.WEBHOOK, EventKind.STATUS_CHANGE} <= set(kinds)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_mpgs_hosted_page_return_and_notification_complete(
    live_server, plan, providers
):
    fake = providers
    created = create(live_server, plan, "mpgs")
    assert (
        created["payment_url"] == f"{live_server.url}/checkout/pay/{created['ref_id']}/"
    )
    http = requests.Session()
    page = http.get(created["payment_url"], timeout=10)
    payment = Payment.objects.get(ref_id=created["ref_id"])
    assert f"{fake.url}/static/checkout/checkout.min.js" in page.text
    assert payment.gateway_session_id in page.text
    assert "successIndicator" not in page.text
    assert payment.gateway_data["success_indicator"] not in page.text
    # What checkout.min.js would open: the provider's hosted page.
    hosted = f"{fake.url}/checkout/pay/{payment.gateway_session_id}"
    assert http.get(hosted, timeout=10).status_code == 200
    orders_before = fake.count("mpgs:order")
    result = http.post(hosted, data={"action": "pay"}, timeout=10)
    assert "resultIndicator=" in result.url and "Payment received" in result.text
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_paid == plan.price
    delivery = WebhookDelivery.objects.get(payment=payment)
    assert (delivery.signature_valid, delivery.outcome) == (True, "APPLIED")
    # The notification was confirmed by Retrieve Order within the request.
    assert fake.count("mpgs:order") > orders_before
    confirmed = payment.events.get(kind=EventKind.WEBHOOK)
    assert "confirmed" in confirmed.message


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_mpgs_return_alone_confirms_by_retrieve_order(
    live_server, plan, providers, gateway_settings
):
    """With notifications refused (wrong secret), the return page decides."""
    from gateways import registry

    fake = providers
    gateway_settings["mpgs"]["webhook_secret"] = "a-different-secret"
    registry.reset()
    created = create(live_server, plan, "mpgs")
    payment = Payment.objects.get(ref_id=created["ref_id"])
    hosted = f"{fake.url}/checkout/pay/{payment.gateway_session_id}"
    result = requests.post(hosted, data={"action": "pay"}, timeout=10)
    assert "Payment received" in result.text
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    # Refused (403), the notification was sent again with the same id.
    refused = WebhookDelivery.objects.filter(payment=None)
    assert set(refused.values_list("outcome", flat=True)) == {"REJECTED"}
    assert refused.count() == fake.mpgs_notify_attempts
    attempts = sorted(d.headers["X-Notification-Attempt"] for d in refused)
    assert attempts == [str(n) for n in range(1, fake.mpgs_notify_attempts + 1)]
    back = payment.events.get(kind=EventKind.RETURN)
    assert back.data["note"].startswith("resultIndicator matches")


# --- tampering and ordering (Django test client against the fake's data) --------


@pytest.fixture
def cp_payment(plan, providers):
    return services.payment_create(
        plan=plan,
        gateway_code="coinpayments",
        email="b@example.com",
        site_url="http://testserver",
        crypto_currency="BTC",
    )


def post_ipn(client, body, headers):
    return client.post(
        "/api/webhooks/coinpayments/",
        body,
        content_type="application/x-www-form-urlencoded",
        headers={k: v for k, v in headers.items() if k.lower() != "content-type"},
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("label", "kwargs", "status", "outcome"),
    [
        ("bad HMAC", {"secret": "not-the-ipn-secret"}, 403, "REJECTED"),
        (
            "wrong merchant",
            {"overrides": {"merchant": "someone-else"}},
            403,
            "REJECTED",
        ),
        (
            "cheaper coin as currency1",
            {"overrides": {"currency1": "LTC"}},
            200,
            "REVIEW",
        ),
        (
            "unknown invoice",
            {"overrides": {"invoice": "no-such-invoice-0000"}},
            200,  # verified: kept for a person, acknowledged so it stops
            "UNMATCHED",
        ),
    ],
)
def test_tampered_ipn_never_completes(
    client, cp_payment, providers, label, kwargs, status, outcome
):
    body, headers = providers.cp_ipn(
        cp_payment.gateway_transaction_id, status=100, **kwargs
    )
    response = post_ipn(client, body, headers)
    assert response.status_code == status, label
    cp_payment.refresh_from_db()
    assert cp_payment.status == Status.PENDING, label
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == outcome and delivery.body == body.decode()
    if outcome == "REVIEW":
        assert cp_payment.needs_review
        assert re.search("currency mismatch|underpaid", cp_payment.review_reason)


@pytest.mark.django_db
def test_a_signed_ipn_with_a_lower_price_books_that_amount_under_review(
    client, cp_payment, providers
):
    body, headers = providers.cp_ipn(
        cp_payment.gateway_transaction_id, status=100, overrides={"amount1": "1.00"}
    )
    assert post_ipn(client, body, headers).status_code == 200
    cp_payment.refresh_from_db()
    # The provider's word is that 1.00 was paid: booked as such, never as the
    # price, and flagged so that nothing is delivered on it.
    assert cp_payment.status == Status.COMPLETED
    assert cp_payment.amount_paid == Decimal("1.00")
    assert cp_payment.needs_review and "underpaid" in cp_payment.review_reason
    assert WebhookDelivery.objects.get().outcome == "REVIEW"


@pytest.mark.django_db
def test_out_of_order_ipns_leave_payment_completed(client, cp_payment, providers):
    txn = cp_payment.gateway_transaction_id
    for status in (100, 0, -1):
        body, headers = providers.cp_ipn(txn, status=status)
        assert post_ipn(client, body, headers).status_code == 200
    cp_payment.refresh_from_db()
    assert cp_payment.status == Status.COMPLETED
    ignored = cp_payment.events.filter(kind=EventKind.IGNORED_TRANSITION)
    # The -1 IPN names coins received, so get_tx_info decides: cancelled
    # before its time_expires, i.e. FAILED.
    assert sorted(ignored.values_list("to_status", flat=True)) == ["FAILED", "PENDING"]
    assert not cp_payment.needs_review
    assert cp_payment.events.filter(kind=EventKind.STATUS_CHANGE).count() == 1


@pytest.fixture
def mpgs_payment(plan, providers):
    return services.payment_create(
        plan=plan,
        gateway_code="mpgs",
        email="b@example.com",
        site_url="http://testserver",
    )


def post_notification(client, body, headers):
    return client.post(
        "/api/webhooks/mpgs/",
        body,
        content_type="application/json",
        headers={k: v for k, v in headers.items() if k.lower() != "content-type"},
    )


@pytest.mark.django_db
def test_mpgs_repeated_notification_id_does_nothing(client, mpgs_payment, providers):
    providers.mpgs_pay(mpgs_payment.ref_id)
    body, headers = providers.mpgs_notification(
        mpgs_payment.ref_id, notification_id="n-1"
    )
    assert post_notification(client, body, headers).status_code == 200
    orders = providers.count("mpgs:order")
    assert post_notification(client, body, headers).status_code == 200
    assert providers.count("mpgs:order") == orders
    assert mpgs_payment.events.filter(kind=EventKind.STATUS_CHANGE).count() == 1
    outcomes = sorted(WebhookDelivery.objects.values_list("outcome", flat=True))
    assert outcomes == ["APPLIED", "DUPLICATE"]


@pytest.mark.django_db
def test_mpgs_body_alone_never_changes_status(client, mpgs_payment, providers):
    """A notification claiming CAPTURED for a declined order is checked.

    Retrieve Order says the attempt was declined; the session is still open,
    so the payment stays PENDING (the payer may use another card).
    """
    providers.mpgs_pay(mpgs_payment.ref_id, approve=False)
    body, headers = providers.mpgs_notification(
        mpgs_payment.ref_id,
        body_overrides={"order": {"status": "CAPTURED", "totalCapturedAmount": 24.0}},
    )
    assert post_notification(client, body, headers).status_code == 200
    mpgs_payment.refresh_from_db()
    assert mpgs_payment.status == Status.PENDING and mpgs_payment.date_paid is None
    assert mpgs_payment.events.filter(message__contains="declined").exists()


@pytest.mark.django_db
def test_mpgs_wrong_secret_is_403(client, mpgs_payment, providers):
    providers.mpgs_pay(mpgs_payment.ref_id)
    body, headers = providers.mpgs_notification(mpgs_payment.ref_id, secret="guess")
    assert post_notification(client, body, headers).status_code == 403
    mpgs_payment.refresh_from_db()
    assert mpgs_payment.status == Status.PENDING
    assert WebhookDelivery.objects.get().signature_valid is False


@pytest.mark.django_db
def test_mpgs_refund_through_the_service_is_sent_once(mpgs_payment, providers):
    from decimal import Decimal

    providers.mpgs_pay(mpgs_payment.ref_id)
    services.payment_refresh(payment=mpgs_payment)
    applied = providers.mpgs_refunds_applied
    refund = services.refund_request(
        payment_id=mpgs_payment.pk,
        amount=Decimal("4.00"),
        actor=services.Actor("admin"),
    )
    assert refund.status == "SUCCEEDED"
    assert providers.mpgs_refunds_applied == applied + 1
    mpgs_payment.refresh_from_db()
    assert mpgs_payment.status == Status.PARTIALLY_REFUNDED
    # A later reconciliation sees the provider's totals and changes nothing.
    assert services.payment_refresh(payment=mpgs_payment).changed is False


# --- secrets never leak -------------------------------------------------------------

SECRETS = {
    "coinpayments": ["cp-private", "cp-ipn-secret"],
    "mpgs": [
        "mpgs-password",
        "mpgs-webhook-secret",
        base64.b64encode(b"merchant.TESTMERCHANT:mpgs-password").decode(),
    ],
    "hyperpay": [
        "OGFjN2E0Yzk4ZmFrZWhwYXl0b2tlbg==",  # the fake's access token
        "5A1F" * 16,  # its webhook key
        ("5A1F" * 16).lower(),
    ],
}


def _cp_notify(fake, payment, secret):
    return fake.cp_ipn(payment.gateway_transaction_id, status=100, secret=secret)


def _mpgs_notify(fake, payment, secret):
    fake.mpgs_pay(payment.ref_id)
    return fake.mpgs_notification(payment.ref_id, secret=secret)


def _hyperpay_notify(fake, payment, secret):
    paid = fake.hyperpay_checkout(payment.gateway_session_id)["payments"]
    if not paid:
        paid = [fake.hyperpay_pay(payment.gateway_session_id, notify=False)["id"]]
    key = secret.encode().hex().ljust(64, "0") if secret else None
    return fake.hyperpay_notification(paid[-1], key=key)


def post_hyperpay(client, body, headers):
    return client.post(
        "/api/webhooks/hyperpay/",
        body,
        content_type="text/plain",
        headers={k: v for k, v in headers.items() if k.lower() != "content-type"},
    )


NOTIFIERS = {
    "coinpayments": (_cp_notify, post_ipn),
    "mpgs": (_mpgs_notify, post_notification),
    "hyperpay": (_hyperpay_notify, post_hyperpay),
}


@pytest.mark.django_db
@pytest.mark.parametrize("code", sorted(SECRETS))
def test_secrets_never_reach_logs_deliveries_or_events(
    client, plan, providers, caplog, code
):
    caplog.set_level(logging.DEBUG)
    payment = services.payment_create(
        plan=plan,
        gateway_code=code,
        email="s@example.com",
        site_url="http://testserver",
    )
    notify, post = NOTIFIERS[code]
    body, headers = notify(providers, payment, None)
    bad = notify(providers, payment, "x")
    assert post(client, body, headers).status_code == 200
    assert post(client, *bad).status_code == 403
    providers.add_fault("*", "500")
    services.payment_refresh(payment=payment, actor=services.Actor("admin", user=None))
    stored = json.dumps(list(WebhookDelivery.objects.values("headers", "error")))
    events = json.dumps(
        list(PaymentEvent.objects.values("data", "message")), default=str
    )
    signatures = [
        v for k, v in headers.items() if k.lower() in ("hmac", "x-notification-secret")
    ]
    for secret in SECRETS[code] + signatures:
        assert secret not in caplog.text, f"{secret} in logs"
        assert secret not in stored, f"{secret} in deliveries"
        assert secret not in events, f"{secret} in events"


# --- provider down while a payment is created ------------------------------------

PROVIDER_URL_SETTING = {
    "coinpayments": ("api_url", "/api.php"),
    "mpgs": ("api_base_url", ""),
    "hyperpay": ("api_base_url", ""),
}


@pytest.mark.django_db
@pytest.mark.parametrize("code", sorted(PROVIDER_URL_SETTING))
@pytest.mark.parametrize(
    "fault", ["connect-timeout", "timeout", "500", "garbage", "html"]
)
def test_provider_down_at_checkout_is_503_with_a_failed_payment(
    client, plan, providers, gateway_settings, code, fault
):
    from gateways import registry

    key, suffix = PROVIDER_URL_SETTING[code]
    gateway_settings[code].update(connect_timeout=0.3, read_timeout=0.5)
    if fault == "connect-timeout":
        gateway_settings[code][key] = providers.blackhole_url() + suffix
    else:
        providers.add_fault("*", fault, times=3, seconds=1.0)
    registry.reset()
    started = time.monotonic()
    response = client.post(
        "/api/payments/",
        {"plan": plan.code, "payment_gateway": code, "email": "d@example.com"},
        content_type="application/json",
    )
    assert response.status_code == 503
    assert "unavailable" in response.json()["error"]
    assert time.monotonic() - started < 5
    payment = Payment.objects.get()
    assert payment.status == Status.FAILED
    assert payment.failure_reason
    assert payment.events.filter(kind=EventKind.GATEWAY_ERROR).exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_notifications_apply_once(live_server, plan, providers):
    """Six copies of one MPGS notification at once: one transition, one event."""
    import threading

    # The fake's own notification on payment goes nowhere (closed port), so
    # the six copies below are the only ones.
    payment = services.payment_create(
        plan=plan,
        gateway_code="mpgs",
        email="c@example.com",
        site_url="http://127.0.0.1:9",
    )
    providers.mpgs_pay(payment.ref_id)
    orders_before = providers.count("mpgs:order")
    body, headers = providers.mpgs_notification(payment.ref_id, notification_id="dup-1")
    barrier = threading.Barrier(6)
    codes = []

    def deliver():
        barrier.wait()
        response = requests.post(
            f"{live_server.url}/api/webhooks/mpgs/",
            data=body,
            headers=headers,
            timeout=20,
        )
        codes.append(response.status_code)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert codes == [200] * 6
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.events.filter(kind=EventKind.STATUS_CHANGE).count() == 1
    assert payment.events.filter(kind=EventKind.WEBHOOK).count() == 1
    outcomes = sorted(WebhookDelivery.objects.values_list("outcome", flat=True))
    assert outcomes == ["APPLIED"] + ["DUPLICATE"] * 5
    # At most one Retrieve Order per copy; copies arriving after the first was
    # applied are recognised before asking.
    assert 1 <= providers.count("mpgs:order") - orders_before <= 6
