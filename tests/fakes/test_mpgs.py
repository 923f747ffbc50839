"""Tests of the fake MPGS API, hosted pages and notifications, over loopback HTTP."""

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from . import FakeProviderServer
from .clients import MPGS_AUTH, Receiver, create_session, mpgs_url, new_order_id, refund


def test_mpgs_rejects_bad_credentials(fake: FakeProviderServer) -> None:
    url = mpgs_url(fake, "order/whatever")
    wrong_password = requests.get(
        url, auth=("merchant.TESTMERCHANT", "nope"), timeout=5
    )
    no_auth = requests.get(url, timeout=5)
    other_merchant = requests.get(
        url.replace("/merchant/TESTMERCHANT/", "/merchant/OTHER/"),
        auth=MPGS_AUTH,
        timeout=5,
    )

    for response in (wrong_password, no_auth, other_merchant):
        assert response.status_code == 401
        assert response.json() == {
            "result": "ERROR",
            "error": {
                "cause": "INVALID_REQUEST",
                "explanation": "Invalid credentials.",
            },
        }


def test_mpgs_rejects_old_api_version(fake: FakeProviderServer) -> None:
    response = requests.get(
        mpgs_url(fake, "order/x", version=62), auth=MPGS_AUTH, timeout=5
    )

    assert response.status_code == 400
    assert response.json()["result"] == "ERROR"
    assert 62 not in fake.mpgs_versions_seen


def test_mpgs_session_validation(fake: FakeProviderServer) -> None:
    def attempt(order: dict[str, Any]) -> dict[str, Any]:
        full = {"id": new_order_id(), "amount": "10.00", "currency": "USD", **order}
        response = requests.post(
            mpgs_url(fake, "session"),
            json={
                "apiOperation": "INITIATE_CHECKOUT",
                "interaction": {"operation": "PURCHASE", "returnUrl": "http://x.test"},
                "order": full,
            },
            auth=MPGS_AUTH,
            timeout=5,
        )
        assert response.status_code == 400
        return response.json()["error"]

    assert attempt({"id": "x" * 41})["field"] == "order.id"
    assert attempt({"id": "bad id!"})["field"] == "order.id"
    assert attempt({"amount": "0.00"})["field"] == "order.amount"
    assert attempt({"amount": "10.001"})["field"] == "order.amount"
    assert attempt({"currency": "usd"})["field"] == "order.currency"


def test_mpgs_session_then_pay_captures_order(fake: FakeProviderServer) -> None:
    order_id = new_order_id()
    created = create_session(fake, order_id)
    order_url = mpgs_url(fake, f"order/{order_id}", version=73)

    before = requests.get(order_url, auth=MPGS_AUTH, timeout=5)
    fake.mpgs_pay(order_id)
    after = requests.get(order_url, auth=MPGS_AUTH, timeout=5)

    assert created["result"] == "SUCCESS"
    assert created["session"]["id"].startswith("SESSION0002")
    assert len(created["session"]["id"]) == 31
    assert len(created["successIndicator"]) == 16
    assert before.status_code == 400
    assert before.json()["error"] == {
        "cause": "INVALID_REQUEST",
        "explanation": f"Value '{order_id}' is invalid. "
        "No order exists with this order id",
        "field": "orderid",
        "validationType": "INVALID",
    }
    assert after.status_code == 200
    order = after.json()
    assert order["status"] == "CAPTURED"
    assert order["amount"] == 25.0
    assert order["totalCapturedAmount"] == 25.0
    assert order["totalRefundedAmount"] == 0.0
    [txn] = order["transaction"]
    assert txn["result"] == "SUCCESS"
    assert txn["transaction"]["type"] == "PAYMENT"
    assert txn["response"]["gatewayCode"] == "APPROVED"
    assert {73, 100} <= fake.mpgs_versions_seen
    assert fake.mpgs_session(created["session"]["id"])["orderId"] == order_id


def test_mpgs_pay_page_redirects_and_notifies(
    fake: FakeProviderServer, receiver: Receiver
) -> None:
    order_id = new_order_id()
    created = create_session(fake, order_id, notification_url=f"{receiver.url}/hook")
    session_id = created["session"]["id"]

    script = requests.get(f"{fake.url}/static/checkout/checkout.min.js", timeout=5)
    page = requests.get(f"{fake.url}/checkout/pay/{session_id}", timeout=5)
    paid = requests.post(
        f"{fake.url}/checkout/pay/{session_id}",
        data={"action": "pay"},
        allow_redirects=False,
        timeout=5,
    )

    assert "window.Checkout" in script.text and "/checkout/pay/" in script.text
    assert "25.00 USD" in page.text and 'value="decline"' in page.text
    assert paid.status_code == 303
    location = urlsplit(paid.headers["Location"])
    query = parse_qs(location.query)
    assert location.netloc == "shop.test" and query["ref"] == ["abc"]
    assert query["resultIndicator"] == [created["successIndicator"]]
    assert query["sessionVersion"] == [created["session"]["version"]]
    assert len(receiver.received) == 1
    path, headers, body = receiver.received[0]
    assert path == "/hook"
    assert headers["X-Notification-Secret"] == "mpgs-webhook-secret"
    assert headers["X-Notification-Attempt"] == "1"
    notification = json.loads(body)
    assert notification["order"]["id"] == order_id
    assert notification["order"]["status"] == "CAPTURED"
    assert fake.count("mpgs:pay_page") == 2


def test_mpgs_decline_fails_order(fake: FakeProviderServer) -> None:
    order_id = new_order_id()
    created = create_session(fake, order_id)

    declined = requests.post(
        f"{fake.url}/checkout/pay/{created['session']['id']}",
        data={"action": "decline"},
        allow_redirects=False,
        timeout=5,
    )
    order = fake.mpgs_order(order_id)

    indicator = parse_qs(urlsplit(declined.headers["Location"]).query)
    assert declined.status_code == 303
    assert indicator["resultIndicator"] != [created["successIndicator"]]
    assert order is not None and order["status"] == "FAILED"
    assert order["transaction"][0]["result"] == "FAILURE"
    assert order["transaction"][0]["response"]["gatewayCode"] == "DECLINED"


def test_mpgs_pay_with_other_amount_shows_mismatch(fake: FakeProviderServer) -> None:
    order_id = new_order_id()
    create_session(fake, order_id, amount="25.00")

    order = fake.mpgs_pay(order_id, amount="1.00")

    assert order["amount"] == 1.0
    assert order["totalCapturedAmount"] == 1.0


def test_mpgs_refund_is_idempotent_on_transaction_id(fake: FakeProviderServer) -> None:
    order_id = new_order_id()
    create_session(fake, order_id)
    fake.mpgs_pay(order_id)
    applied = fake.mpgs_refunds_applied

    first = refund(fake, order_id, "refund-1", "10.00")
    second = refund(fake, order_id, "refund-1", "10.00")
    fetched = requests.get(
        mpgs_url(fake, f"order/{order_id}/transaction/refund-1"),
        auth=MPGS_AUTH,
        timeout=5,
    )

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["transaction"]["type"] == "REFUND"
    assert first.json()["response"]["gatewayCode"] == "APPROVED"
    assert first.json()["order"]["status"] == "PARTIALLY_REFUNDED"
    assert fake.mpgs_refunds_applied == applied + 1
    order = fake.mpgs_order(order_id)
    assert order is not None and order["totalRefundedAmount"] == 10.0
    assert fetched.status_code == 200
    assert fetched.json()["transaction"]["id"] == "refund-1"


def test_mpgs_over_refund_is_rejected(fake: FakeProviderServer) -> None:
    order_id = new_order_id()
    create_session(fake, order_id)
    fake.mpgs_pay(order_id)
    fake.mpgs_refund_externally(order_id, "5.00")

    rest = refund(fake, order_id, "refund-a", "20.00")
    over = refund(fake, order_id, "refund-b", "0.01")
    unknown = refund(fake, new_order_id(), "refund-c", "1.00")

    assert rest.status_code == 200
    assert rest.json()["order"]["status"] == "REFUNDED"
    assert over.status_code == 400
    assert over.json()["error"]["explanation"] == (
        "Requested refund amount exceeds available balance"
    )
    assert unknown.status_code == 400
    assert "No order exists" in unknown.json()["error"]["explanation"]


def test_mpgs_notification_headers_and_body_overrides(
    fake: FakeProviderServer, receiver: Receiver
) -> None:
    order_id = new_order_id()
    create_session(fake, order_id)
    fake.mpgs_pay(order_id)

    response = fake.mpgs_send_notification(
        order_id,
        url=f"{receiver.url}/n",
        secret="wrong-secret",
        notification_id="n-1",
        body_overrides={"order": {"amount": 9999.0}, "result": "SUCCESS"},
    )

    assert response.status_code == 200
    _, headers, body = receiver.received[0]
    assert headers["X-Notification-Secret"] == "wrong-secret"
    assert headers["X-Notification-Id"] == "n-1"
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["order"]["amount"] == 9999.0
    # Deep merge keeps the fields the override did not mention.
    assert payload["order"]["currency"] == "USD"
    assert payload["order"]["status"] == "CAPTURED"
    assert payload["transaction"]["type"] == "PAYMENT"


# --- MPGS: as strict as the real gateway (issue 8) ---------------------------


def initiate(fake: FakeProviderServer, **changes: Any) -> requests.Response:
    """POST INITIATE_CHECKOUT with `changes` merged into a valid request."""
    payload: dict[str, Any] = {
        "apiOperation": "INITIATE_CHECKOUT",
        "interaction": {
            "operation": "PURCHASE",
            "returnUrl": "http://shop.test/return",
            "merchant": {"name": "Magic eSIM"},
        },
        "order": {
            "id": new_order_id(),
            "amount": "10.00",
            "currency": "USD",
            "description": "eSIM 10 GB",
        },
    }
    for section, values in changes.items():
        payload[section] = {**payload[section], **values}
    return requests.post(
        mpgs_url(fake, "session"), json=payload, auth=MPGS_AUTH, timeout=5
    )


def test_mpgs_minor_units_agree_with_the_project_table() -> None:
    from fakeproviders.core import MINOR_UNITS
    from gateways import money

    assert {
        code: money.exponent(code)
        for code in money.ISO_4217
        if money.exponent(code) != 2
    } == MINOR_UNITS


@pytest.mark.parametrize(
    ("currency", "amount", "accepted"),
    [
        ("CLP", "1000.50", False),
        ("ISK", "10.5", False),
        ("JPY", "1000.0", False),
        ("CLP", "1000", True),
        ("JPY", "1000", True),
        ("IQD", "1.234", True),
        ("LYD", "12.345", True),
        ("KWD", "1.2345", False),
        ("USD", "10.001", False),
    ],
)
def test_mpgs_amount_must_fit_the_currency(
    fake: FakeProviderServer, currency: str, amount: str, accepted: bool
) -> None:
    response = initiate(fake, order={"currency": currency, "amount": amount})

    if accepted:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "order.amount"


def test_mpgs_description_is_capped_at_127_characters(
    fake: FakeProviderServer,
) -> None:
    fits = initiate(fake, order={"description": "d" * 127})
    too_long = initiate(fake, order={"description": "d" * 128})

    assert fits.status_code == 201
    assert too_long.status_code == 400
    assert too_long.json()["error"]["field"] == "order.description"


def test_mpgs_merchant_name_is_required(fake: FakeProviderServer) -> None:
    response = initiate(fake, interaction={"merchant": {}})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "cause": "INVALID_REQUEST",
        "explanation": "Missing parameter 'interaction.merchant.name'",
        "field": "interaction.merchant.name",
        "validationType": "MISSING",
    }


def test_mpgs_notification_is_retried_until_answered_2xx(
    fake: FakeProviderServer, receiver: Receiver
) -> None:
    order_id = new_order_id()
    create_session(fake, order_id, notification_url=f"{receiver.url}/hook")
    receiver.answers[:] = [503, 500]

    fake.mpgs_pay(order_id)

    attempts = [h["X-Notification-Attempt"] for _, h, _ in receiver.received]
    ids = {h["X-Notification-Id"] for _, h, _ in receiver.received}
    assert attempts == ["1", "2", "3"]
    assert len(ids) == 1  # the same notification each time
    assert [d[1:] for d in fake.mpgs_deliveries[-3:]] == [(1, 503), (2, 500), (3, 200)]


def test_mpgs_notification_gives_up_after_the_last_attempt(
    fake: FakeProviderServer, receiver: Receiver
) -> None:
    order_id = new_order_id()
    create_session(fake, order_id, notification_url=f"{receiver.url}/hook")
    receiver.answers[:] = [503] * 10

    fake.mpgs_pay(order_id)

    assert len(receiver.received) == fake.mpgs_notify_attempts


def test_mpgs_refund_sends_a_notification(
    fake: FakeProviderServer, receiver: Receiver
) -> None:
    order_id = new_order_id()
    create_session(fake, order_id, notification_url=f"{receiver.url}/hook")
    fake.mpgs_pay(order_id)

    answer = refund(fake, order_id, "refund-n1", "5.00")
    fake.mpgs_wait_notifications()

    assert answer.status_code == 200
    payments, refunds = (
        [json.loads(b) for _, _, b in receiver.received if kind in b.decode()]
        for kind in ('"PAYMENT"', '"REFUND"')
    )
    assert len(payments) == 1 and len(refunds) == 1
    assert refunds[0]["transaction"]["id"] == "refund-n1"
    assert refunds[0]["order"]["status"] == "PARTIALLY_REFUNDED"
    assert refunds[0]["order"]["totalRefundedAmount"] == 5.0


def test_mpgs_decline_then_capture_in_one_session(fake: FakeProviderServer) -> None:
    order_id = new_order_id()
    session_id = create_session(fake, order_id)["session"]["id"]
    pay_page = f"{fake.url}/checkout/pay/{session_id}"

    declined = requests.post(
        pay_page, data={"action": "decline"}, allow_redirects=False, timeout=5
    )
    after_decline = fake.mpgs_order(order_id)
    paid = requests.post(
        pay_page, data={"action": "pay"}, allow_redirects=False, timeout=5
    )
    order = fake.mpgs_order(order_id)

    assert declined.status_code == 303  # back to the shop
    assert after_decline is not None and after_decline["status"] == "FAILED"
    assert paid.status_code == 303
    assert order is not None and order["status"] == "CAPTURED"
    results = [
        (t["result"], t["response"]["gatewayCode"]) for t in order["transaction"]
    ]
    assert results == [("FAILURE", "DECLINED"), ("SUCCESS", "APPROVED")]


def test_mpgs_authorized_disputed_and_charged_back_orders(
    fake: FakeProviderServer,
) -> None:
    authorized_id, paid_id = new_order_id(), new_order_id()
    create_session(fake, authorized_id)
    create_session(fake, paid_id)

    authorized = fake.mpgs_authorize(authorized_id)
    fake.mpgs_pay(paid_id)
    disputed = fake.mpgs_dispute(paid_id)
    charged_back = fake.mpgs_chargeback(paid_id, "25.00")

    assert authorized["status"] == "AUTHORIZED"
    assert authorized["totalAuthorizedAmount"] == 25.0
    assert authorized["totalCapturedAmount"] == 0.0
    assert disputed["status"] == "DISPUTED"
    assert "chargeback" not in disputed
    assert charged_back["status"] == "CHARGEBACK_PROCESSED"
    assert charged_back["chargeback"] == {"amount": 25.0, "currency": "USD"}
    assert charged_back["transaction"][-1]["transaction"]["type"] == "CHARGEBACK"


@pytest.mark.parametrize(
    ("answer", "status", "result", "cause"),
    [
        ("rejected", 400, "ERROR", "REQUEST_REJECTED"),
        ("invalid", 400, "ERROR", "INVALID_REQUEST"),
        ("busy", 503, "ERROR", "SERVER_BUSY"),
        ("declined", 200, "FAILURE", None),
    ],
)
def test_mpgs_refund_refusals(
    fake: FakeProviderServer, answer: str, status: int, result: str, cause: str | None
) -> None:
    order_id = new_order_id()
    create_session(fake, order_id)
    fake.mpgs_pay(order_id)
    fake.mpgs_refund_answers[:] = [answer]

    response = refund(fake, order_id, "refund-x", "5.00")
    order = fake.mpgs_order(order_id)

    assert response.status_code == status
    assert response.json()["result"] == result
    if cause:
        assert response.json()["error"]["cause"] == cause
    else:
        assert response.json()["response"]["gatewayCode"] == "DECLINED"
    assert order is not None and order["totalRefundedAmount"] == 0.0
    assert fake.mpgs_refund_answers == []
