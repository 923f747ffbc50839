"""MPGS Hosted Checkout adapter: requests, parsing, faults, notifications."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from gateways.base import (
    CheckoutRequest,
    GatewayConfigError,
    GatewayUnavailable,
    PaymentRef,
    RefundRequest,
    RefundStatus,
    Status,
    WebhookRejected,
)
from gateways.mpgs import MPGSGateway

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gateways" / "mpgs"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

HOST = "https://test-gateway.mastercard.com"
BASE = f"{HOST}/api/rest/version/100/merchant/TESTMERCHANT"
PASSWORD = "pw-3f9a1c7e5b2d4f60"
WEBHOOK_SECRET = "nsec-8d1e0b6c4a2f9e7d"
BASIC = base64.b64encode(f"merchant.TESTMERCHANT:{PASSWORD}".encode()).decode()
REF_ID = "ref_8f2kQ1mZx7LwP0aBcD"
REFUND_ID = "rf_2Qw9Lk3Mn8Pz"
SETTINGS = {
    "api_base_url": HOST,
    "merchant_id": "TESTMERCHANT",
    "api_password": PASSWORD,
    "merchant_name": "Magic eSIM",
    "webhook_secret": WEBHOOK_SECRET,
}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def make_gateway(**overrides: Any) -> MPGSGateway:
    return MPGSGateway({**SETTINGS, **overrides})


def checkout_request(**overrides: Any) -> CheckoutRequest:
    values = {
        "ref_id": REF_ID,
        "amount": Decimal("10"),
        "currency": "USD",
        "email": "payer@example.com",
        "description": "eSIM Europe 5 GB / 30 days",
        "return_url": f"https://shop.example/checkout/return/{REF_ID}/",
        "cancel_url": f"https://shop.example/checkout/return/{REF_ID}/?cancelled=1",
        "notify_url": "https://shop.example/api/webhooks/mpgs/",
        "site_url": "https://shop.example/",
    }
    return CheckoutRequest(**{**values, **overrides})


def payment_ref(**overrides: Any) -> PaymentRef:
    values = {
        "ref_id": REF_ID,
        "session_id": "SESSION0002561575526H6901242G59",
        "amount": Decimal("19.99"),
        "currency": "USD",
        "expires_at": datetime.now(UTC) + timedelta(minutes=30),
        "data": {"success_indicator": "2a149e4aed1d4818"},
    }
    return PaymentRef(**{**values, **overrides})


def refund_request(**overrides: Any) -> RefundRequest:
    values = {
        "ref_id": REF_ID,
        "refund_id": REFUND_ID,
        "amount": Decimal("5.10"),
        "currency": "USD",
        "transaction_id": "1",
    }
    return RefundRequest(**{**values, **overrides})


def notification_headers(**extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Notification-Secret": WEBHOOK_SECRET,
        "X-Notification-Id": "a1b2c3d4-0001",
        "X-Notification-Attempt": "1",
        **extra,
    }


@pytest.fixture
def mocked():
    with responses.RequestsMock() as rsps:
        yield rsps


ORDER_URL = f"{BASE}/order/{REF_ID}"
REFUND_URL = f"{BASE}/order/{REF_ID}/transaction/{REFUND_ID}"


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "env_var"),
    [
        ("api_base_url", "MPGS_API_BASE_URL"),
        ("merchant_id", "MPGS_MERCHANT_ID"),
        ("api_password", "MPGS_API_PASSWORD"),
    ],
)
def test_missing_credential_names_the_env_var_not_a_value(key, env_var):
    with pytest.raises(GatewayConfigError, match=env_var) as caught:
        make_gateway(**{key: ""})
    assert PASSWORD not in str(caught.value)
    assert "TESTMERCHANT" not in str(caught.value)


def test_missing_webhook_secret_does_not_stop_start_up():
    assert make_gateway(webhook_secret="").code == "mpgs"


def test_api_version_below_63_is_a_config_error():
    with pytest.raises(GatewayConfigError, match="MPGS_API_VERSION 62 is too old"):
        make_gateway(api_version=62)


def test_api_version_must_be_a_number():
    with pytest.raises(GatewayConfigError, match="MPGS_API_VERSION"):
        make_gateway(api_version="latest")


def test_base_url_must_be_http():
    with pytest.raises(GatewayConfigError, match="MPGS_API_BASE_URL"):
        make_gateway(api_base_url="test-gateway.mastercard.com")


def test_class_attributes():
    assert MPGSGateway.code == "mpgs"
    assert MPGSGateway.display_name == "Card (Mastercard Gateway)"
    assert MPGSGateway.logo == "payments/logos/mpgs.svg"
    assert MPGSGateway.supports_refunds is True
    assert MPGSGateway.batch_size == 1
    assert MPGSGateway.secret_headers == ("X-Notification-Secret", "Authorization")


# --- create_checkout ------------------------------------------------------------------


def test_create_checkout_sends_initiate_checkout(mocked):
    mocked.post(f"{BASE}/session", json=load("session"), status=201)

    make_gateway().create_checkout(checkout_request())

    sent = mocked.calls[0].request
    assert sent.method == "POST"
    assert sent.url == f"{BASE}/session"
    assert sent.headers["Authorization"] == f"Basic {BASIC}"
    assert base64.b64decode(BASIC).decode().startswith("merchant.TESTMERCHANT:")
    assert sent.headers["Content-Type"] == "application/json"
    body = json.loads(sent.body)
    assert body == {
        "apiOperation": "INITIATE_CHECKOUT",
        "interaction": {
            "operation": "PURCHASE",
            "returnUrl": f"https://shop.example/checkout/return/{REF_ID}/",
            "cancelUrl": f"https://shop.example/checkout/return/{REF_ID}/?cancelled=1",
            "merchant": {"name": "Magic eSIM"},
            "displayControl": {
                "billingAddress": "HIDE",
                "shipping": "HIDE",
                "customerEmail": "HIDE",
            },
        },
        "order": {
            "id": REF_ID,
            "amount": "10.00",
            "currency": "USD",
            "description": "eSIM Europe 5 GB / 30 days",
            "reference": REF_ID,
            "notificationUrl": "https://shop.example/api/webhooks/mpgs/",
        },
        "customer": {"email": "payer@example.com"},
    }
    assert body["order"]["id"] == REF_ID


def test_create_checkout_formats_zero_decimal_currencies(mocked):
    mocked.post(f"{BASE}/session", json=load("session"), status=201)

    make_gateway().create_checkout(
        checkout_request(amount=Decimal("1500"), currency="JPY")
    )

    assert json.loads(mocked.calls[0].request.body)["order"]["amount"] == "1500"


def test_api_version_is_configurable(mocked):
    mocked.post(
        f"{HOST}/api/rest/version/72/merchant/TESTMERCHANT/session",
        json=load("session"),
        status=201,
    )

    make_gateway(api_version=72).create_checkout(checkout_request())

    assert "/version/72/" in mocked.calls[0].request.url


def test_create_checkout_parses_the_session(mocked):
    mocked.post(f"{BASE}/session", json=load("session"), status=201)
    before = datetime.now(UTC)

    session = make_gateway().create_checkout(checkout_request())

    assert session.session_id == "SESSION0002561575526H6901242G59"
    assert session.payment_url == f"https://shop.example/checkout/pay/{REF_ID}/"
    assert session.data == {
        "success_indicator": "2a149e4aed1d4818",
        "session_version": "0bd6923c01",
    }
    assert before + timedelta(minutes=60) <= session.expires_at
    assert session.expires_at <= datetime.now(UTC) + timedelta(minutes=60)
    assert session.raw == load("session")


def test_session_minutes_sets_the_expiry(mocked):
    mocked.post(f"{BASE}/session", json=load("session"), status=201)

    session = make_gateway(session_minutes=15).create_checkout(checkout_request())

    assert session.expires_at <= datetime.now(UTC) + timedelta(minutes=15)


@pytest.mark.parametrize(
    ("response", "error", "match"),
    [
        (
            {"json": load("error_invalid_amount"), "status": 400},
            GatewayUnavailable,
            "amount must be greater than zero",
        ),
        (
            {"json": load("error_invalid_credentials"), "status": 401},
            GatewayConfigError,
            "MPGS rejected the credentials",
        ),
        ({"body": "Service Unavailable", "status": 503}, GatewayUnavailable, "503"),
        ({"body": "Too many", "status": 429}, GatewayUnavailable, "429"),
        (
            {
                "body": "<html><body>Maintenance</body></html>",
                "status": 200,
                "content_type": "text/html",
            },
            GatewayUnavailable,
            "unreadable answer",
        ),
        (
            {"body": '{"result":"SUCCESS","session":{"id":"SESS', "status": 201},
            GatewayUnavailable,
            "unreadable answer",
        ),
        (
            {"json": {"result": "SUCCESS", "session": {}}, "status": 201},
            GatewayUnavailable,
            "no checkout session",
        ),
        (
            {"json": ["not", "an", "object"], "status": 201},
            GatewayUnavailable,
            "create",
        ),
    ],
    ids=["error", "401", "503", "429", "html", "truncated", "no-session", "array"],
)
def test_create_checkout_faults(mocked, response, error, match):
    mocked.post(f"{BASE}/session", **response)

    with pytest.raises(error, match=match):
        make_gateway().create_checkout(checkout_request())

    assert len(mocked.calls) == 1  # a POST is never repeated by the adapter


def test_create_checkout_connection_refused_was_never_sent(mocked):
    mocked.post(
        f"{BASE}/session",
        body=requests.exceptions.ConnectionError("Connection refused"),
    )

    with pytest.raises(GatewayUnavailable, match="connection error") as caught:
        make_gateway().create_checkout(checkout_request())

    assert caught.value.contacted is False


def test_create_checkout_read_timeout_may_have_been_sent(mocked):
    mocked.post(f"{BASE}/session", body=requests.exceptions.ReadTimeout())

    with pytest.raises(GatewayUnavailable, match="read timeout") as caught:
        make_gateway().create_checkout(checkout_request())

    assert caught.value.contacted is True


# --- pay page and return --------------------------------------------------------------


def test_pay_page_uses_the_default_checkout_script():
    template, context = make_gateway().pay_page(payment_ref())

    assert template == "payments/pay_mpgs.html"
    assert context == {
        "checkout_js": f"{HOST}/static/checkout/checkout.min.js",
        "session_id": "SESSION0002561575526H6901242G59",
    }


def test_pay_page_uses_the_configured_checkout_script():
    gateway = make_gateway(checkout_url="https://eu-gateway.mastercard.com/c.min.js")

    _, context = gateway.pay_page(payment_ref())

    assert context["checkout_js"] == "https://eu-gateway.mastercard.com/c.min.js"


def test_pay_page_template_opens_the_session_safely():
    from django.template import Context, Engine

    engine = Engine(dirs=[str(TEMPLATES)])
    html = engine.get_template("payments/pay_mpgs.html").render(
        Context(
            {
                "checkout_js": f"{HOST}/static/checkout/checkout.min.js",
                "session_id": '</script><script>alert("x")</script>',
                "return_url": f"/checkout/return/{REF_ID}/",
            }
        )
    )

    assert (
        f'<script src="{HOST}/static/checkout/checkout.min.js" '
        'data-error="errorCallback" data-cancel="cancelCallback"></script>'
    ) in html
    assert "Checkout.configure({session: {id: sessionId}})" in html
    assert "Checkout.showPaymentPage()" in html
    assert "Redirecting to the secure payment page…" in html
    assert f'href="/checkout/return/{REF_ID}/"' in html
    assert '<script>alert("x")' not in html
    assert "\\u003C/script\\u003E" in html


@pytest.mark.parametrize(
    ("params", "stored", "expected"),
    [
        ({"resultIndicator": "2a149e4aed1d4818"}, "2a149e4aed1d4818", "matches"),
        ({"resultIndicator": "ffffffffffffffff"}, "2a149e4aed1d4818", "does not match"),
        ({}, "2a149e4aed1d4818", "missing"),
        ({"resultIndicator": ""}, "", "missing"),
    ],
    ids=["match", "mismatch", "missing", "nothing-stored"],
)
def test_return_message_compares_the_indicators(params, stored, expected):
    ref = payment_ref(data={"success_indicator": stored})

    message = make_gateway().return_message(ref, params)

    assert expected in message
    if expected != "matches":
        assert "confirming with Retrieve Order" in message


# --- fetch_status ---------------------------------------------------------------------


def test_fetch_status_captured(mocked):
    mocked.get(ORDER_URL, json=load("order_captured"))

    result = make_gateway().fetch_status(payment_ref())

    sent = mocked.calls[0].request
    assert sent.method == "GET"
    assert sent.headers["Authorization"] == f"Basic {BASIC}"
    assert result.status == Status.COMPLETED
    assert result.amount == Decimal("19.99")
    assert str(result.amount) == "19.99"  # parsed through repr, no float noise
    assert result.currency == "USD"
    assert result.transaction_id == "1"  # the PAYMENT, not the AUTHENTICATION
    assert result.amount_refunded == Decimal("0")
    assert result.raw == load("order_captured")
    assert "order CAPTURED" in result.message


def order_with(status: str, **fields: Any) -> dict[str, Any]:
    order = load("order_captured")
    order["status"] = status
    order.update(fields)
    return order


@pytest.mark.parametrize(
    ("order_status", "expected", "note"),
    [
        ("CAPTURED", Status.COMPLETED, ""),
        ("PARTIALLY_CAPTURED", Status.COMPLETED, "partial"),
        ("AUTHORIZED", Status.PENDING, "authorized, not captured"),
        ("REFUNDED", Status.REFUNDED, ""),
        ("EXCESSIVELY_REFUNDED", Status.REFUNDED, "excess"),
        ("CHARGEBACK_PROCESSED", Status.COMPLETED, "chargeback"),
        ("PARTIALLY_REFUNDED", Status.PARTIALLY_REFUNDED, ""),
        ("REFUND_REQUESTED", Status.COMPLETED, "refund requested"),
        ("DISPUTED", Status.COMPLETED, "disputed"),
        # Inside the session a failed attempt may be followed by another card.
        ("FAILED", Status.PENDING, "may try again"),
        ("AUTHENTICATION_UNSUCCESSFUL", Status.PENDING, "may try again"),
        ("CANCELLED", Status.VOIDED, "voided"),
        ("AUTHENTICATED", Status.PENDING, ""),
        ("AUTHENTICATION_INITIATED", Status.PENDING, ""),
        ("AUTHENTICATION_NOT_NEEDED", Status.PENDING, ""),
        ("INITIATED", Status.PENDING, ""),
        ("VERIFIED", Status.PENDING, ""),
        ("DISBURSED", Status.PENDING, "disbursement"),
        ("FUNDING", Status.PENDING, "funding"),
        ("SOMETHING_NEW", Status.PENDING, "unrecognised"),
        # Not order statuses of the API (a gatewayCode, an invented value).
        ("DECLINED", Status.PENDING, "unrecognised"),
        ("PURCHASED", Status.PENDING, "unrecognised"),
    ],
)
def test_fetch_status_maps_every_order_status(mocked, order_status, expected, note):
    mocked.get(ORDER_URL, json=order_with(order_status))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == expected
    assert f"order {order_status}" in result.message
    assert note in result.message


def test_fetch_status_failed_after_the_session_reports_the_decline(mocked):
    mocked.get(ORDER_URL, json=load("order_failed"))
    ended = datetime.now(UTC) - timedelta(minutes=1)

    result = make_gateway().fetch_status(payment_ref(expires_at=ended))

    assert result.status == Status.FAILED
    assert result.amount == Decimal("19.99")  # nothing captured: the order amount
    assert result.transaction_id == ""
    assert result.declined == ("1",)
    assert "DECLINED" in result.message


def test_fetch_status_partially_refunded(mocked):
    mocked.get(ORDER_URL, json=load("order_partially_refunded"))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.PARTIALLY_REFUNDED
    assert result.amount == Decimal("19.99")
    assert result.amount_refunded == Decimal("5.10")
    assert result.transaction_id == "1"


def test_fetch_status_refunded(mocked):
    mocked.get(ORDER_URL, json=load("order_refunded"))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.REFUNDED
    assert result.amount_refunded == Decimal("19.99")


@pytest.mark.parametrize(
    ("order_status", "refunded", "expected"),
    [
        ("CAPTURED", 4.99, Status.PARTIALLY_REFUNDED),
        ("REFUND_REQUESTED", 4.99, Status.PARTIALLY_REFUNDED),
        ("REFUNDED", 10, Status.PARTIALLY_REFUNDED),
        ("CAPTURED", 19.99, Status.REFUNDED),
        ("PARTIALLY_REFUNDED", 19.99, Status.REFUNDED),
        ("CAPTURED", 25, Status.REFUNDED),
    ],
)
def test_refund_state_comes_from_the_totals(mocked, order_status, refunded, expected):
    mocked.get(ORDER_URL, json=order_with(order_status, totalRefundedAmount=refunded))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == expected
    assert result.amount_refunded == Decimal(repr(refunded))


def test_partially_captured_reports_the_captured_amount(mocked):
    order = order_with(
        "PARTIALLY_CAPTURED", totalCapturedAmount=10.1, totalAuthorizedAmount=19.99
    )
    mocked.get(ORDER_URL, json=order)

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.COMPLETED
    assert result.amount == Decimal("10.1")
    assert "partial" in result.message


@pytest.mark.parametrize("http_status", [400, 404])
def test_no_order_yet_is_pending_inside_the_session(mocked, http_status):
    mocked.get(ORDER_URL, json=load("error_no_order"), status=http_status)

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.PENDING
    assert "nothing paid" in result.message


def test_no_order_after_the_session_is_expired(mocked):
    mocked.get(ORDER_URL, json=load("error_no_order"), status=400)
    ref = payment_ref(expires_at=datetime.now(UTC) - timedelta(seconds=1))

    result = make_gateway().fetch_status(ref)

    assert result.status == Status.EXPIRED


def test_no_order_without_expiry_uses_creation_time(mocked):
    mocked.get(ORDER_URL, json=load("error_no_order"), status=400)
    ref = payment_ref(
        expires_at=None, created_at=datetime.now(UTC) - timedelta(minutes=61)
    )

    assert make_gateway().fetch_status(ref).status == Status.EXPIRED


def test_other_error_on_status_is_a_fault(mocked):
    mocked.get(ORDER_URL, json=load("error_not_authorised"), status=400)

    with pytest.raises(GatewayUnavailable, match="not authorised"):
        make_gateway().fetch_status(payment_ref())


def test_status_401_is_a_config_error(mocked):
    mocked.get(ORDER_URL, json=load("error_invalid_credentials"), status=401)

    with pytest.raises(GatewayConfigError, match="MPGS rejected the credentials"):
        make_gateway().fetch_status(payment_ref())


def test_status_is_retried_on_503_then_a_fault(mocked):
    mocked.get(ORDER_URL, body="busy", status=503)

    with pytest.raises(GatewayUnavailable, match="503"):
        make_gateway().fetch_status(payment_ref())

    assert len(mocked.calls) == 3  # one call and two retries: a GET is idempotent


def test_status_with_garbage_amount_is_a_fault(mocked):
    mocked.get(ORDER_URL, json=order_with("CAPTURED", totalCapturedAmount="lots"))

    with pytest.raises(GatewayUnavailable, match="unreadable amount"):
        make_gateway().fetch_status(payment_ref())


def test_status_for_another_order_is_a_fault(mocked):
    mocked.get(ORDER_URL, json={**load("order_captured"), "id": "someone-else"})

    with pytest.raises(GatewayUnavailable, match="another order"):
        make_gateway().fetch_status(payment_ref())


# --- refund ---------------------------------------------------------------------------


def test_refund_sends_a_put_with_our_id(mocked):
    mocked.put(REFUND_URL, json=load("refund_approved"), status=201)

    result = make_gateway().refund(refund_request())

    sent = mocked.calls[0].request
    assert sent.method == "PUT"
    assert sent.headers["Authorization"] == f"Basic {BASIC}"
    assert json.loads(sent.body) == {
        "apiOperation": "REFUND",
        "transaction": {"amount": "5.10", "currency": "USD", "reference": REFUND_ID},
    }
    assert result.refund_id == REFUND_ID
    assert result.status == RefundStatus.SUCCEEDED
    assert result.gateway_refund_id == REFUND_ID
    assert result.raw == load("refund_approved")


def test_refund_exceeding_the_captured_amount_is_a_failed_result(mocked):
    mocked.put(REFUND_URL, json=load("error_refund_exceeds"), status=400)

    result = make_gateway().refund(refund_request(amount=Decimal("50")))

    assert result.status == RefundStatus.FAILED
    assert "exceeds" in result.message


def test_refund_declined_is_a_failed_result(mocked):
    mocked.put(REFUND_URL, json=load("refund_declined"), status=201)

    result = make_gateway().refund(refund_request())

    assert result.status == RefundStatus.FAILED
    assert "DECLINED" in result.message


@pytest.mark.parametrize("outcome", ["PENDING", "UNKNOWN"])
def test_refund_without_an_outcome_is_pending(mocked, outcome):
    mocked.put(REFUND_URL, json={**load("refund_pending"), "result": outcome})

    result = make_gateway().refund(refund_request())

    assert result.status == RefundStatus.PENDING
    assert outcome in result.message


def test_refund_success_without_approval_stays_pending(mocked):
    answer = {**load("refund_approved"), "response": {"gatewayCode": "SUBMITTED"}}
    mocked.put(REFUND_URL, json=answer, status=201)

    assert make_gateway().refund(refund_request()).status == RefundStatus.PENDING


@pytest.mark.parametrize(
    "fault",
    [
        {"body": requests.exceptions.ReadTimeout()},
        {"body": requests.exceptions.ConnectionError("Connection reset by peer")},
        {"body": "oops", "status": 502},
        {"body": "<html>proxy</html>", "status": 200, "content_type": "text/html"},
    ],
    ids=["timeout", "reset", "502", "html"],
)
def test_refund_transport_fault_is_raised_and_not_retried(mocked, fault):
    mocked.put(REFUND_URL, **fault)

    with pytest.raises(GatewayUnavailable):
        make_gateway().refund(refund_request())

    assert len(mocked.calls) == 1


def test_refund_id_clash_is_an_unknown_outcome(mocked):
    clash = {
        "error": {
            "cause": "INVALID_REQUEST",
            "explanation": f"Transaction with id {REFUND_ID} already exists",
        },
        "result": "ERROR",
    }
    mocked.put(REFUND_URL, json=clash, status=400)

    with pytest.raises(GatewayUnavailable, match="already exists"):
        make_gateway().refund(refund_request())


def test_fetch_refund_found(mocked):
    mocked.get(REFUND_URL, json=load("refund_approved"))

    result = make_gateway().fetch_refund(refund_request())

    assert mocked.calls[0].request.method == "GET"
    assert result is not None
    assert result.status == RefundStatus.SUCCEEDED
    assert result.gateway_refund_id == REFUND_ID


@pytest.mark.parametrize("fixture", ["error_no_transaction", "error_no_order"])
def test_fetch_refund_not_found(mocked, fixture):
    mocked.get(REFUND_URL, json=load(fixture), status=400)

    assert make_gateway().fetch_refund(refund_request()) is None


def test_fetch_refund_other_error_is_a_fault(mocked):
    mocked.get(REFUND_URL, json=load("error_not_authorised"), status=400)

    with pytest.raises(GatewayUnavailable, match="not authorised"):
        make_gateway().fetch_refund(refund_request())


# --- notifications --------------------------------------------------------------------


def notification_body() -> bytes:
    return (FIXTURES / "notification_payment.json").read_bytes()


def test_notification_with_the_right_secret():
    event = make_gateway().parse_webhook(notification_body(), notification_headers())

    assert event.event_id == "a1b2c3d4-0001"
    assert event.ref_id == REF_ID
    assert event.transaction_id == "1"
    assert event.confirm is True
    assert event.status == Status.COMPLETED
    assert event.amount == Decimal("19.99")
    assert event.currency == "USD"
    assert event.message == "notification: order CAPTURED, transaction PAYMENT"
    assert event.raw == load("notification_payment")


def test_notification_headers_are_read_case_insensitively():
    headers = {
        "x-notification-secret": WEBHOOK_SECRET,
        "x-notification-id": "lower-case-id",
    }

    event = make_gateway().parse_webhook(notification_body(), headers)

    assert event.event_id == "lower-case-id"


def test_notification_without_an_id_uses_the_body_hash():
    headers = notification_headers()
    del headers["X-Notification-Id"]
    body = notification_body()

    event = make_gateway().parse_webhook(body, headers)

    assert event.event_id == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    ("gateway_settings", "headers", "match"),
    [
        (
            {},
            notification_headers(**{"X-Notification-Secret": "guess"}),
            "does not match",
        ),
        ({}, {"X-Notification-Id": "a1"}, "missing X-Notification-Secret"),
        ({}, notification_headers(**{"X-Notification-Secret": ""}), "missing"),
        (
            {"webhook_secret": ""},
            notification_headers(),
            "MPGS_WEBHOOK_SECRET is not set",
        ),
    ],
    ids=["wrong-secret", "no-header", "empty-header", "no-secret-configured"],
)
def test_notification_rejected(gateway_settings, headers, match):
    with pytest.raises(WebhookRejected, match=match) as caught:
        make_gateway(**gateway_settings).parse_webhook(notification_body(), headers)

    assert WEBHOOK_SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"order": {"id": "ref_', "not JSON"),
        (b"\xff\xfe not utf-8", "not JSON"),
        (b'{"order": {"status": "CAPTURED"}}', "no order.id"),
        (b'{"transaction": {"id": "1"}}', "no order.id"),
        (b'["order"]', "no order.id"),
        (b'{"order": {"id": "r1", "amount": "ten"}}', "bad amount"),
    ],
    ids=["truncated", "binary", "no-id", "no-order", "array", "bad-amount"],
)
def test_malformed_notification_rejected(body, match):
    with pytest.raises(WebhookRejected, match=match):
        make_gateway().parse_webhook(body, notification_headers())


def test_verified_notification_skips_the_secret():
    gateway = make_gateway(webhook_secret="")

    event = gateway.parse_webhook(notification_body(), {}, verified=True)

    assert event.ref_id == REF_ID


def test_refund_notification_is_a_hint_about_the_refund():
    body = json.dumps(
        {
            "order": {**load("refund_approved")["order"]},
            "result": "SUCCESS",
            "transaction": {"id": REFUND_ID, "type": "REFUND", "amount": 5.1},
        }
    ).encode()

    event = make_gateway().parse_webhook(body, notification_headers())

    assert event.status == Status.PARTIALLY_REFUNDED
    assert event.transaction_id == ""  # not the payment's transaction
    assert event.message == "notification: order PARTIALLY_REFUNDED, transaction REFUND"


# --- provider edges (issue 8), each on a documented example ---------------------------
# Order shapes follow Retrieve Order (API v100); error causes the Transaction
# Errors page (https://developer.mastercard.com/mastercard-gateway/documentation/
# testing/trans-error/).


def test_decline_inside_the_session_keeps_the_payment_open(mocked):
    """Case 6: Hosted Checkout lets the payer try another card after a decline."""
    mocked.get(ORDER_URL, json=load("order_failed"))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.PENDING
    assert result.declined == ("1",)
    assert "DECLINED" in result.message and "may try again" in result.message
    assert result.review == ""


def test_decline_then_capture_in_one_session_completes_cleanly(mocked):
    """Case 6: a success after a decline is a plain COMPLETED, no review."""
    mocked.get(ORDER_URL, json=load("order_declined_then_captured"))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.COMPLETED
    assert result.transaction_id == "2"  # the approved attempt
    assert result.amount == Decimal("19.99")
    assert result.declined == ("1",)
    assert result.review == ""


def test_authentication_failure_inside_the_session_is_pending(mocked):
    mocked.get(ORDER_URL, json=order_with("AUTHENTICATION_UNSUCCESSFUL"))

    assert make_gateway().fetch_status(payment_ref()).status == Status.PENDING


def test_voided_order_is_reported_voided_at_once(mocked):
    mocked.get(ORDER_URL, json=order_with("CANCELLED"))

    assert make_gateway().fetch_status(payment_ref()).status == Status.VOIDED


@pytest.mark.parametrize(
    ("fixture", "review"),
    [
        (
            "order_disputed",
            "MPGS: order DISPUTED: disputed by the payer (19.99 USD captured)",
        ),
        (
            "order_chargeback_processed",
            "MPGS: chargeback of 19.99 USD (order CHARGEBACK_PROCESSED)",
        ),
    ],
)
def test_disputes_and_chargebacks_ask_for_review(mocked, fixture, review):
    """Case 7: never a silent refund; the payment keeps its status, flagged."""
    mocked.get(ORDER_URL, json=load(fixture))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.COMPLETED
    assert result.review == review
    assert result.amount_refunded == Decimal("0")


def test_chargeback_amount_alone_asks_for_review(mocked):
    order = order_with("CAPTURED", chargeback={"amount": 5.5, "currency": "USD"})
    mocked.get(ORDER_URL, json=order)

    result = make_gateway().fetch_status(payment_ref())

    assert result.review == "MPGS: chargeback of 5.50 USD (order CAPTURED)"


def test_absurd_chargeback_amount_still_asks_for_review(mocked):
    order = order_with("CHARGEBACK_PROCESSED", chargeback={"amount": 1e30})
    mocked.get(ORDER_URL, json=order)

    result = make_gateway().fetch_status(payment_ref())

    assert result.review == (
        "MPGS: chargeback with an unreadable amount (order CHARGEBACK_PROCESSED)"
    )


@pytest.mark.parametrize("order_status", ["DISBURSED", "FUNDING"])
def test_orders_that_are_not_payments_ask_for_review(mocked, order_status):
    mocked.get(ORDER_URL, json=order_with(order_status))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.PENDING
    assert result.review.startswith(f"MPGS: order {order_status}")


def test_authorized_order_is_pending(mocked):
    mocked.get(ORDER_URL, json=load("order_authorized"))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.PENDING
    assert result.transaction_id == ""  # an AUTHORIZATION is not a payment
    assert "authorized, not captured" in result.message


@pytest.mark.parametrize(
    ("fixture", "status"),
    [
        ("error_request_rejected", 400),
        ("error_invalid_amount", 400),
        ("error_not_authorised", 400),
    ],
)
def test_refund_the_gateway_refused_is_failed(mocked, fixture, status):
    """Case 8: REQUEST_REJECTED / INVALID_REQUEST mean the refund was not done."""
    mocked.put(REFUND_URL, json=load(fixture), status=status)

    result = make_gateway().refund(refund_request())

    assert result.status == RefundStatus.FAILED
    assert result.message.startswith(
        f"refund refused: {load(fixture)['error']['cause']}"
    )
    assert len(mocked.calls) == 1


@pytest.mark.parametrize(
    ("fixture", "status"),
    [
        ("error_server_busy", 503),
        ("error_server_failed", 500),
        ("error_server_busy", 400),
        ("error_server_failed", 400),
    ],
)
def test_refund_on_a_busy_gateway_is_an_unknown_outcome(mocked, fixture, status):
    """Case 8: SERVER_BUSY / SERVER_FAILED may be resubmitted: look it up first."""
    mocked.put(REFUND_URL, json=load(fixture), status=status)

    with pytest.raises(GatewayUnavailable) as caught:
        make_gateway().refund(refund_request())

    if status < 500:  # the body is read only below the 5xx fault line
        assert load(fixture)["error"]["cause"] in str(caught.value)
    assert len(mocked.calls) == 1  # a refund is never re-sent blindly


def test_amounts_are_reported_exactly(mocked):
    """Case 9: 9.995 captured is reported as 9.995, never rounded to 10.00."""
    order = order_with("CAPTURED", amount=10.0, totalCapturedAmount=9.995)
    mocked.get(ORDER_URL, json=order)

    result = make_gateway().fetch_status(payment_ref(amount=Decimal("10.00")))

    assert str(result.amount) == "9.995"


@pytest.mark.parametrize(
    ("currency", "amount", "sent"),
    [
        ("IQD", Decimal("12.345"), "12.345"),
        ("LYD", Decimal("1.5"), "1.500"),
        ("KWD", Decimal("3"), "3.000"),
        ("CLP", Decimal("1000"), "1000"),
        ("ISK", Decimal("990"), "990"),
        ("VND", Decimal("250000"), "250000"),
        ("XOF", Decimal("5000"), "5000"),
    ],
)
def test_checkout_amount_uses_the_currency_minor_unit(mocked, currency, amount, sent):
    mocked.post(f"{BASE}/session", json=load("session"), status=201)

    make_gateway().create_checkout(checkout_request(amount=amount, currency=currency))

    assert json.loads(mocked.calls[0].request.body)["order"]["amount"] == sent


def test_long_description_is_cut_to_127_characters(mocked):
    mocked.post(f"{BASE}/session", json=load("session"), status=201)

    make_gateway().create_checkout(checkout_request(description="x" * 300))

    body = json.loads(mocked.calls[0].request.body)
    assert body["order"]["description"] == "x" * 127
    assert body["interaction"]["merchant"]["name"] == "Magic eSIM"


def test_merchant_name_defaults_to_the_merchant_id(mocked):
    mocked.post(f"{BASE}/session", json=load("session"), status=201)

    make_gateway(merchant_name="").create_checkout(checkout_request())

    body = json.loads(mocked.calls[0].request.body)
    assert body["interaction"]["merchant"]["name"] == "TESTMERCHANT"


def test_absurd_amount_in_retrieve_order_is_garbage(mocked):
    """Case 10: a 1e20 total cannot be a payment: a fault, not a result."""
    mocked.get(ORDER_URL, json=order_with("CAPTURED", totalCapturedAmount=1e20))

    with pytest.raises(GatewayUnavailable, match="unreadable amount"):
        make_gateway().fetch_status(payment_ref())


def test_absurd_signed_notification_is_left_to_the_intake():
    """Case 10: the adapter reads it; webhook intake refuses it (tested there)."""
    payload = load("notification_payment")
    payload["order"]["amount"] = 1e20
    payload["order"]["id"] = REF_ID + "\u0000"
    body = json.dumps(payload).encode()

    event = make_gateway().parse_webhook(body, notification_headers())

    assert event.amount == Decimal("1E+20")
    assert event.ref_id == REF_ID + "\x00"


# --- redaction ------------------------------------------------------------------------


def test_secrets_never_reach_logs_or_exception_messages(mocked, caplog):
    caplog.set_level(logging.DEBUG)
    gateway = make_gateway()
    messages: list[str] = []

    def record(exc: BaseException) -> None:
        while exc is not None:
            messages.extend([str(exc), repr(exc)])
            exc = exc.__cause__ or exc.__context__

    mocked.post(f"{BASE}/session", json=load("session"), status=201)
    mocked.get(ORDER_URL, json=load("order_captured"))
    mocked.put(REFUND_URL, json=load("refund_approved"), status=201)
    gateway.create_checkout(checkout_request())
    gateway.fetch_status(payment_ref())
    gateway.refund(refund_request())

    mocked.get(
        f"{BASE}/order/ref-401", json=load("error_invalid_credentials"), status=401
    )
    mocked.get(f"{BASE}/order/ref-503", body="down", status=503)
    mocked.put(REFUND_URL, body=requests.exceptions.ConnectionError("reset"))
    failing = [
        lambda: gateway.fetch_status(payment_ref(ref_id="ref-401")),
        lambda: gateway.fetch_status(payment_ref(ref_id="ref-503")),
        lambda: gateway.refund(refund_request()),
        lambda: gateway.parse_webhook(
            notification_body(), {"X-Notification-Secret": "wrong"}
        ),
        lambda: make_gateway(webhook_secret="").parse_webhook(
            notification_body(), notification_headers()
        ),
        lambda: make_gateway(api_base_url=""),
    ]
    for call in failing:
        with pytest.raises(
            (GatewayConfigError, GatewayUnavailable, WebhookRejected)
        ) as caught:
            call()
        record(caught.value)

    assert caplog.records, "the HTTP helper should have logged the calls"
    assert len(messages) >= len(failing)
    for secret in (PASSWORD, BASIC, WEBHOOK_SECRET):
        assert secret not in caplog.text
        for message in messages:
            assert secret not in message
