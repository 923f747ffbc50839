"""Tests of the fake HyperPay API, widget, pay page and webhooks, over loopback HTTP."""

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import FakeProviderServer
from .clients import Receiver

TOKEN = "OGFjN2E0Yzk4ZmFrZWhwYXl0b2tlbg=="
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def entity(fake: FakeProviderServer, mada: bool = False) -> str:
    return fake.hyperpay_mada_entity_id if mada else fake.hyperpay_entity_id


def checkout(
    fake: FakeProviderServer, *, amount: str = "24.00", mada: bool = False, **extra
) -> str:
    """Prepare a checkout; return its id."""
    response = requests.post(
        f"{fake.url}/v1/checkouts",
        data={
            "entityId": entity(fake, mada),
            "amount": amount,
            "currency": "SAR",
            "paymentType": "DB",
            "merchantTransactionId": extra.pop("reference", new_reference()),
            **extra,
        },
        headers=AUTH,
        timeout=5,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"]["code"] == "000.200.100"
    return body["id"]


def new_reference() -> str:
    return "ref_" + uuid.uuid4().hex[:16]


def status(fake: FakeProviderServer, checkout_id: str, *, mada: bool = False):
    return requests.get(
        f"{fake.url}/v1/checkouts/{checkout_id}/payment",
        params={"entityId": entity(fake, mada)},
        headers=AUTH,
        timeout=5,
    )


def query(fake: FakeProviderServer, reference: str, *, mada: bool = False):
    return requests.get(
        f"{fake.url}/v1/query",
        params={"entityId": entity(fake, mada), "merchantTransactionId": reference},
        headers=AUTH,
        timeout=5,
    )


def refund(
    fake: FakeProviderServer,
    payment_id: str,
    amount: str,
    *,
    reference: str = "",
    mada: bool = False,
):
    return requests.post(
        f"{fake.url}/v1/payments/{payment_id}",
        data={
            "entityId": entity(fake, mada),
            "amount": amount,
            "currency": "SAR",
            "paymentType": "RF",
            "merchantTransactionId": reference or "rf_" + uuid.uuid4().hex[:12],
        },
        headers=AUTH,
        timeout=5,
    )


def decrypt(fake: FakeProviderServer, body: bytes, headers) -> dict[str, Any]:
    text = body.decode()
    if text.startswith("{"):
        text = json.loads(text)["encryptedBody"]
    iv = bytes.fromhex(headers["X-Initialization-Vector"])
    tag = bytes.fromhex(headers["X-Authentication-Tag"])
    key = bytes.fromhex(fake.hyperpay_webhook_key)
    return json.loads(AESGCM(key).decrypt(iv, bytes.fromhex(text) + tag, None))


@pytest.fixture
def webhooks(fake: FakeProviderServer, receiver: Receiver) -> Iterator[Receiver]:
    """Send the fake's webhooks to a receiver for this test."""
    fake.hyperpay_webhook_url = f"{receiver.url}/hook"
    yield receiver
    fake.hyperpay_wait_notifications()
    fake.hyperpay_webhook_url = None


# --- authentication -------------------------------------------------------------------


def test_a_wrong_token_is_401_and_an_unknown_entity_403(fake: FakeProviderServer):
    url = f"{fake.url}/v1/checkouts/x/payment"
    params = {"entityId": fake.hyperpay_entity_id}
    wrong = requests.get(
        url, params=params, headers={"Authorization": "Bearer nope"}, timeout=5
    )
    missing = requests.get(url, params=params, timeout=5)
    other_entity = requests.get(
        url, params={"entityId": "8a8294174b7ecb28014b9699220015ca"}, headers=AUTH
    )

    for response in (wrong, missing):
        assert response.status_code == 401
        assert response.json()["result"]["code"] == "800.900.300"
    assert other_entity.status_code == 403
    assert other_entity.json()["result"]["code"] == "800.900.301"
    assert fake.count("hyperpay:status") == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", "1000.5"), ("amount", "0"), ("currency", "sar"), ("paymentType", "RF")],
)
def test_checkout_parameters_are_validated(fake: FakeProviderServer, field, value):
    form = {
        "entityId": fake.hyperpay_entity_id,
        "amount": "24.00",
        "currency": "SAR",
        "paymentType": "DB",
        field: value,
    }
    if field == "amount" and value == "1000.5":
        form["currency"] = "JPY"  # no decimal places

    response = requests.post(
        f"{fake.url}/v1/checkouts", data=form, headers=AUTH, timeout=5
    )

    assert response.status_code == 400
    result = response.json()["result"]
    assert result["code"] == "200.300.404"
    assert result["parameterErrors"][0]["name"] == field


# --- checkouts, status, widget and pay page -----------------------------------------------


def test_status_is_pending_until_paid_then_the_payment(fake: FakeProviderServer):
    reference = new_reference()
    checkout_id = checkout(fake, reference=reference)

    before = status(fake, checkout_id).json()
    paid = fake.hyperpay_pay(checkout_id, notify=False)
    after = status(fake, checkout_id).json()

    assert before["result"]["code"] == "000.200.000" and "id" not in before
    assert after["id"] == paid["id"] and after["paymentType"] == "DB"
    assert after["result"]["code"] == "000.100.110"
    assert (after["amount"], after["currency"]) == ("24.00", "SAR")
    assert after["merchantTransactionId"] == reference
    # Paid, the checkout takes no second payment.
    with pytest.raises(ValueError, match="already paid"):
        fake.hyperpay_pay(checkout_id)


def test_an_expired_checkout_is_unknown_to_its_status(fake: FakeProviderServer):
    checkout_id = checkout(fake)
    fake.hyperpay_expire_checkout(checkout_id)

    response = status(fake, checkout_id)

    assert response.status_code == 400
    assert response.json()["result"]["code"] == "200.300.404"
    assert "No payment session found" in response.json()["result"]["description"]


def test_a_checkout_answers_only_its_own_entity(fake: FakeProviderServer):
    checkout_id = checkout(fake, mada=True)

    assert status(fake, checkout_id, mada=True).status_code == 200
    assert status(fake, checkout_id).status_code == 403


def test_the_widget_script_links_to_the_pay_page(fake: FakeProviderServer):
    checkout_id = checkout(fake)

    known = requests.get(
        f"{fake.url}/v1/paymentWidgets.js", params={"checkoutId": checkout_id}
    )
    unknown = requests.get(
        f"{fake.url}/v1/paymentWidgets.js", params={"checkoutId": "nope"}
    )

    assert known.headers["Content-Type"].startswith("application/javascript")
    assert json.dumps(checkout_id) in known.text
    assert "/hyperpay/pay/" in known.text and "form.paymentWidgets" in known.text
    assert "throw new Error" in unknown.text
    assert fake.count("hyperpay:widget_js") == 2


def test_the_pay_page_pays_notifies_and_sends_the_payer_back(
    fake: FakeProviderServer, webhooks: Receiver
):
    reference = new_reference()
    checkout_id = checkout(fake, reference=reference)
    page = f"{fake.url}/hyperpay/pay/{checkout_id}"
    back = "http://shop.test/checkout/return/abc/"

    form = requests.get(page, params={"shopperResultUrl": back}, timeout=5)
    paid = requests.post(
        page,
        data={"action": "pay", "shopperResultUrl": back},
        allow_redirects=False,
        timeout=5,
    )
    again = requests.post(
        page, data={"action": "pay", "shopperResultUrl": back}, timeout=5
    )

    assert "24.00 SAR" in form.text and 'value="decline"' in form.text
    assert paid.status_code == 303
    location = urlsplit(paid.headers["Location"])
    assert location.path == "/checkout/return/abc/"
    assert parse_qs(location.query) == {
        "id": [checkout_id],
        "resourcePath": [f"/v1/checkouts/{checkout_id}/payment"],
    }
    assert again.status_code == 409
    [(path, headers, body)] = webhooks.received
    envelope = decrypt(fake, body, headers)
    assert path == "/hook" and envelope["type"] == "PAYMENT"
    assert envelope["payload"]["merchantTransactionId"] == reference
    assert envelope["payload"]["result"]["code"] == "000.100.110"


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        ("decline", "800.100.151"),
        ("pending", "000.200.000"),
        ("waiting", "800.400.500"),
    ],
)
def test_other_outcomes_leave_the_checkout_open_or_declined(
    fake: FakeProviderServer, outcome, code
):
    checkout_id = checkout(fake)

    payment = fake.hyperpay_pay(checkout_id, outcome, notify=False)

    assert payment["result"]["code"] == code
    assert status(fake, checkout_id).json()["result"]["code"] == code
    if outcome != "decline":
        settled = fake.hyperpay_settle(payment["id"], notify=False)
        assert settled["id"] == payment["id"]
        assert status(fake, checkout_id).json()["result"]["code"] == "000.100.110"


# --- transaction reports ---------------------------------------------------------------


def test_query_by_reference_lists_that_entitys_transactions_newest_first(
    fake: FakeProviderServer,
):
    reference = new_reference()
    first = fake.hyperpay_pay(checkout(fake, reference=reference), "decline")
    second = fake.hyperpay_pay(checkout(fake, reference=reference), notify=False)

    found = query(fake, reference).json()
    elsewhere = query(fake, reference, mada=True).json()

    assert [p["id"] for p in found["payments"]] == [second["id"], first["id"]]
    assert found["result"]["code"] == "000.000.100"
    assert elsewhere["result"]["code"] == "700.400.580" and "payments" not in elsewhere


def test_queries_are_throttled_per_entity_when_asked(fake: FakeProviderServer):
    fake.hyperpay_query_limit = 2
    try:
        answers = [query(fake, "ref_x").status_code for _ in range(3)]
        other = query(fake, "ref_x", mada=True).status_code
    finally:
        fake.hyperpay_query_limit = None

    assert answers == [200, 200, 429] and other == 200


def test_a_payment_report_lists_its_linked_transactions(fake: FakeProviderServer):
    payment = fake.hyperpay_pay(checkout(fake), notify=False)
    refunded = refund(fake, payment["id"], "4.00").json()
    charged_back = fake.hyperpay_chargeback(payment["id"], "20.00", notify=False)

    def report(**params):
        return requests.get(
            f"{fake.url}/v3/query/{payment['id']}",
            params={"entityId": fake.hyperpay_entity_id, **params},
            headers=AUTH,
            timeout=5,
        ).json()

    alone, linked = report(), report(includeLinkedTransactions="true")

    assert alone["id"] == payment["id"] and "payments" not in alone
    assert [(p["id"], p["paymentType"]) for p in linked["payments"]] == [
        (payment["id"], "DB"),
        (refunded["id"], "RF"),
        (charged_back["id"], "CB"),
    ]
    assert charged_back["referencedId"] == payment["id"]
    assert charged_back["merchantTransactionId"] == payment["merchantTransactionId"]
    assert charged_back["result"]["code"].startswith("000.100.2")


# --- refunds ---------------------------------------------------------------------------


def test_refunds_up_to_what_was_paid_under_the_payments_entity(
    fake: FakeProviderServer,
):
    payment = fake.hyperpay_pay(checkout(fake, mada=True), notify=False)
    applied = fake.hyperpay_refunds_applied

    wrong_entity = refund(fake, payment["id"], "4.00")
    partial = refund(fake, payment["id"], "4.00", mada=True)
    too_much = refund(fake, payment["id"], "20.01", mada=True)
    rest = refund(fake, payment["id"], "20.00", mada=True)

    assert wrong_entity.status_code == 400
    assert wrong_entity.json()["result"]["code"] == "700.400.700"
    assert partial.json()["paymentType"] == "RF"
    assert partial.json()["referencedId"] == payment["id"]
    assert too_much.json()["result"]["code"] == "700.400.200"
    assert rest.json()["result"]["code"] == "000.100.110"
    assert fake.hyperpay_refunds_applied == applied + 2


def test_a_repeated_refund_reference_is_blocked_as_a_duplicate(
    fake: FakeProviderServer,
):
    payment = fake.hyperpay_pay(checkout(fake), notify=False)

    first = refund(fake, payment["id"], "4.00", reference="rf_same")
    second = refund(fake, payment["id"], "4.00", reference="rf_same")

    assert first.json()["result"]["code"] == "000.100.110"
    assert second.json()["result"]["code"] == "800.110.100"
    rfs = query(fake, "rf_same").json()["payments"]
    assert [p["id"] for p in rfs] == [first.json()["id"]]


def test_a_lost_refund_answer_still_refunds(fake: FakeProviderServer):
    payment = fake.hyperpay_pay(checkout(fake), notify=False)
    fake.hyperpay_lose_refund_answers = 1

    with pytest.raises(requests.ConnectionError):
        refund(fake, payment["id"], "4.00", reference="rf_lost")

    [made] = query(fake, "rf_lost").json()["payments"]
    assert (made["paymentType"], made["amount"]) == ("RF", "4.00")


@pytest.mark.parametrize(
    ("answer", "status_code", "code"),
    [("declined", 200, "800.100.402"), ("rejected", 400, "600.200.500")],
)
def test_queued_refund_answers(fake: FakeProviderServer, answer, status_code, code):
    payment = fake.hyperpay_pay(checkout(fake), notify=False)
    fake.hyperpay_refund_answers[:] = [answer]
    applied = fake.hyperpay_refunds_applied

    response = refund(fake, payment["id"], "4.00")

    assert (response.status_code, response.json()["result"]["code"]) == (
        status_code,
        code,
    )
    assert fake.hyperpay_refunds_applied == applied


# --- webhooks --------------------------------------------------------------------------


def test_webhooks_decrypt_with_the_key_only(fake: FakeProviderServer):
    payment = fake.hyperpay_pay(checkout(fake), notify=False)

    body, headers = fake.hyperpay_notification(payment["id"])
    wrapped, wrapped_headers = fake.hyperpay_notification(payment["id"], json_body=True)
    tampered, tampered_headers = fake.hyperpay_notification(payment["id"], tamper=True)
    other_key, other_headers = fake.hyperpay_notification(payment["id"], key="00" * 32)

    assert decrypt(fake, body, headers)["payload"]["id"] == payment["id"]
    assert json.loads(wrapped)["encryptedBody"]
    assert (
        decrypt(fake, wrapped, wrapped_headers)["payload"]
        == (decrypt(fake, body, headers)["payload"])
    )
    for sealed, sealed_headers in (
        (tampered, tampered_headers),
        (other_key, other_headers),
    ):
        with pytest.raises(InvalidTag):
            decrypt(fake, sealed, sealed_headers)


def test_a_refused_webhook_is_sent_again_with_a_new_iv(
    fake: FakeProviderServer, webhooks: Receiver
):
    payment = fake.hyperpay_pay(checkout(fake), notify=False)
    webhooks.answers[:] = [500, 503]

    response = fake.hyperpay_send_notification(payment["id"], attempts=3)

    assert response.status_code == 200
    ivs = {headers["X-Initialization-Vector"] for _, headers, _ in webhooks.received}
    assert len(webhooks.received) == 3 and len(ivs) == 3
    assert [d[1:] for d in fake.hyperpay_deliveries[-3:]] == [
        (1, 500),
        (2, 503),
        (3, 200),
    ]


def test_refunds_and_chargebacks_are_notified(
    fake: FakeProviderServer, webhooks: Receiver
):
    payment = fake.hyperpay_pay(checkout(fake), notify=False)

    refund(fake, payment["id"], "4.00")
    fake.hyperpay_wait_notifications()
    fake.hyperpay_chargeback(payment["id"])

    kinds = [
        decrypt(fake, body, headers)["payload"]["paymentType"]
        for _, headers, body in webhooks.received
    ]
    assert kinds == ["RF", "CB"]


def test_other_kinds_of_webhook(fake: FakeProviderServer):
    body, headers = fake.hyperpay_notification(kind="REGISTRATION")

    envelope = decrypt(fake, body, headers)

    assert envelope["type"] == "REGISTRATION" and envelope["action"] == "CREATED"


# --- faults through the core ------------------------------------------------------------


def test_faults_and_call_counts_apply_to_hyperpay(fake: FakeProviderServer):
    checkout_id = checkout(fake)
    fake.add_fault("hyperpay:status", "503")

    broken = status(fake, checkout_id)
    fine = status(fake, checkout_id)

    assert (broken.status_code, fine.status_code) == (503, 200)
    assert fake.count("hyperpay:status") == 2
    assert fake.count("hyperpay:checkout") == 1


def test_amounts_keep_the_currencys_decimals(fake: FakeProviderServer):
    response = requests.post(
        f"{fake.url}/v1/checkouts",
        data={
            "entityId": fake.hyperpay_entity_id,
            "amount": "1.250",
            "currency": "KWD",
            "paymentType": "DB",
        },
        headers=AUTH,
        timeout=5,
    )
    payment = fake.hyperpay_pay(response.json()["id"], notify=False)

    assert payment["amount"] == "1.250"
    assert Decimal(payment["amount"]) == Decimal("1.25")
