"""Stripe Checkout adapter: requests, parsing, faults, webhooks, redaction.

The network is blocked (`responses`); the library's own HTTP calls go through
the adapter's transport (GatewayHTTP), so they are what `responses` sees.
Payloads are Stripe's documented example objects (tests/fixtures/gateways/stripe).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import stripe
from urllib3.util.timeout import Timeout

from gateways.base import (
    CheckoutRequest,
    GatewayConfigError,
    GatewayUnavailable,
    PaymentRef,
    ProviderRefund,
    RefundRequest,
    RefundStatus,
    Status,
    WebhookRejected,
)
from gateways.http import time_budget
from gateways.stripe_checkout import StripeGateway

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gateways" / "stripe"

API = "https://api.stripe.com"
SECRET_KEY = "sk_test_51Mtw9d3kQ2xYvL0pRsT7dc0"
WEBHOOK_SECRET = "whsec_4e1c9a7b2d6f8e0a3c5b7d9f1e2a4c6b"
REF_ID = "ref_8f2kQ1mZx7LwP0aBcD"
SESSION_ID = "cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY"
INTENT_ID = "pi_3MtwBwLkdIwHu7ix28a3tqPa"
REFUND_ID = "rf_2Qw9Lk3Mn8Pz"
SESSION_URL = f"{API}/v1/checkout/sessions/{SESSION_ID}"
SETTINGS = {"secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def make_gateway(**overrides: Any) -> StripeGateway:
    return StripeGateway({**SETTINGS, **overrides})


def checkout_request(**overrides: Any) -> CheckoutRequest:
    values = {
        "ref_id": REF_ID,
        "amount": Decimal("19.99"),
        "currency": "USD",
        "email": "payer@example.com",
        "description": "Magic eSIM Europe 5 GB",
        "return_url": f"https://shop.example/checkout/return/{REF_ID}/",
        "cancel_url": f"https://shop.example/checkout/return/{REF_ID}/?cancelled=1",
        "notify_url": "https://shop.example/api/webhooks/stripe/",
        "site_url": "https://shop.example",
    }
    return CheckoutRequest(**{**values, **overrides})


def payment_ref(**overrides: Any) -> PaymentRef:
    values = {
        "ref_id": REF_ID,
        "transaction_id": SESSION_ID,
        "session_id": SESSION_ID,
        "amount": Decimal("19.99"),
        "currency": "USD",
        "expires_at": datetime.now(UTC) + timedelta(minutes=30),
    }
    return PaymentRef(**{**values, **overrides})


def refund_request(**overrides: Any) -> RefundRequest:
    values = {
        "ref_id": REF_ID,
        "refund_id": REFUND_ID,
        "amount": Decimal("5.10"),
        "currency": "USD",
        "transaction_id": INTENT_ID,
        "reason": "customer asked",
    }
    return RefundRequest(**{**values, **overrides})


def form(request) -> dict[str, str]:
    """Decode a form body or query string as Stripe's library encodes it."""
    text = request.body if request.body is not None else urlsplit(request.url).query
    if isinstance(text, bytes):
        text = text.decode()
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def signed(payload: dict | bytes, *, secret: str = WEBHOOK_SECRET, at=None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode("utf-8", "replace"), secret, timestamp=at
    )
    return body, {"Content-Type": "application/json", "Stripe-Signature": header}


@pytest.fixture
def mocked():
    with responses.RequestsMock() as rsps:
        yield rsps


def answer_session(mocked, fixture: str, charges: str | None = None, **extra):
    mocked.get(SESSION_URL, json={**load(fixture), **extra})
    if charges:
        mocked.get(f"{API}/v1/charges", json=load(charges))


# --- settings -------------------------------------------------------------------------


def test_missing_secret_key_names_the_env_var():
    with pytest.raises(GatewayConfigError, match="STRIPE_SECRET_KEY is not set"):
        make_gateway(secret_key=" ")


def test_publishable_key_is_refused_with_a_hint():
    with pytest.raises(GatewayConfigError, match="publishable key"):
        make_gateway(secret_key="pk_test_51Mtw9d3kQ2xYvL0p")


def test_missing_webhook_secret_does_not_stop_start_up():
    assert make_gateway(webhook_secret="").code == "stripe"


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("", API),
        ("https://stripe-proxy.example/", "https://stripe-proxy.example"),
        ("http://127.0.0.1:8111", "http://127.0.0.1:8111"),
        ("http://localhost:8111/", "http://localhost:8111"),
    ],
)
def test_api_base_defaults_to_stripe_and_takes_https_or_loopback(base, expected):
    assert make_gateway(api_base=base).api_base == expected


@pytest.mark.parametrize(
    "base", ["http://stripe.example", "api.stripe.com", "ftp://api.stripe.com"]
)
def test_api_base_in_clear_text_to_a_remote_host_is_refused(base):
    with pytest.raises(GatewayConfigError, match="STRIPE_API_BASE"):
        make_gateway(api_base=base)


@pytest.mark.parametrize("minutes", [29, 1441, "soon"])
def test_session_minutes_must_fit_stripes_bounds(minutes):
    with pytest.raises(GatewayConfigError, match="STRIPE_SESSION_MINUTES"):
        make_gateway(session_minutes=minutes)


def test_class_attributes():
    assert StripeGateway.code == "stripe"
    assert StripeGateway.display_name == "Card (Stripe)"
    assert StripeGateway.logo == "payments/logos/stripe.svg"
    assert (FIXTURES.parents[3] / "static" / StripeGateway.logo).is_file()
    assert StripeGateway.supports_refunds is True
    assert StripeGateway.secret_headers == ("Stripe-Signature", "Authorization")


# --- create_checkout ------------------------------------------------------------------


def test_create_checkout_sends_a_checkout_session(mocked):
    mocked.post(f"{API}/v1/checkout/sessions", json=load("checkout_session_open"))
    before = int(time.time())

    make_gateway().create_checkout(checkout_request())

    sent = mocked.calls[0].request
    params = form(sent)
    assert sent.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert sent.headers["Idempotency-Key"] == REF_ID
    assert sent.headers["Stripe-Version"] == stripe.api_version
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert params == {
        "mode": "payment",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "1999",
        "line_items[0][price_data][product_data][name]": "Magic eSIM Europe 5 GB",
        "client_reference_id": REF_ID,
        "metadata[ref_id]": REF_ID,
        "payment_intent_data[metadata][ref_id]": REF_ID,
        "customer_email": "payer@example.com",
        "success_url": (
            f"https://shop.example/checkout/return/{REF_ID}/"
            "?session_id={CHECKOUT_SESSION_ID}"
        ),
        "cancel_url": f"https://shop.example/checkout/return/{REF_ID}/?cancelled=1",
        "expires_at": params["expires_at"],
    }
    # The default session lasts an hour (STRIPE_SESSION_MINUTES).
    assert before + 3600 <= int(params["expires_at"]) <= int(time.time()) + 3600


def test_create_checkout_parses_the_session(mocked):
    session = load("checkout_session_open")
    mocked.post(f"{API}/v1/checkout/sessions", json=session)

    opened = make_gateway().create_checkout(checkout_request())

    assert opened.payment_url == session["url"]
    assert opened.session_id == SESSION_ID
    # No PaymentIntent before the payer submits: the session names the payment.
    assert opened.transaction_id == SESSION_ID
    assert opened.expires_at == datetime.fromtimestamp(session["expires_at"], UTC)
    assert opened.raw["id"] == SESSION_ID


def test_session_minutes_set_expires_at(mocked):
    for _ in range(2):
        mocked.post(f"{API}/v1/checkout/sessions", json=load("checkout_session_open"))

    gateway = make_gateway(session_minutes=90)
    gateway.create_checkout(checkout_request())
    shortest = make_gateway(session_minutes=30)
    shortest.create_checkout(checkout_request())

    first, second = (int(form(c.request)["expires_at"]) for c in mocked.calls)
    assert abs(first - (time.time() + 90 * 60)) < 5
    # Stripe's shortest session is 30 minutes: a minute more, for clock skew.
    assert abs(second - (time.time() + 31 * 60)) < 5


def test_return_url_with_a_query_keeps_it(mocked):
    mocked.post(f"{API}/v1/checkout/sessions", json=load("checkout_session_open"))

    make_gateway().create_checkout(
        checkout_request(return_url="https://shop.example/back/?lang=de")
    )

    assert form(mocked.calls[0].request)["success_url"] == (
        "https://shop.example/back/?lang=de&session_id={CHECKOUT_SESSION_ID}"
    )


@pytest.mark.parametrize(
    ("currency", "amount", "sent"),
    [
        ("JPY", "1500", "1500"),
        ("KRW", "33000", "33000"),
        ("ISK", "2490", "249000"),  # two decimals in Stripe's API, whole kronur
        ("MGA", "12000", "12000"),  # zero-decimal at Stripe, two in ISO 4217
        ("KWD", "5.120", "5120"),
        ("EUR", "24", "2400"),
    ],
)
def test_unit_amount_is_in_stripes_minor_unit(mocked, currency, amount, sent):
    mocked.post(f"{API}/v1/checkout/sessions", json=load("checkout_session_open"))

    make_gateway().create_checkout(
        checkout_request(amount=Decimal(amount), currency=currency)
    )

    params = form(mocked.calls[0].request)
    assert params["line_items[0][price_data][unit_amount]"] == sent
    assert params["line_items[0][price_data][currency]"] == currency.lower()


@pytest.mark.parametrize(
    ("currency", "amount", "match"),
    [("KWD", "5.125", "must end in 0"), ("MGA", "12000.50", "whole number")],
)
def test_prices_stripe_cannot_take_are_refused_before_sending(
    mocked, currency, amount, match
):
    with pytest.raises(GatewayConfigError, match=match):
        make_gateway().create_checkout(
            checkout_request(amount=Decimal(amount), currency=currency)
        )

    assert len(mocked.calls) == 0


@pytest.mark.parametrize(
    ("response", "error", "match"),
    [
        (
            {"json": load("error_resource_missing"), "status": 400},
            GatewayUnavailable,
            "checkout refused: resource_missing",
        ),
        (
            {"json": load("error_invalid_api_key"), "status": 401},
            GatewayConfigError,
            "rejected the secret key",
        ),
        (
            {"json": load("error_idempotency"), "status": 400},
            GatewayUnavailable,
            "idempotency conflict",
        ),
        ({"body": "busy", "status": 503}, GatewayUnavailable, "HTTP 503"),
        ({"json": load("error_rate_limit"), "status": 429}, GatewayUnavailable, "429"),
        ({"body": "<html>oops</html>", "status": 200}, GatewayUnavailable, "HTTP 200"),
        (
            {"body": b"\x00\x9f\x92\xff", "status": 200},
            GatewayUnavailable,
            "unreadable",
        ),
        (
            {"json": {"id": SESSION_ID}, "status": 200},
            GatewayUnavailable,
            "no id or url",
        ),
    ],
    ids=["refused", "401", "idempotency", "503", "429", "html", "binary", "no-url"],
)
def test_create_checkout_faults(mocked, response, error, match):
    mocked.post(f"{API}/v1/checkout/sessions", **response)

    with pytest.raises(error, match=match):
        make_gateway().create_checkout(checkout_request())

    assert len(mocked.calls) == 1  # a POST is made once; no library retries


def test_create_checkout_connection_refused_was_never_sent(mocked):
    mocked.post(
        f"{API}/v1/checkout/sessions",
        body=requests.exceptions.ConnectionError("Connection refused"),
    )

    with pytest.raises(GatewayUnavailable, match="connection error") as caught:
        make_gateway().create_checkout(checkout_request())

    assert caught.value.contacted is False


def test_create_checkout_read_timeout_may_have_been_sent(mocked):
    mocked.post(f"{API}/v1/checkout/sessions", body=requests.exceptions.ReadTimeout())

    with pytest.raises(GatewayUnavailable, match="read timeout") as caught:
        make_gateway().create_checkout(checkout_request())

    assert caught.value.contacted is True


# --- transport: timeouts and the time budget --------------------------------------------


def test_calls_get_the_configured_timeouts(mocked):
    answer_session(mocked, "checkout_session_open")

    make_gateway(connect_timeout=3, read_timeout=7).fetch_status(payment_ref())

    assert mocked.calls[0].request.req_kwargs["timeout"] == (3.0, 7.0)


def test_calls_inside_a_time_budget_get_what_is_left_of_it(mocked):
    answer_session(mocked, "checkout_session_open")

    with time_budget(1.5):
        make_gateway(connect_timeout=3, read_timeout=7).fetch_status(payment_ref())

    timeout = mocked.calls[0].request.req_kwargs["timeout"]
    assert isinstance(timeout, Timeout)
    assert 0 < timeout.total <= 1.5
    assert timeout.connect_timeout <= 1.5 and timeout.read_timeout <= 1.5


def test_a_spent_budget_fails_before_anything_is_sent(mocked):
    with time_budget(0), pytest.raises(GatewayUnavailable, match="budget") as caught:
        make_gateway().fetch_status(payment_ref())

    assert caught.value.contacted is False
    assert len(mocked.calls) == 0


def test_status_is_retried_on_503_then_a_fault(mocked):
    mocked.get(SESSION_URL, body="busy", status=503)

    with pytest.raises(GatewayUnavailable, match="503"):
        make_gateway().fetch_status(payment_ref())

    assert len(mocked.calls) == 3  # one call and two retries: a GET is idempotent


def test_status_401_is_a_config_error(mocked):
    mocked.get(SESSION_URL, json=load("error_invalid_api_key"), status=401)

    with pytest.raises(GatewayConfigError, match="HTTP 401"):
        make_gateway().fetch_status(payment_ref())


# --- fetch_status ---------------------------------------------------------------------


def test_open_session_is_pending_after_one_call(mocked):
    answer_session(mocked, "checkout_session_open")

    result = make_gateway().fetch_status(payment_ref())

    assert (result.status, result.amount, result.declined) == (
        Status.PENDING,
        None,
        (),
    )
    assert result.settling is False and result.review == ""
    assert form(mocked.calls[0].request) == {"expand[0]": "payment_intent"}
    assert len(mocked.calls) == 1


def test_paid_session_is_completed_with_the_captured_amount(mocked):
    answer_session(mocked, "checkout_session_paid", "charges_paid")

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.COMPLETED
    assert (result.amount, result.currency) == (Decimal("19.99"), "USD")
    assert result.transaction_id == INTENT_ID
    assert result.refunds == () and result.amount_refunded == 0
    assert result.amount_charged_back is None and result.review == ""
    assert result.message == ("session complete, payment paid; captured 19.99 USD")
    assert form(mocked.calls[1].request) == {
        "payment_intent": INTENT_ID,
        "limit": "100",
    }


def test_client_secret_never_reaches_the_raw_payload(mocked):
    answer_session(mocked, "checkout_session_paid", "charges_paid")

    result = make_gateway().fetch_status(payment_ref())

    intent = result.raw["session"]["payment_intent"]
    assert intent["client_secret"] == "[redacted]"
    assert "_secret_" not in json.dumps(result.raw)


def test_declined_card_inside_the_session_keeps_the_payment_open(mocked):
    answer_session(mocked, "checkout_session_open_declined", "charges_declined")

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.PENDING
    assert result.declined == ("ch_3MtwAaLkdIwHu7ix0wQ6xXkD",)
    assert result.transaction_id == INTENT_ID


def test_declined_card_once_the_session_is_over_is_failed(mocked):
    answer_session(mocked, "checkout_session_open_declined", "charges_declined")
    over = payment_ref(expires_at=datetime.now(UTC) - timedelta(minutes=1))

    result = make_gateway().fetch_status(over)

    assert result.status == Status.FAILED
    assert "declined: card_declined, generic_decline" in result.message


def test_decline_then_another_card_completes_and_keeps_the_decline(mocked):
    answer_session(mocked, "checkout_session_paid", "charges_declined_then_paid")

    result = make_gateway().fetch_status(payment_ref())

    assert (result.status, result.amount) == (Status.COMPLETED, Decimal("19.99"))
    assert result.declined == ("ch_3MtwAaLkdIwHu7ix0wQ6xXkD",)
    assert result.review == ""


def test_expired_session_without_an_attempt_is_expired(mocked):
    answer_session(mocked, "checkout_session_expired")

    assert make_gateway().fetch_status(payment_ref()).status == Status.EXPIRED


def test_expired_session_after_a_decline_is_failed(mocked):
    declined = load("checkout_session_open_declined")
    answer_session(
        mocked,
        "checkout_session_expired",
        "charges_declined",
        payment_intent={**declined["payment_intent"], "status": "canceled"},
    )

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.FAILED
    assert "card_declined" in result.message


def test_delayed_payment_method_is_pending_and_settling(mocked):
    answer_session(mocked, "checkout_session_async_processing")
    mocked.get(f"{API}/v1/charges", json={"object": "list", "data": []})

    result = make_gateway().fetch_status(payment_ref())

    assert (result.status, result.settling, result.review) == (
        Status.PENDING,
        True,
        "",
    )
    assert "processing, settles later" in result.message


def test_delayed_payment_that_failed_is_failed(mocked):
    session = load("checkout_session_async_processing")
    intent = {**session["payment_intent"], "status": "requires_payment_method"}
    answer_session(mocked, "checkout_session_async_processing", payment_intent=intent)
    failed = load("charges_declined")
    failed["data"][0].update(failure_code="insufficient_funds", outcome={})
    mocked.get(f"{API}/v1/charges", json=failed)

    result = make_gateway().fetch_status(payment_ref())

    assert (result.status, result.settling) == (Status.FAILED, False)
    assert "payment failed: insufficient_funds" in result.message


def test_authorised_not_captured_is_settling_and_flagged(mocked):
    answer_session(mocked, "checkout_session_authorized")
    mocked.get(f"{API}/v1/charges", json={"object": "list", "data": []})

    result = make_gateway().fetch_status(payment_ref())

    assert (result.status, result.settling) == (Status.PENDING, True)
    assert result.review.startswith("Stripe: authorised, not captured")


def test_partial_refunds_are_listed_ours_by_our_id(mocked):
    answer_session(mocked, "checkout_session_paid", "charges_partially_refunded")
    mocked.get(f"{API}/v1/refunds", json=load("refunds_ours_and_portal"))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.PARTIALLY_REFUNDED
    assert result.amount == Decimal("19.99")
    assert result.amount_refunded == Decimal("10.00")
    # Oldest first: ours (our refund id), then one made in the Dashboard.
    assert result.refunds == (
        ProviderRefund(REFUND_ID, Decimal("5.10")),
        ProviderRefund("re_3MtwBwLkdIwHu7ix1aBcDeFg", Decimal("4.90")),
    )


def test_pending_refunds_are_listed_but_not_counted(mocked):
    answer_session(mocked, "checkout_session_paid", "charges_partially_refunded")
    refunds = load("refunds_ours_and_portal")
    refunds["data"][1]["status"] = "pending"
    mocked.get(f"{API}/v1/refunds", json=refunds)

    result = make_gateway().fetch_status(payment_ref())

    assert result.amount_refunded == Decimal("4.90")
    assert result.refunds[0] == ProviderRefund(
        REFUND_ID, Decimal("5.10"), RefundStatus.PENDING
    )


def test_everything_refunded_is_refunded(mocked):
    answer_session(mocked, "checkout_session_paid", "charges_refunded")
    full = load("refund_succeeded")
    full["amount"] = 1999
    mocked.get(f"{API}/v1/refunds", json={"object": "list", "data": [full]})

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.REFUNDED
    assert result.amount_refunded == Decimal("19.99")


@pytest.mark.parametrize(
    ("fixture", "review", "charged_back"),
    [
        (
            "disputes_needs_response",
            "Stripe: dispute dp_1MtwLkLkdIwHu7ixRjqmfnYk (fraudulent) over 19.99 "
            "USD: answer it in the Stripe Dashboard",
            Decimal(0),
        ),
        (
            "disputes_lost",
            "Stripe: dispute dp_1MtwLkLkdIwHu7ixRjqmfnYk lost: 19.99 USD charged back",
            Decimal("19.99"),
        ),
        ("disputes_won", "", Decimal(0)),
    ],
)
def test_disputes_flag_the_payment_and_a_lost_one_is_charged_back(
    mocked, fixture, review, charged_back
):
    answer_session(mocked, "checkout_session_paid", "charges_disputed")
    mocked.get(f"{API}/v1/disputes", json=load(fixture))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.COMPLETED  # a dispute is not a refund
    assert result.review == review
    assert result.amount_charged_back == charged_back
    assert form(mocked.calls[2].request)["payment_intent"] == INTENT_ID


def test_unknown_session_is_an_outage_until_the_deadline(mocked):
    mocked.get(SESSION_URL, json=load("error_resource_missing"), status=404)

    with pytest.raises(GatewayUnavailable, match="no such checkout session"):
        make_gateway().fetch_status(payment_ref())
    late = payment_ref(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    result = make_gateway().fetch_status(late)

    assert result.status == Status.FAILED
    assert "does not know checkout session" in result.message


@pytest.mark.parametrize("listing", ["charges", "disputes"])
def test_a_refused_listing_is_a_fault(mocked, listing):
    answer_session(mocked, "checkout_session_paid")
    refused = {"json": load("error_resource_missing"), "status": 404}
    if listing == "charges":
        mocked.get(f"{API}/v1/charges", **refused)
    else:
        mocked.get(f"{API}/v1/charges", json=load("charges_disputed"))
        mocked.get(f"{API}/v1/disputes", **refused)

    with pytest.raises(GatewayUnavailable, match=f"{listing} lookup refused"):
        make_gateway().fetch_status(payment_ref())


def test_a_session_naming_its_payment_intent_unexpanded_still_reads_charges(mocked):
    answer_session(
        mocked, "checkout_session_paid", "charges_paid", payment_intent=INTENT_ID
    )

    result = make_gateway().fetch_status(payment_ref())

    assert (result.status, result.transaction_id) == (Status.COMPLETED, INTENT_ID)
    assert result.amount == Decimal("19.99")


def test_a_session_about_another_payment_is_a_fault(mocked):
    answer_session(mocked, "checkout_session_open", client_reference_id="someone")

    with pytest.raises(GatewayUnavailable, match="another session"):
        make_gateway().fetch_status(payment_ref())


def test_garbage_amount_is_a_fault(mocked):
    answer_session(mocked, "checkout_session_paid")
    charges = load("charges_paid")
    charges["data"][0]["amount_captured"] = "lots"
    mocked.get(f"{API}/v1/charges", json=charges)

    with pytest.raises(GatewayUnavailable, match="unreadable amount"):
        make_gateway().fetch_status(payment_ref())


def test_without_a_session_nothing_can_be_paid():
    gateway = make_gateway()
    late = datetime.now(UTC) - timedelta(minutes=1)

    assert gateway.fetch_status(payment_ref(session_id="")).status == Status.PENDING
    assert (
        gateway.fetch_status(payment_ref(session_id="", expires_at=late)).status
        == Status.EXPIRED
    )


def test_return_message_compares_the_session_id():
    gateway = make_gateway()

    assert gateway.return_message(payment_ref(), {"session_id": SESSION_ID}) == (
        "session_id matches the checkout session"
    )
    assert "not ours" in gateway.return_message(payment_ref(), {"session_id": "x"})


# --- refunds ----------------------------------------------------------------------------


def test_refund_is_sent_once_with_our_id_as_the_idempotency_key(mocked):
    mocked.post(f"{API}/v1/refunds", json=load("refund_succeeded"))

    result = make_gateway().refund(refund_request())

    sent = mocked.calls[0].request
    assert sent.headers["Idempotency-Key"] == REFUND_ID
    assert form(sent) == {
        "payment_intent": INTENT_ID,
        "amount": "510",
        "metadata[refund_id]": REFUND_ID,
        "metadata[ref_id]": REF_ID,
        "metadata[reason]": "customer asked",
    }
    assert result.status == RefundStatus.SUCCEEDED
    assert result.gateway_refund_id == "re_3MtwBwLkdIwHu7ix0Q1Hxs9n"


def test_refund_before_the_payment_intent_is_known_reads_the_session(mocked):
    answer_session(mocked, "checkout_session_paid")
    mocked.post(f"{API}/v1/refunds", json=load("refund_succeeded"))

    result = make_gateway().refund(refund_request(transaction_id=SESSION_ID))

    assert result.status == RefundStatus.SUCCEEDED
    assert form(mocked.calls[1].request)["payment_intent"] == INTENT_ID


def test_refund_of_a_session_never_paid_fails_without_a_refund_call(mocked):
    answer_session(mocked, "checkout_session_open")

    result = make_gateway().refund(refund_request(transaction_id=SESSION_ID))

    assert result.status == RefundStatus.FAILED
    assert "no PaymentIntent" in result.message
    assert [c.request.method for c in mocked.calls] == ["GET"]


@pytest.mark.parametrize(
    ("fixture", "status"),
    [("refund_pending", RefundStatus.PENDING), ("refund_failed", RefundStatus.FAILED)],
)
def test_refund_outcomes(mocked, fixture, status):
    mocked.post(f"{API}/v1/refunds", json=load(fixture))

    result = make_gateway().refund(refund_request())

    assert result.status == status


@pytest.mark.parametrize(
    ("fixture", "code"),
    [("error_amount_too_large", "amount_too_large"), ("error_charge_disputed", "")],
)
def test_refund_stripe_refused_is_failed_at_once(mocked, fixture, code):
    mocked.post(f"{API}/v1/refunds", json=load(fixture), status=400)

    result = make_gateway().refund(refund_request())

    assert result.status == RefundStatus.FAILED
    assert result.message.startswith("refund refused: ")
    assert (code or "charge_disputed") in result.message


@pytest.mark.parametrize(
    "response",
    [
        {"json": load("error_idempotency"), "status": 400},
        {"body": requests.exceptions.ReadTimeout()},
        {"body": "down", "status": 500},
        {"json": load("error_rate_limit"), "status": 429},
    ],
    ids=["idempotency", "timeout", "500", "429"],
)
def test_refund_with_an_unknown_outcome_is_raised_and_not_retried(mocked, response):
    mocked.post(f"{API}/v1/refunds", **response)

    with pytest.raises(GatewayUnavailable):
        make_gateway().refund(refund_request())

    assert len(mocked.calls) == 1


def test_refund_amount_stripe_cannot_take_fails_before_sending(mocked):
    result = make_gateway().refund(
        refund_request(amount=Decimal("1.235"), currency="KWD")
    )

    assert result.status == RefundStatus.FAILED
    assert len(mocked.calls) == 0


def test_fetch_refund_finds_ours_by_its_metadata(mocked):
    mocked.get(f"{API}/v1/refunds", json=load("refunds_ours_and_portal"))

    found = make_gateway().fetch_refund(refund_request())

    assert found is not None and found.status == RefundStatus.SUCCEEDED
    assert found.gateway_refund_id == "re_3MtwBwLkdIwHu7ix0Q1Hxs9n"
    assert form(mocked.calls[0].request)["payment_intent"] == INTENT_ID


def test_fetch_refund_not_made_is_none(mocked):
    mocked.get(f"{API}/v1/refunds", json=load("refunds_none"))

    assert make_gateway().fetch_refund(refund_request()) is None


def test_fetch_refund_for_an_unknown_payment_intent_is_none(mocked):
    mocked.get(f"{API}/v1/refunds", json=load("error_resource_missing"), status=404)

    assert make_gateway().fetch_refund(refund_request()) is None


# --- webhooks ---------------------------------------------------------------------------


def test_checkout_session_event_is_verified_and_confirmed():
    body, headers = signed(load("event_checkout_session_completed"))

    event = make_gateway().parse_webhook(body, headers)

    assert event.event_id == "evt_1MtwC1LkdIwHu7ixhPbqnO9o"
    assert event.ref_id == REF_ID and event.transaction_id == ""
    assert event.confirm is True and event.status is None
    assert event.message == ("event checkout.session.completed (payment_status paid)")
    assert event.raw == load("event_checkout_session_completed")


def test_signature_header_is_read_case_insensitively():
    body, headers = signed(load("event_checkout_session_expired"))

    event = make_gateway().parse_webhook(
        body, {"stripe-signature": headers["Stripe-Signature"]}
    )

    assert event.ref_id == REF_ID


def test_a_rolled_secret_signs_twice_and_either_is_accepted():
    body, headers = signed(load("event_checkout_session_completed"))
    _, other = signed(body, secret="whsec_the_new_one")
    t, v1 = headers["Stripe-Signature"].split(",")
    both = f"{t},{other['Stripe-Signature'].split(',')[1]},{v1}"

    assert make_gateway().parse_webhook(body, {"Stripe-Signature": both}).ref_id


def test_refund_event_names_the_payment_by_the_charges_metadata():
    body, headers = signed(load("event_charge_refunded"))

    event = make_gateway().parse_webhook(body, headers)

    assert (event.ref_id, event.transaction_id, event.confirm) == (REF_ID, "", True)


def test_dispute_event_names_the_payment_by_its_payment_intent():
    body, headers = signed(load("event_charge_dispute_created"))

    event = make_gateway().parse_webhook(body, headers)

    assert (event.ref_id, event.transaction_id) == ("", INTENT_ID)
    assert event.confirm is True
    assert event.message == "event charge.dispute.created (fraudulent, needs_response)"


def test_other_events_are_verified_but_name_nothing():
    body, headers = signed(load("event_customer_created"))

    event = make_gateway().parse_webhook(body, headers)

    assert event.event_id == "evt_1MtwZZLkdIwHu7ixLm0TqQ2c"
    assert (event.ref_id, event.transaction_id, event.status) == ("", "", None)
    assert event.confirm is False


def _tampered():
    body, headers = signed(load("event_checkout_session_completed"))
    return body.replace(b'"amount_total": 1999', b'"amount_total": 1'), headers


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: signed(load("event_checkout_session_completed"), secret="whsec_x"),
            "No signatures found matching",
        ),
        (_tampered, "No signatures found matching"),
        (
            lambda: signed(
                load("event_checkout_session_completed"), at=int(time.time()) - 301
            ),
            "tolerance",
        ),
        (
            lambda: (b"{}", {"Stripe-Signature": "garbage"}),
            "Unable to extract timestamp",
        ),
        (lambda: (b"{}", {}), "missing Stripe-Signature"),
        (lambda: signed(b"not json"), "not JSON"),
        (lambda: signed(b'{"id": "evt_1", "type": "x"}'), "no id, type or object"),
        (
            lambda: (b"\xff\xfe", {"Stripe-Signature": "t=1,v1=ab"}),
            "not UTF-8",
        ),
    ],
    ids=["secret", "tampered", "old", "header", "none", "json", "shape", "utf8"],
)
def test_bad_webhooks_are_rejected(make, match):
    body, headers = make()

    with pytest.raises(WebhookRejected, match=match):
        make_gateway().parse_webhook(body, headers)


def test_webhooks_are_rejected_without_a_webhook_secret():
    body, headers = signed(load("event_checkout_session_completed"))

    with pytest.raises(WebhookRejected, match="STRIPE_WEBHOOK_SECRET is not set"):
        make_gateway(webhook_secret="").parse_webhook(body, headers)


def test_a_verified_delivery_is_read_again_without_its_signature():
    """Re-processing a stored delivery: its timestamp is long past the tolerance."""
    body, _ = signed(load("event_checkout_session_completed"), at=1)

    event = make_gateway().parse_webhook(
        body, {"Stripe-Signature": "[redacted]"}, verified=True
    )

    assert event.ref_id == REF_ID


# --- redaction ------------------------------------------------------------------------


def test_secrets_never_reach_logs_or_exception_messages(mocked, caplog):
    caplog.set_level(logging.DEBUG)
    gateway = make_gateway()
    messages: list[str] = []

    def record(exc: BaseException | None) -> None:
        while exc is not None:
            messages.extend([str(exc), repr(exc)])
            exc = exc.__cause__ or exc.__context__

    mocked.post(f"{API}/v1/checkout/sessions", json=load("checkout_session_open"))
    answer_session(mocked, "checkout_session_paid", "charges_paid")
    mocked.post(f"{API}/v1/refunds", json=load("refund_succeeded"))
    gateway.create_checkout(checkout_request())
    gateway.fetch_status(payment_ref())
    gateway.refund(refund_request())

    body, headers = signed(load("event_checkout_session_completed"))
    signature = headers["Stripe-Signature"].split("v1=")[1]
    mocked.get(
        f"{API}/v1/checkout/sessions/cs_401",
        json=load("error_invalid_api_key"),
        status=401,
    )
    mocked.post(f"{API}/v1/refunds", body=requests.exceptions.ConnectionError("reset"))
    failing = [
        lambda: gateway.fetch_status(payment_ref(session_id="cs_401")),
        lambda: gateway.refund(refund_request()),
        lambda: gateway.parse_webhook(body, {"Stripe-Signature": "t=1,v1=" + "0" * 64}),
        lambda: make_gateway(webhook_secret="whsec_other").parse_webhook(body, headers),
        lambda: make_gateway(api_base="http://stripe.example"),
    ]
    for call in failing:
        with pytest.raises(
            (GatewayConfigError, GatewayUnavailable, WebhookRejected)
        ) as caught:
            call()
        record(caught.value)

    assert "stripe" in caplog.text and "/v1/checkout/sessions" in caplog.text
    assert "Post details" not in caplog.text  # the library's own body dumps
    assert len(messages) >= len(failing)
    for secret in (SECRET_KEY, WEBHOOK_SECRET, signature, "_secret_"):
        assert secret not in caplog.text
        for message in messages:
            assert secret not in message
