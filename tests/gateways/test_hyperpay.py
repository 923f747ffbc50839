"""HyperPay COPYandPAY adapter: requests, result codes, reports, refunds, webhooks."""

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
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
from gateways.hyperpay import HyperPayGateway
from gateways.hyperpay.codes import Outcome, classify
from gateways.hyperpay.limits import RateLimiter
from gateways.hyperpay.notifications import decrypt

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gateways" / "hyperpay"

BASE = "https://eu-test.oppwa.com"
TOKEN = "OGE4Mjk0MTc0YjdlY2IyODAxNGI5Njk5MjIwMDE1Y2N8c3k2S0pzVDg="
ENTITY = "8ac7a4c98fa1e2b3018fa1e2b3c40001"
MADA_ENTITY = "8ac7a4c98fa1e2b3018fa1e2b3c40002"
WEBHOOK_KEY = "7F3A" * 16
REF_ID = "ref_8f2kQ1mZx7LwP0aBcD"
REFUND_ID = "rf_2Qw9Lk3Mn8Pz"
CHECKOUT = "C4E3F5F1A6D9B2C7E8F0A1B2C3D4E5F6.uat01-vm-tx02"
MADA_CHECKOUT = "D5F4A6B2C7E8F0A1B2C3D4E5F6A7B8C9.uat01-vm-tx02"
PAYMENT_ID = "8ac7a4a277bb37680177ca9e266d3192"
SETTINGS = {
    "api_base_url": BASE,
    "access_token": TOKEN,
    "entity_id": ENTITY,
    "brands": "VISA MASTER",
    "webhook_key": WEBHOOK_KEY,
    "payment_type": "DB",
    "query_per_minute": 0,
}
STATUS_URL = f"{BASE}/v1/checkouts/{CHECKOUT}/payment"
MADA_STATUS_URL = f"{BASE}/v1/checkouts/{MADA_CHECKOUT}/payment"
QUERY_URL = f"{BASE}/v1/query"
LINKED_URL = f"{BASE}/v3/query/{PAYMENT_ID}"
REFUND_URL = f"{BASE}/v1/payments/{PAYMENT_ID}"

# The adapter's call budgets live in Django's cache, here the database cache.
pytestmark = pytest.mark.django_db


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def make_gateway(**overrides: Any) -> HyperPayGateway:
    return HyperPayGateway({**SETTINGS, **overrides})


def checkout_request(**overrides: Any) -> CheckoutRequest:
    values = {
        "ref_id": REF_ID,
        "amount": Decimal("24"),
        "currency": "SAR",
        "email": "payer@example.com",
        "description": "eSIM Saudi Arabia 5 GB",
        "return_url": f"https://shop.example/checkout/return/{REF_ID}/",
        "cancel_url": f"https://shop.example/checkout/return/{REF_ID}/?cancelled=1",
        "notify_url": "https://shop.example/api/webhooks/hyperpay/",
        "site_url": "https://shop.example/",
    }
    return CheckoutRequest(**{**values, **overrides})


def checkouts(*pairs: tuple[str, str, str]) -> list[dict[str, str]]:
    return [
        {
            "widget": widget,
            "label": "mada" if widget == "mada" else "Card",
            "entity_id": entity,
            "checkout_id": checkout,
            "brands": "MADA" if widget == "mada" else "VISA MASTER",
        }
        for widget, entity, checkout in pairs
    ]


def payment_ref(**overrides: Any) -> PaymentRef:
    values = {
        "ref_id": REF_ID,
        "session_id": CHECKOUT,
        "amount": Decimal("24.00"),
        "currency": "SAR",
        "expires_at": datetime.now(UTC) + timedelta(minutes=20),
        "data": {"checkouts": checkouts(("card", ENTITY, CHECKOUT))},
    }
    return PaymentRef(**{**values, **overrides})


def expired_ref(**overrides: Any) -> PaymentRef:
    return payment_ref(expires_at=datetime.now(UTC) - timedelta(minutes=1), **overrides)


def paid_data() -> dict[str, Any]:
    return {
        "checkouts": checkouts(("card", ENTITY, CHECKOUT)),
        "entity_id": ENTITY,
        "payment_id": PAYMENT_ID,
    }


def refund_request(**overrides: Any) -> RefundRequest:
    values = {
        "ref_id": REF_ID,
        "refund_id": REFUND_ID,
        "amount": Decimal("4.00"),
        "currency": "SAR",
        "data": paid_data(),
    }
    return RefundRequest(**{**values, **overrides})


def encrypt(envelope: Any, *, key: str = WEBHOOK_KEY, iv: bytes = b"\x07" * 12):
    """Encrypt a notification as the platform does: (hex body, headers)."""
    plain = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    sealed = AESGCM(bytes.fromhex(key)).encrypt(iv, plain, None)
    return sealed[:-16].hex().upper().encode(), {
        "X-Initialization-Vector": iv.hex().upper(),
        "X-Authentication-Tag": sealed[-16:].hex().upper(),
        "Content-Type": "text/plain",
    }


def sent_form(call) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(call.request.body).items()}


def sent_query(call) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


@pytest.fixture
def mocked():
    with responses.RequestsMock() as rsps:
        yield rsps


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "env_var"),
    [
        ("api_base_url", "HYPERPAY_API_BASE_URL"),
        ("access_token", "HYPERPAY_ACCESS_TOKEN"),
        ("entity_id", "HYPERPAY_ENTITY_ID"),
    ],
)
def test_missing_settings_name_the_env_var(key, env_var):
    with pytest.raises(GatewayConfigError, match=env_var):
        make_gateway(**{key: ""})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api_base_url": "eu-test.oppwa.com"}, "must be an https:// URL"),
        ({"entity_id": "not an entity!"}, "HYPERPAY_ENTITY_ID must be"),
        ({"mada_entity_id": "x"}, "HYPERPAY_MADA_ENTITY_ID must be"),
        ({"payment_type": "PA"}, "HYPERPAY_PAYMENT_TYPE must be DB"),
        ({"webhook_key": "abc"}, "64 hexadecimal characters"),
        ({"webhook_key": "g" * 64}, "64 hexadecimal characters"),
        ({"brands": "VISA master-card"}, "HYPERPAY_BRANDS has MASTER-CARD"),
        ({"query_per_minute": -1}, "per_minute must be"),
    ],
)
def test_bad_settings_are_a_config_error_saying_which(overrides, message):
    with pytest.raises(GatewayConfigError, match=message):
        make_gateway(**overrides)


def test_mada_gets_a_widget_of_its_own():
    plain = make_gateway(brands="VISA MASTER MADA")
    split = make_gateway(brands="VISA MASTER MADA", mada_entity_id=MADA_ENTITY)

    assert [(w.key, w.brands) for w in plain.widgets] == [
        ("card", ("VISA", "MASTER", "MADA"))
    ]
    assert [(w.key, w.entity_id, w.brands) for w in split.widgets] == [
        ("card", ENTITY, ("VISA", "MASTER")),
        ("mada", MADA_ENTITY, ("MADA",)),
    ]
    assert make_gateway(brands="").widgets[0].brands == ("VISA", "MASTER")


# --- result codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("000.000.000", Outcome.SUCCESS),
        ("000.100.110", Outcome.SUCCESS),  # test mode
        ("000.300.000", Outcome.SUCCESS),
        ("000.600.000", Outcome.SUCCESS),
        ("000.400.110", Outcome.SUCCESS),
        ("000.400.120", Outcome.SUCCESS),
        ("000.400.000", Outcome.REVIEW),
        ("000.400.020", Outcome.REVIEW),
        ("000.400.100", Outcome.REVIEW),
        ("000.200.000", Outcome.PENDING),
        ("000.200.100", Outcome.PENDING),
        ("800.400.500", Outcome.WAITING),
        ("100.400.500", Outcome.WAITING),
        ("900.100.300", Outcome.UNCERTAIN),
        ("900.400.000", Outcome.UNCERTAIN),
        ("000.400.030", Outcome.UNCERTAIN),
        ("000.100.200", Outcome.CHARGEBACK),
        ("000.100.299", Outcome.CHARGEBACK),
        ("100.396.103", Outcome.TIMED_OUT),
        ("100.395.501", Outcome.TIMED_OUT),
        ("100.396.101", Outcome.DECLINED),  # cancelled by the payer
        ("800.100.151", Outcome.DECLINED),
        ("000.400.101", Outcome.DECLINED),  # 3-D Secure risk rejection
        ("100.400.120", Outcome.DECLINED),  # external risk, not waiting
        ("900.500.000", Outcome.DECLINED),
    ],
)
def test_result_codes_are_classified_by_the_documented_groups(code, outcome):
    assert classify(code) == outcome


@pytest.mark.parametrize("code", ["", "000.100", "000.100.1100", "abc.def.ghi", None])
def test_anything_else_is_not_a_result_code(code):
    with pytest.raises(ValueError, match="not a result code"):
        classify(code)


# --- checkout ------------------------------------------------------------------------------


def test_create_prepares_a_checkout_with_our_reference(mocked):
    call = mocked.post(f"{BASE}/v1/checkouts", json=load("checkout_created"))
    before = datetime.now(UTC)

    session = make_gateway().create_checkout(checkout_request())

    assert sent_form(call.calls[0]) == {
        "entityId": ENTITY,
        "amount": "24.00",
        "currency": "SAR",
        "paymentType": "DB",
        "merchantTransactionId": REF_ID,
        "customer.email": "payer@example.com",
    }
    request = call.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert session.payment_url == f"https://shop.example/checkout/pay/{REF_ID}/"
    assert session.session_id == CHECKOUT
    assert before + timedelta(minutes=29) < session.expires_at
    assert session.expires_at <= datetime.now(UTC) + timedelta(minutes=30)
    assert session.data == {"checkouts": checkouts(("card", ENTITY, CHECKOUT))}


def test_create_with_mada_prepares_one_checkout_per_entity(mocked):
    mada_answer = {**load("checkout_created"), "id": MADA_CHECKOUT}
    mocked.post(f"{BASE}/v1/checkouts", json=load("checkout_created"))
    mocked.post(f"{BASE}/v1/checkouts", json=mada_answer)

    session = make_gateway(mada_entity_id=MADA_ENTITY).create_checkout(
        checkout_request()
    )

    assert [sent_form(c)["entityId"] for c in mocked.calls] == [ENTITY, MADA_ENTITY]
    assert session.session_id == CHECKOUT
    assert session.data["checkouts"] == checkouts(
        ("card", ENTITY, CHECKOUT), ("mada", MADA_ENTITY, MADA_CHECKOUT)
    )


@pytest.mark.parametrize(
    ("currency", "amount", "sent"),
    [("JPY", "1000", "1000"), ("KWD", "1.25", "1.250"), ("USD", "19.9", "19.90")],
)
def test_amounts_use_the_currencys_decimals(mocked, currency, amount, sent):
    call = mocked.post(f"{BASE}/v1/checkouts", json=load("checkout_created"))

    make_gateway().create_checkout(
        checkout_request(amount=Decimal(amount), currency=currency)
    )

    assert sent_form(call.calls[0])["amount"] == sent


def test_a_refused_checkout_is_unavailable_with_its_code(mocked):
    mocked.post(f"{BASE}/v1/checkouts", json=load("checkout_refused"), status=400)

    with pytest.raises(GatewayUnavailable, match="200.300.404 invalid or missing"):
        make_gateway().create_checkout(checkout_request())


def test_a_refused_token_is_a_config_error(mocked):
    mocked.post(f"{BASE}/v1/checkouts", json=load("error_authentication"), status=401)

    with pytest.raises(GatewayConfigError, match="access token"):
        make_gateway().create_checkout(checkout_request())


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>502 Bad Gateway</html>", "status": 200},
        {"body": '{"id": "x"}', "status": 200},  # no result
        {"body": '["not", "an", "object"]', "status": 200},
    ],
)
def test_garbage_is_unavailable(mocked, answer):
    mocked.post(f"{BASE}/v1/checkouts", **answer)

    with pytest.raises(GatewayUnavailable):
        make_gateway().create_checkout(checkout_request())


def test_a_checkout_post_is_never_retried(mocked):
    call = mocked.post(f"{BASE}/v1/checkouts", body=requests.ConnectionError("reset"))

    with pytest.raises(GatewayUnavailable):
        make_gateway().create_checkout(checkout_request())

    assert len(call.calls) == 1


# --- pay page and return --------------------------------------------------------------------


def test_the_pay_page_loads_the_widget_of_each_checkout():
    gateway = make_gateway(mada_entity_id=MADA_ENTITY)
    ref = payment_ref(
        data={
            "checkouts": checkouts(
                ("card", ENTITY, CHECKOUT), ("mada", MADA_ENTITY, MADA_CHECKOUT)
            )
        }
    )

    template, context = gateway.pay_page(ref)

    assert template == "payments/pay_hyperpay.html"
    assert context["widgets"] == [
        {
            "key": "card",
            "label": "Card",
            "brands": "VISA MASTER",
            "script": f"{BASE}/v1/paymentWidgets.js?checkoutId="
            "C4E3F5F1A6D9B2C7E8F0A1B2C3D4E5F6.uat01-vm-tx02",
        },
        {
            "key": "mada",
            "label": "mada",
            "brands": "MADA",
            "script": f"{BASE}/v1/paymentWidgets.js?checkoutId="
            "D5F4A6B2C7E8F0A1B2C3D4E5F6A7B8C9.uat01-vm-tx02",
        },
    ]
    assert gateway.pay_page_script_origins() == (BASE,)


def test_the_return_is_a_note_only():
    gateway = make_gateway()
    ours = gateway.return_message(
        payment_ref(), {"id": CHECKOUT, "resourcePath": "/v1/checkouts/x/payment"}
    )
    other = gateway.return_message(
        payment_ref(), {"id": "someone-elses", "resourcePath": "/evil"}
    )

    assert ours.startswith(f"returned from checkout {CHECKOUT}")
    assert "resourcePath not followed" in ours
    assert other.startswith("return without one of this payment's checkout ids")


# --- status -------------------------------------------------------------------------------


def test_nothing_paid_yet_is_pending(mocked):
    call = mocked.get(STATUS_URL, json=load("status_pending"))

    result = make_gateway().fetch_status(payment_ref())

    assert (result.status, result.message) == (Status.PENDING, "not paid yet")
    assert sent_query(call.calls[0]) == {"entityId": ENTITY}
    assert call.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_paid_checkout_is_completed_and_records_its_entity(mocked):
    mocked.get(STATUS_URL, json=load("payment_success"))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.COMPLETED
    assert (result.amount, result.currency) == (Decimal("24.00"), "SAR")
    assert result.transaction_id == PAYMENT_ID
    assert result.data == {"entity_id": ENTITY, "payment_id": PAYMENT_ID}
    assert result.review == "" and not result.settling
    # Refunds were not asked for: unknown, not "none".
    assert (result.refunds, result.amount_refunded) == (None, None)
    assert result.raw["transactions"][0]["id"] == PAYMENT_ID


@pytest.mark.parametrize(
    ("fixture", "status", "settling", "review", "message"),
    [
        ("payment_review", Status.COMPLETED, False, "reviewed manually", "paid: 000.400.000"),
        ("payment_declined", Status.FAILED, False, "", "declined: 800.100.151 transaction declined (invalid card)"),
        ("payment_waiting", Status.PENDING, True, "", "waiting for the payment to complete: 800.400.500"),
        ("payment_uncertain", Status.PENDING, True, "is uncertain (900.100.300", "outcome uncertain: 900.100.300"),
        ("payment_timed_out", Status.EXPIRED, False, "", "timed out: 100.396.103"),
    ],
)  # fmt: skip
def test_what_each_group_means(mocked, fixture, status, settling, review, message):
    mocked.get(STATUS_URL, json=load(fixture))

    result = make_gateway().fetch_status(payment_ref())

    assert (result.status, result.settling) == (status, settling)
    assert result.message.startswith(message)
    assert review in result.review if review else result.review == ""


def test_a_communication_error_about_the_request_is_looked_at_again(mocked):
    answer = {"result": {"code": "900.100.600", "description": "connector timeout"}}
    mocked.get(STATUS_URL, json=answer)

    with pytest.raises(GatewayUnavailable, match="900.100.600"):
        make_gateway().fetch_status(payment_ref())


def test_an_answer_about_another_reference_is_refused(mocked):
    mocked.get(
        STATUS_URL,
        json={**load("payment_success"), "merchantTransactionId": "someone-else"},
    )

    with pytest.raises(GatewayUnavailable, match="another payment"):
        make_gateway().fetch_status(payment_ref())


def test_a_gone_checkout_is_read_from_the_transaction_report(mocked):
    """The payer never came back and the checkout expired: the report knows."""
    mocked.get(STATUS_URL, json=load("status_expired"), status=400)
    query = mocked.get(QUERY_URL, json=load("query_by_reference"))

    result = make_gateway().fetch_status(payment_ref())

    assert result.status == Status.COMPLETED and result.transaction_id == PAYMENT_ID
    assert sent_query(query.calls[0]) == {
        "entityId": ENTITY,
        "merchantTransactionId": REF_ID,
    }


def test_past_the_checkouts_life_only_the_report_is_asked(mocked):
    query = mocked.get(QUERY_URL, json=load("query_by_reference"))

    result = make_gateway().fetch_status(expired_ref())

    assert result.status == Status.COMPLETED
    assert len(query.calls) == 1  # and no checkout status call (responses checks)


def test_nothing_in_the_report_after_the_checkout_is_expired(mocked):
    mocked.get(QUERY_URL, json=load("query_not_found"))

    result = make_gateway().fetch_status(expired_ref())

    assert result.status == Status.EXPIRED
    assert result.message == "no payment at HyperPay; the checkout has expired"


def test_a_pending_attempt_after_the_checkout_is_still_pending(mocked):
    answer = {**load("query_by_reference"), "payments": [load("status_pending")]}
    answer["payments"][0].update(id="8ac7a4a2pending", paymentType="DB")
    mocked.get(QUERY_URL, json=answer)

    result = make_gateway().fetch_status(expired_ref())

    # The expiry job ends it; the reconciler asks again until then.
    assert result.status == Status.PENDING and not result.settling


def test_mada_paid_while_the_card_checkout_is_untouched(mocked):
    mocked.get(STATUS_URL, json=load("status_pending"))
    mada = mocked.get(MADA_STATUS_URL, json=load("payment_success"))
    ref = payment_ref(
        data={
            "checkouts": checkouts(
                ("card", ENTITY, CHECKOUT), ("mada", MADA_ENTITY, MADA_CHECKOUT)
            )
        }
    )

    result = make_gateway(mada_entity_id=MADA_ENTITY).fetch_status(ref)

    assert result.status == Status.COMPLETED
    assert result.data == {"entity_id": MADA_ENTITY, "payment_id": PAYMENT_ID}
    assert sent_query(mada.calls[0]) == {"entityId": MADA_ENTITY}


def test_after_the_checkouts_each_entity_is_asked(mocked):
    query = mocked.get(QUERY_URL, json=load("query_not_found"))
    ref = expired_ref(
        data={
            "checkouts": checkouts(
                ("card", ENTITY, CHECKOUT), ("mada", MADA_ENTITY, MADA_CHECKOUT)
            )
        }
    )

    make_gateway(mada_entity_id=MADA_ENTITY).fetch_status(ref)

    assert [sent_query(c)["entityId"] for c in query.calls] == [ENTITY, MADA_ENTITY]


def test_a_paid_payment_is_read_with_its_linked_transactions(mocked):
    linked = mocked.get(LINKED_URL, json=load("query_linked_refunds"))

    result = make_gateway().fetch_status(payment_ref(data=paid_data()))

    assert sent_query(linked.calls[0]) == {
        "entityId": ENTITY,
        "includeLinkedTransactions": "true",
    }
    assert result.status == Status.PARTIALLY_REFUNDED
    assert result.amount_refunded == Decimal("6.00")
    assert [(r.gateway_refund_id, r.amount, r.status) for r in result.refunds] == [
        ("rf_2Qw9Lk3Mn8Pz", Decimal("4.00"), RefundStatus.SUCCEEDED),
        ("portal-refund-7", Decimal("2.00"), RefundStatus.SUCCEEDED),
        ("rf_declined_1", Decimal("1.00"), RefundStatus.FAILED),
    ]
    assert result.amount_charged_back is None


def test_a_chargeback_is_flagged_and_not_a_refund(mocked):
    mocked.get(LINKED_URL, json=load("query_linked_chargeback"))

    result = make_gateway().fetch_status(payment_ref(data=paid_data()))

    assert result.status == Status.COMPLETED
    assert result.amount_charged_back == Decimal("24.00")
    assert result.amount_refunded == 0 and result.refunds == ()
    assert result.review == (
        f"HyperPay: chargeback of 24.00 SAR on payment {PAYMENT_ID}"
    )


def test_two_captured_payments_for_one_reference_are_flagged(mocked):
    first = load("payment_success")
    second = {**first, "id": "8ac7a4a277bb37680177ca9e266d3999"}
    mocked.get(
        QUERY_URL, json={**load("query_by_reference"), "payments": [second, first]}
    )

    result = make_gateway().fetch_status(expired_ref())

    assert result.amount == Decimal("48.00")
    assert result.review.startswith("HyperPay: 2 captured payments for one reference")


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>oops</html>", "status": 200},
        {"body": "{", "status": 200},
        {"body": "busy", "status": 503},
        {"json": {**load("payment_success"), "amount": "NaN"}, "status": 200},
        {"json": {**load("payment_success"), "result": {"code": "ok"}}, "status": 200},
    ],
)
def test_garbage_status_answers_are_unavailable(mocked, answer):
    mocked.get(STATUS_URL, **answer)

    with pytest.raises(GatewayUnavailable):
        make_gateway().fetch_status(payment_ref())


# --- call budgets ----------------------------------------------------------------------------


def test_the_report_budget_refuses_before_calling(mocked):
    query = mocked.get(QUERY_URL, json=load("query_not_found"))
    gateway = make_gateway(query_per_minute=1)

    gateway.fetch_status(expired_ref())
    with pytest.raises(GatewayUnavailable, match="budget spent") as caught:
        gateway.fetch_status(expired_ref())

    assert caught.value.contacted is False
    assert len(query.calls) == 1


def test_the_checkout_status_budget_is_nine_a_minute(mocked):
    call = mocked.get(STATUS_URL, json=load("status_pending"))
    gateway = make_gateway()

    for _ in range(9):
        gateway.fetch_status(payment_ref())
    with pytest.raises(GatewayUnavailable, match="9 a minute"):
        gateway.fetch_status(payment_ref())

    assert len(call.calls) == 9


def test_the_rate_limiter_is_a_sliding_window_per_key():
    limiter = RateLimiter(2, name="t", window_seconds=1)

    assert [limiter.acquire("a") for _ in range(3)] == [True, True, False]
    assert limiter.acquire("b") is True
    time.sleep(2.1)  # the database cache keeps expiry times to the second
    assert [limiter.acquire("a") for _ in range(3)] == [True, True, False]
    assert all(RateLimiter(0, name="t").acquire("a") for _ in range(100))


def test_the_budget_is_shared_by_every_process_through_the_cache(mocked):
    """Two adapters (as in two workers) spend one entity's report budget."""
    query = mocked.get(QUERY_URL, json=load("query_not_found"))
    web, jobs = make_gateway(query_per_minute=2), make_gateway(query_per_minute=2)

    web.fetch_status(expired_ref())
    jobs.fetch_status(expired_ref())
    with pytest.raises(GatewayUnavailable, match="budget spent"):
        web.fetch_status(expired_ref())

    assert len(query.calls) == 2


# --- refunds ---------------------------------------------------------------------------------


def test_refund_is_sent_once_under_the_entity_paid_through(mocked):
    call = mocked.post(REFUND_URL, json=load("refund_success"))

    result = make_gateway(mada_entity_id=MADA_ENTITY).refund(
        refund_request(data={**paid_data(), "entity_id": MADA_ENTITY})
    )

    assert sent_form(call.calls[0]) == {
        "entityId": MADA_ENTITY,
        "amount": "4.00",
        "currency": "SAR",
        "paymentType": "RF",
        "merchantTransactionId": REFUND_ID,
    }
    assert result.status == RefundStatus.SUCCEEDED
    assert result.gateway_refund_id == "8ac7a4a1764a7cfc01764cbdd50c2b3e"


def test_a_refund_without_recorded_data_finds_the_capture_first(mocked):
    query = mocked.get(QUERY_URL, json=load("query_by_reference"))
    call = mocked.post(REFUND_URL, json=load("refund_success"))

    result = make_gateway().refund(refund_request(data={}))

    assert sent_query(query.calls[0])["merchantTransactionId"] == REF_ID
    assert sent_form(call.calls[0])["entityId"] == ENTITY
    assert result.status == RefundStatus.SUCCEEDED


def test_nothing_captured_nothing_to_refund(mocked):
    mocked.get(QUERY_URL, json=load("query_not_found"))

    result = make_gateway().refund(refund_request(data={}))

    assert result.status == RefundStatus.FAILED
    assert result.message == f"no captured payment at HyperPay for {REF_ID}"


def test_a_refused_refund_fails_with_its_code(mocked):
    mocked.post(REFUND_URL, json=load("refund_refused"), status=400)

    result = make_gateway().refund(refund_request())

    assert result.status == RefundStatus.FAILED
    assert result.message.startswith("refund refused: 700.400.200 cannot refund")


def test_an_uncertain_refund_is_looked_up_later_not_failed(mocked):
    answer = {**load("refund_success"), "result": load("payment_uncertain")["result"]}
    mocked.post(REFUND_URL, json=answer)

    with pytest.raises(GatewayUnavailable, match="uncertain"):
        make_gateway().refund(refund_request())


def test_a_duplicate_refund_returns_what_the_first_did(mocked):
    mocked.post(REFUND_URL, json=load("refund_duplicate"))
    mocked.get(QUERY_URL, json=load("query_refund"))

    result = make_gateway().refund(refund_request())

    assert result.status == RefundStatus.SUCCEEDED
    assert result.gateway_refund_id == "8ac7a4a1764a7cfc01764cbdd50c2b3e"


def test_a_lost_refund_answer_is_unavailable_and_not_resent(mocked):
    call = mocked.post(REFUND_URL, body=requests.ConnectionError("reset by peer"))

    with pytest.raises(GatewayUnavailable) as caught:
        make_gateway().refund(refund_request())

    assert caught.value.contacted is True and len(call.calls) == 1


def test_fetch_refund_finds_it_by_our_refund_id(mocked):
    query = mocked.get(QUERY_URL, json=load("query_refund"))

    found = make_gateway().fetch_refund(refund_request())

    assert found is not None and found.status == RefundStatus.SUCCEEDED
    assert sent_query(query.calls[0]) == {
        "entityId": ENTITY,
        "merchantTransactionId": REFUND_ID,
    }


def test_fetch_refund_asks_every_entity_and_may_find_nothing(mocked):
    query = mocked.get(QUERY_URL, json=load("query_not_found"))

    found = make_gateway(mada_entity_id=MADA_ENTITY).fetch_refund(
        refund_request(data={"entity_id": MADA_ENTITY, "payment_id": PAYMENT_ID})
    )

    assert found is None
    assert [sent_query(c)["entityId"] for c in query.calls] == [MADA_ENTITY, ENTITY]


# --- webhooks --------------------------------------------------------------------------------


def test_the_documented_vectors_decrypt():
    vectors = load("webhook_vectors")
    key = bytes.fromhex(vectors["key"])
    for vector in vectors["vectors"]:
        headers = {
            "X-Initialization-Vector": vector["iv"],
            "X-Authentication-Tag": vector["tag"],
        }
        wrapped = json.dumps({"encryptedBody": vector["body"]}).encode()
        for body in (vector["body"].encode(), wrapped, vector["body"].lower().encode()):
            assert decrypt(body, headers, key) == vector["plain"]


def test_a_payment_notification_is_confirmed_before_use():
    body, headers = encrypt(load("webhook_payment"))

    event = make_gateway().parse_webhook(body, headers)

    assert event.event_id == f"{PAYMENT_ID}:000.100.110"
    assert (event.ref_id, event.status, event.confirm) == (
        REF_ID,
        Status.COMPLETED,
        True,
    )
    assert (event.amount, event.currency) == (Decimal("24.00"), "SAR")
    assert event.raw["payload"]["id"] == PAYMENT_ID
    assert event.message.startswith(f"notification: DB {PAYMENT_ID} 000.100.110")


def test_the_same_payment_in_another_state_is_other_news():
    pending = load("webhook_payment")
    pending["payload"]["result"] = {"code": "000.200.000", "description": "pending"}
    gateway = make_gateway()

    first = gateway.parse_webhook(*encrypt(pending))
    second = gateway.parse_webhook(*encrypt(load("webhook_payment")))
    again = gateway.parse_webhook(*encrypt(load("webhook_payment"), iv=b"\x09" * 12))

    assert first.event_id != second.event_id == again.event_id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b, h: (b[:-2] + (b"00" if b[-2:] != b"00" else b"11"), h), "does not authenticate"),
        (lambda b, h: (b, {**h, "X-Authentication-Tag": "00" * 16}), "does not authenticate"),
        (lambda b, h: (b, {**h, "X-Initialization-Vector": "01" * 12}), "does not authenticate"),
        (lambda b, h: (b, {k: v for k, v in h.items() if "Tag" not in k}), "missing X-Authentication-Tag"),
        (lambda b, h: (b, {**h, "X-Authentication-Tag": "zz"}), "not hex"),
        (lambda b, h: (b, {**h, "X-Authentication-Tag": "00" * 8}), "wrong length"),
        (lambda b, h: (b"not hex at all", h), "body is not hex"),
        (lambda b, h: (b'{"something": "else"}', h), "without encryptedBody"),
        (lambda b, h: ("é".encode() + b, h), "body is not hex"),
    ],
)  # fmt: skip
def test_a_forged_or_damaged_notification_is_rejected(change, message):
    body, headers = change(*encrypt(load("webhook_payment")))

    with pytest.raises(WebhookRejected, match=message):
        make_gateway().parse_webhook(body, headers)


def test_another_key_does_not_decrypt():
    body, headers = encrypt(load("webhook_payment"), key="11" * 32)

    with pytest.raises(WebhookRejected, match="does not authenticate"):
        make_gateway().parse_webhook(body, headers)


def test_without_a_key_every_notification_is_refused():
    with pytest.raises(WebhookRejected, match="HYPERPAY_WEBHOOK_KEY is not set"):
        make_gateway(webhook_key="").parse_webhook(*encrypt(load("webhook_payment")))


@pytest.mark.parametrize(
    "plain",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"type": "PAYMENT"}).encode(),
        json.dumps({"type": "PAYMENT", "payload": {"id": "x"}}).encode(),
        json.dumps(
            {"type": "PAYMENT", "payload": {**load("webhook_payment")["payload"], "amount": "1e99"}}
        ).encode(),
    ],
)  # fmt: skip
def test_an_authentic_but_malformed_notification_is_rejected(plain):
    with pytest.raises(WebhookRejected, match="HyperPay notification"):
        make_gateway().parse_webhook(*encrypt(plain))


def test_a_refund_notification_is_acknowledged_without_a_status():
    envelope = {"type": "PAYMENT", "payload": load("refund_success")}

    event = make_gateway().parse_webhook(*encrypt(envelope))

    assert (event.status, event.ref_id, event.transaction_id, event.confirm) == (
        None,
        "",
        "",
        False,
    )
    assert event.event_id == "8ac7a4a1764a7cfc01764cbdd50c2b3e:000.100.110"


def test_a_chargeback_notification_is_confirmed_for_its_payment():
    chargeback = load("query_linked_chargeback")["payments"][1]

    event = make_gateway().parse_webhook(
        *encrypt({"type": "PAYMENT", "payload": chargeback})
    )

    assert (event.ref_id, event.confirm, event.status) == (REF_ID, True, None)


@pytest.mark.parametrize(
    "envelope",
    [
        {"type": "REGISTRATION", "action": "CREATED", "payload": {"id": "8a82reg"}},
        {"type": "RISK", "payload": {"score": "10"}},
        {"type": "test"},
    ],
)
def test_other_types_are_kept_and_acknowledged(envelope):
    gateway = make_gateway()

    event = gateway.parse_webhook(*encrypt(envelope))
    again = gateway.parse_webhook(*encrypt(envelope, iv=b"\x01" * 12))

    assert (event.status, event.ref_id, event.confirm) == (None, "", False)
    assert event.event_id == again.event_id and event.event_id
    assert "not about a payment" in event.message


def test_a_stored_delivery_is_decrypted_again_when_reprocessed():
    body, headers = encrypt(load("webhook_payment"))
    stored = body.decode().encode()  # WebhookDelivery.body is text

    event = make_gateway().parse_webhook(stored, headers, verified=True)

    assert event.ref_id == REF_ID


# --- secrets never leak ------------------------------------------------------------------------


def test_logs_and_errors_never_hold_the_token_or_the_webhook_key(mocked, caplog):
    caplog.set_level(logging.DEBUG)
    mocked.post(f"{BASE}/v1/checkouts", json=load("error_authentication"), status=401)
    mocked.get(STATUS_URL, body="<html>", status=502)
    mocked.post(REFUND_URL, body=requests.ConnectionError("reset"))
    gateway = make_gateway(read_timeout=1, connect_timeout=1)
    errors = []
    for call in (
        lambda: gateway.create_checkout(checkout_request()),
        lambda: gateway.fetch_status(payment_ref()),
        lambda: gateway.refund(refund_request()),
        lambda: gateway.parse_webhook(*encrypt(load("webhook_payment"), key="22" * 32)),
    ):
        with pytest.raises(
            (GatewayConfigError, GatewayUnavailable, WebhookRejected)
        ) as caught:
            call()
        errors.append(repr(caught.value) + str(caught.value.__cause__ or ""))

    assert "hyperpay checkout POST" in caplog.text  # the calls were logged
    for secret in (TOKEN, WEBHOOK_KEY, WEBHOOK_KEY.lower()):
        assert secret not in caplog.text
        assert not any(secret in error for error in errors)


def test_a_reversal_voids_and_a_chargeback_reversal_gives_back(mocked):
    report = load("query_linked_chargeback")
    payment, chargeback = report["payments"]
    reversal_of_chargeback = {
        **chargeback,
        "id": "8ac7a4a1764a7cfc01764cbdd50c2b51",
        "paymentType": "CR",
        "amount": "10.00",
        "result": {"code": "000.100.110", "description": "ok"},
    }
    reversal = {
        **chargeback,
        "id": "8ac7a4a1764a7cfc01764cbdd50c2b52",
        "paymentType": "RV",
        "result": {"code": "000.100.110", "description": "ok"},
    }
    mocked.get(
        LINKED_URL,
        json={**report, "payments": [payment, chargeback, reversal_of_chargeback]},
    )
    mocked.get(LINKED_URL, json={**report, "payments": [payment, reversal]})
    gateway = make_gateway()

    charged_back = gateway.fetch_status(payment_ref(data=paid_data()))
    voided = gateway.fetch_status(payment_ref(data=paid_data()))

    assert charged_back.amount_charged_back == Decimal("14.00")
    assert (voided.status, voided.amount_charged_back) == (Status.VOIDED, None)
