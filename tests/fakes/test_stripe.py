"""Tests of the fake Stripe API, hosted page and signed events, over loopback HTTP.

Most calls go through the official `stripe` library pointed at the fake, so
the fake is checked against what the library really sends and reads.
"""

import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import stripe

from fakeproviders.stripe import STRIPE_PLACES, stripe_params, stripe_signature

from . import FakeProviderServer
from .clients import Receiver


def client(fake: FakeProviderServer, key: str | None = None) -> stripe.StripeClient:
    """Return the official library's client pointed at the fake."""
    return stripe.StripeClient(
        key or fake.stripe_secret_key,
        base_addresses={"api": fake.url},
        max_network_retries=0,
    )


def session_params(**overrides: Any) -> dict[str, Any]:
    params = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 2400,
                    "product_data": {"name": "Europe 5 GB"},
                },
            }
        ],
        "client_reference_id": "ref-fake-0001",
        "metadata": {"ref_id": "ref-fake-0001"},
        "payment_intent_data": {"metadata": {"ref_id": "ref-fake-0001"}},
        "success_url": "http://shop.test/return/?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://shop.test/return/?cancelled=1",
        "expires_at": int(time.time()) + 3600,
    }
    return {**params, **overrides}


def open_session(fake: FakeProviderServer, **overrides: Any) -> dict[str, Any]:
    return (
        client(fake)
        .v1.checkout.sessions.create(params=session_params(**overrides))
        .to_dict()
    )


def raw_post(fake: FakeProviderServer, path: str, data: str, **headers: str):
    return requests.post(
        f"{fake.url}{path}",
        data=data,
        headers={
            "Authorization": f"Bearer {fake.stripe_secret_key}",
            "Content-Type": "application/x-www-form-urlencoded",
            **headers,
        },
        timeout=5,
    )


@pytest.fixture
def webhooks(fake: FakeProviderServer, receiver: Receiver):
    """Post the fake's events to a receiver for one test."""
    fake.stripe_webhook_url = f"{receiver.url}/api/webhooks/stripe/"
    yield receiver
    fake.stripe_wait_events()
    fake.stripe_webhook_url = None
    fake.stripe_hold_events = False


def received_events(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for _, _, body in receiver.received]


# --- authentication and request format ---------------------------------------------


def test_stripe_checks_the_secret_key(fake: FakeProviderServer) -> None:
    url = f"{fake.url}/v1/checkout/sessions/cs_test_x"
    missing = requests.get(url, timeout=5)
    wrong = requests.get(
        url, headers={"Authorization": "Bearer sk_test_wrongkey0000abcd"}, timeout=5
    )
    basic = requests.get(url, auth=(fake.stripe_secret_key, ""), timeout=5)

    assert missing.status_code == wrong.status_code == 401
    assert "did not provide an API key" in missing.json()["error"]["message"]
    message = wrong.json()["error"]["message"]
    assert message.startswith("Invalid API Key provided: sk_test_")
    assert message.endswith("abcd") and "wrongkey" not in message
    # The key as a Basic username works too (curl -u sk_…:), and then the
    # session is simply unknown.
    assert basic.status_code == 404
    assert basic.json()["error"]["code"] == "resource_missing"
    with pytest.raises(stripe.AuthenticationError):
        client(fake, "sk_test_wrong").v1.checkout.sessions.retrieve("cs_test_x")


def test_stripe_params_nest_like_the_library_encodes_them() -> None:
    pairs = [
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][quantity]", "1"),
        ("line_items[1][quantity]", "2"),
        ("metadata[ref_id]", "abc"),
        ("expand[0]", "payment_intent"),
        ("expand[]", "payment_intent.latest_charge"),
        ("mode", "payment"),
    ]

    assert stripe_params(pairs) == {
        "line_items": [
            {"price_data": {"currency": "usd"}, "quantity": "1"},
            {"quantity": "2"},
        ],
        "metadata": {"ref_id": "abc"},
        "expand": ["payment_intent", "payment_intent.latest_charge"],
        "mode": "payment",
    }
    with pytest.raises(ValueError, match="Invalid parameter"):
        stripe_params([("a", "1"), ("a[b]", "2")])


def test_stripe_records_the_api_version(fake: FakeProviderServer) -> None:
    open_session(fake)

    assert stripe.api_version in fake.stripe_versions_seen


def test_stripe_places_agree_with_the_adapter() -> None:
    from gateways.stripe_checkout import objects

    assert STRIPE_PLACES == objects.STRIPE_PLACES


# --- Checkout Sessions ---------------------------------------------------------------


def test_stripe_session_is_created_as_the_library_asked(fake: FakeProviderServer):
    session = open_session(fake, customer_email="a@b.test")

    assert session["id"].startswith("cs_test_")
    assert session["url"] == f"{fake.url}/c/pay/{session['id']}"
    assert (session["status"], session["payment_status"]) == ("open", "unpaid")
    assert (session["amount_total"], session["currency"]) == (2400, "eur")
    assert session["client_reference_id"] == "ref-fake-0001"
    assert session["metadata"] == {"ref_id": "ref-fake-0001"}
    assert session["customer_email"] == "a@b.test"
    assert session["payment_intent"] is None  # made at the first attempt
    assert not any(key.startswith("_") for key in session)


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"mode": "subscription"}, "mode"),
        ({"success_url": "not a url"}, "success_url"),
        ({"expires_at": int(time.time()) + 600}, "expires_at"),
        ({"expires_at": int(time.time()) + 25 * 3600}, "expires_at"),
        ({"client_reference_id": "x" * 201}, "client_reference_id"),
        (
            {
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": "isk",
                            "unit_amount": 249050,
                            "product_data": {"name": "x"},
                        },
                    }
                ]
            },
            "line_items[0][price_data][unit_amount]",
        ),
        (
            {
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": "kwd",
                            "unit_amount": 5125,
                            "product_data": {"name": "x"},
                        },
                    }
                ]
            },
            "line_items[0][price_data][unit_amount]",
        ),
    ],
    ids=["mode", "url", "too-soon", "too-late", "reference", "isk", "kwd"],
)
def test_stripe_session_validation(fake: FakeProviderServer, overrides, param):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        open_session(fake, **overrides)

    assert caught.value.http_status == 400
    assert caught.value.param == param


def test_stripe_retrieve_expands_the_payment_intent(fake: FakeProviderServer):
    session = open_session(fake)
    fake.stripe_pay(session["id"], notify=False)

    plain = client(fake).v1.checkout.sessions.retrieve(session["id"]).to_dict()
    expanded = (
        client(fake)
        .v1.checkout.sessions.retrieve(
            session["id"], params={"expand": ["payment_intent.latest_charge"]}
        )
        .to_dict()
    )

    assert plain["payment_intent"].startswith("pi_")
    intent = expanded["payment_intent"]
    assert intent["id"] == plain["payment_intent"]
    assert intent["status"] == "succeeded" and intent["amount_received"] == 2400
    assert intent["metadata"] == {"ref_id": "ref-fake-0001"}
    assert intent["latest_charge"]["status"] == "succeeded"
    # The charge carries the PaymentIntent's metadata (charge.* events do).
    assert intent["latest_charge"]["metadata"] == {"ref_id": "ref-fake-0001"}


def test_stripe_expire_only_open_sessions(fake: FakeProviderServer) -> None:
    session = open_session(fake)
    sessions = client(fake).v1.checkout.sessions

    expired = sessions.expire(session["id"]).to_dict()
    with pytest.raises(stripe.InvalidRequestError, match="Only Checkout Sessions"):
        sessions.expire(session["id"])

    assert expired["status"] == "expired" and expired["url"] is None


def test_stripe_session_expires_by_itself_at_expires_at(fake: FakeProviderServer):
    session = open_session(fake)
    with fake._lock:  # the clock reaches expires_at
        fake._stripe_sessions[session["id"]]["expires_at"] = int(time.time()) - 1

    again = client(fake).v1.checkout.sessions.retrieve(session["id"])

    assert again.status == "expired"
    assert (
        fake.stripe_events("checkout.session.expired")[-1]["data"]["object"]["id"]
        == (session["id"])
    )


# --- the hosted page -----------------------------------------------------------------


def test_stripe_page_pays_and_redirects_to_the_success_url(fake: FakeProviderServer):
    session = open_session(fake)

    page = requests.get(session["url"], timeout=5)
    paid = requests.post(
        session["url"], data={"action": "pay"}, allow_redirects=False, timeout=5
    )

    assert page.status_code == 200 and "24.00 EUR" in page.text
    for label in ("Pay", "Decline", "Pay by bank debit", "Back", "Let it expire"):
        assert f">{label}</button>" in page.text
    assert paid.status_code == 303
    location = urlsplit(paid.headers["Location"])
    assert parse_qs(location.query) == {"session_id": [session["id"]]}
    after = fake.stripe_session(session["id"])
    assert (after["status"], after["payment_status"]) == ("complete", "paid")
    again = requests.post(session["url"], data={"action": "pay"}, timeout=5)
    assert again.status_code == 409


def test_stripe_page_decline_keeps_the_session_open(fake: FakeProviderServer):
    session = open_session(fake)

    declined = requests.post(session["url"], data={"action": "decline"}, timeout=5)

    assert declined.status_code == 200
    assert "Your card was declined." in declined.text
    after = fake.stripe_session(session["id"])
    assert after["status"] == "open"
    intent = fake.stripe_intent(after["payment_intent"])
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["code"] == "card_declined"
    charges = client(fake).v1.charges.list(params={"payment_intent": intent["id"]})
    assert [c.status for c in charges.data] == ["failed"]


def test_stripe_page_bank_debit_settles_later(fake: FakeProviderServer) -> None:
    session = open_session(fake)

    back = requests.post(
        session["url"], data={"action": "pay_later"}, allow_redirects=False, timeout=5
    )
    waiting = fake.stripe_session(session["id"])
    fake.stripe_settle(session["id"])
    settled = fake.stripe_session(session["id"])

    assert back.status_code == 303
    assert (waiting["status"], waiting["payment_status"]) == ("complete", "unpaid")
    assert settled["payment_status"] == "paid"
    kinds = [
        e["type"]
        for e in fake.stripe_events()
        if e["data"]["object"].get("id") == session["id"]
    ]
    assert kinds[-2:] == [
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
    ]


def test_stripe_page_back_and_expire(fake: FakeProviderServer) -> None:
    backed = open_session(fake)
    lapsed = open_session(fake)

    back = requests.post(
        backed["url"], data={"action": "cancel"}, allow_redirects=False, timeout=5
    )
    expire = requests.post(lapsed["url"], data={"action": "expire"}, timeout=5)

    assert back.headers["Location"] == "http://shop.test/return/?cancelled=1"
    assert fake.stripe_session(backed["id"])["status"] == "open"
    assert expire.status_code == 200
    assert fake.stripe_session(lapsed["id"])["status"] == "expired"
    unknown = requests.get(f"{fake.url}/c/pay/cs_test_nope", timeout=5)
    assert unknown.status_code == 404


# --- idempotency ----------------------------------------------------------------------


def test_stripe_idempotency_key_replays_and_refuses_other_params(fake):
    body = "mode=payment&success_url=http%3A%2F%2Fs.test%2F&line_items[0][quantity]=1"
    body += "&line_items[0][price_data][currency]=usd"
    body += "&line_items[0][price_data][unit_amount]=1000"
    body += "&line_items[0][price_data][product_data][name]=x"

    first = raw_post(fake, "/v1/checkout/sessions", body, **{"Idempotency-Key": "k1"})
    again = raw_post(fake, "/v1/checkout/sessions", body, **{"Idempotency-Key": "k1"})
    other = raw_post(
        fake,
        "/v1/checkout/sessions",
        body.replace("1000", "2000"),
        **{"Idempotency-Key": "k1"},
    )
    fresh = raw_post(fake, "/v1/checkout/sessions", body, **{"Idempotency-Key": "k2"})

    assert first.status_code == again.status_code == fresh.status_code == 200
    assert again.json()["id"] == first.json()["id"] != fresh.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"


# --- refunds ------------------------------------------------------------------------


def paid_intent(fake: FakeProviderServer) -> str:
    session = open_session(fake)
    return fake.stripe_pay(session["id"], notify=False)["payment_intent"]


def test_stripe_refunds_partial_full_and_over(fake: FakeProviderServer) -> None:
    intent = paid_intent(fake)
    refunds = client(fake).v1.refunds
    created = fake.stripe_refunds_created

    part = refunds.create(
        params={"payment_intent": intent, "amount": 400, "metadata": {"refund_id": "a"}}
    )
    with pytest.raises(stripe.InvalidRequestError) as over:
        refunds.create(params={"payment_intent": intent, "amount": 2001})
    rest = refunds.create(params={"payment_intent": intent})
    listed = refunds.list(params={"payment_intent": intent}).data

    assert (part.status, part.amount, part.metadata["refund_id"]) == (
        "succeeded",
        400,
        "a",
    )
    assert over.value.code == "amount_too_large"
    assert rest.amount == 2000
    assert [r.id for r in listed] == [rest.id, part.id]  # newest first
    charge = client(fake).v1.charges.list(params={"payment_intent": intent}).data[0]
    assert (charge.amount_refunded, charge.refunded) == (2400, True)
    assert fake.stripe_refunds_created == created + 2


def test_stripe_refund_of_an_unknown_or_unpaid_intent_is_refused(fake):
    session = open_session(fake)
    fake.stripe_decline(session["id"])
    unpaid = fake.stripe_session(session["id"])["payment_intent"]
    refunds = client(fake).v1.refunds

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        refunds.create(params={"payment_intent": "pi_nope"})
    with pytest.raises(stripe.InvalidRequestError) as not_paid:
        refunds.create(params={"payment_intent": unpaid})

    assert (unknown.value.http_status, unknown.value.code) == (404, "resource_missing")
    assert not_paid.value.code == "charge_not_refundable"


def test_stripe_refund_answer_lost_is_made_and_replayed(fake: FakeProviderServer):
    intent = paid_intent(fake)
    fake.stripe_refund_answers[:] = ["lost"]
    body = f"payment_intent={intent}&amount=500&metadata[refund_id]=rf_lost"

    with pytest.raises(requests.exceptions.ConnectionError):
        raw_post(fake, "/v1/refunds", body, **{"Idempotency-Key": "rf_lost"})
    made = fake.stripe_refunds(intent)
    replay = raw_post(fake, "/v1/refunds", body, **{"Idempotency-Key": "rf_lost"})

    assert [(r["amount"], r["metadata"]) for r in made] == [
        (500, {"refund_id": "rf_lost"})
    ]
    assert replay.json()["id"] == made[0]["id"]
    assert len(fake.stripe_refunds(intent)) == 1


@pytest.mark.parametrize(
    ("answer", "status"), [("pending", "pending"), ("failed", "failed")]
)
def test_stripe_refund_answers(fake: FakeProviderServer, answer, status) -> None:
    intent = paid_intent(fake)
    fake.stripe_refund_answers[:] = [answer]

    refund = client(fake).v1.refunds.create(
        params={"payment_intent": intent, "amount": 300}
    )

    assert refund.status == status
    charge = client(fake).v1.charges.list(params={"payment_intent": intent}).data[0]
    assert charge.amount_refunded == (300 if answer == "pending" else 0)
    if answer == "pending":
        fake.stripe_settle_refund(refund.id)
        assert client(fake).v1.refunds.retrieve(refund.id).status == "succeeded"


def test_stripe_refund_declined_is_a_400(fake: FakeProviderServer) -> None:
    intent = paid_intent(fake)
    fake.stripe_refund_answers[:] = ["declined"]

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client(fake).v1.refunds.create(params={"payment_intent": intent})

    assert caught.value.code == "charge_not_refundable"
    assert fake.stripe_refunds(intent) == []


# --- disputes -------------------------------------------------------------------------


def test_stripe_disputes_block_refunds_and_close(fake: FakeProviderServer) -> None:
    intent = paid_intent(fake)

    dispute = fake.stripe_dispute(intent)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client(fake).v1.refunds.create(params={"payment_intent": intent})
    fake.stripe_close_dispute(dispute["id"], won=False)
    listed = client(fake).v1.disputes.list(params={"payment_intent": intent}).data

    assert refused.value.code == "charge_disputed"
    assert [(d.id, d.status, d.amount) for d in listed] == [
        (dispute["id"], "lost", 2400)
    ]
    kinds = [e["type"] for e in fake.stripe_events() if e["type"].startswith("charge.")]
    assert kinds[-2:] == ["charge.dispute.created", "charge.dispute.closed"]


# --- signed events ---------------------------------------------------------------------


def test_stripe_events_are_signed_like_stripes(fake: FakeProviderServer, webhooks):
    session = open_session(fake)

    fake.stripe_pay(session["id"])

    [(path, headers, body)] = webhooks.received
    assert path == "/api/webhooks/stripe/"
    # The official library verifies the fake's signature.
    stripe.WebhookSignature.verify_header(
        body, headers["Stripe-Signature"], fake.stripe_webhook_secret, tolerance=300
    )
    t = int(headers["Stripe-Signature"].split(",")[0].removeprefix("t="))
    assert headers["Stripe-Signature"].endswith(
        stripe_signature(fake.stripe_webhook_secret, t, body)
    )
    event = json.loads(body)
    assert event["type"] == "checkout.session.completed"
    assert event["data"]["object"]["id"] == session["id"]
    assert event["data"]["object"]["payment_status"] == "paid"


def test_stripe_events_are_retried_until_answered_2xx(fake, webhooks) -> None:
    webhooks.answers[:] = [500, 400]
    session = open_session(fake)

    fake.stripe_pay(session["id"])

    ids = {json.loads(body)["id"] for _, _, body in webhooks.received}
    assert len(webhooks.received) == 3 and len(ids) == 1
    assert [d[1:] for d in fake.stripe_deliveries[-3:]] == [
        (1, 500),
        (2, 400),
        (3, 200),
    ]


def test_stripe_held_events_go_out_of_order_and_twice(fake, webhooks) -> None:
    fake.stripe_hold_events = True
    session = open_session(fake)
    fake.stripe_pay_later(session["id"])
    fake.stripe_settle(session["id"])
    assert webhooks.received == []

    fake.stripe_release(reverse=True, twice=True)

    kinds = [e["type"] for e in received_events(webhooks)]
    assert kinds == [
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_succeeded",
        "checkout.session.completed",
        "checkout.session.completed",
    ]


def test_stripe_refund_event_follows_the_answer(fake, webhooks) -> None:
    intent = paid_intent(fake)

    client(fake).v1.refunds.create(params={"payment_intent": intent, "amount": 100})
    fake.stripe_wait_events()

    [event] = received_events(webhooks)
    assert event["type"] == "charge.refunded"
    assert event["data"]["object"]["amount_refunded"] == 100
    assert event["data"]["object"]["metadata"] == {"ref_id": "ref-fake-0001"}


def test_stripe_without_a_webhook_url_sends_nothing(fake, receiver) -> None:
    session = open_session(fake)

    fake.stripe_pay(session["id"])

    assert receiver.received == [] and fake.stripe_webhook_url is None
    assert fake.stripe_events("checkout.session.completed")


# --- faults, latency and routing ------------------------------------------------------


def test_stripe_faults_and_counts_come_from_the_core(fake: FakeProviderServer):
    session = open_session(fake)
    fake.add_fault("stripe:session", "503")

    with pytest.raises(stripe.APIError):
        client(fake).v1.checkout.sessions.retrieve(session["id"])
    client(fake).v1.checkout.sessions.retrieve(session["id"])

    assert fake.count("stripe:session") == 2
    assert fake.count("stripe:session_create") == 1


def test_stripe_claims_only_its_own_v1_paths(fake: FakeProviderServer) -> None:
    """HyperPay's /v1/checkouts, /v1/payments and /v1/query are not Stripe's."""
    answers = [
        requests.get(f"{fake.url}/v1/{path}", timeout=5)
        for path in ("checkouts/x/payment", "payments/x", "query", "paymentWidgets.js")
    ]
    inside = requests.get(
        f"{fake.url}/v1/charges/ch_x/refunds",
        headers={"Authorization": f"Bearer {fake.stripe_secret_key}"},
        timeout=5,
    )

    # HyperPay's fake (or nobody) answers them, never Stripe's.
    ops = [op for op, _ in fake.calls[:4]]
    assert all(op.startswith("hyperpay") or op == "unknown" for op in ops), ops
    assert all("Unrecognized request URL" not in a.text for a in answers)
    assert inside.status_code == 404
    assert inside.json()["error"]["message"].startswith("Unrecognized request URL")


def test_stripe_concurrent_same_key_refunds_once(fake: FakeProviderServer) -> None:
    intent = paid_intent(fake)
    body = f"payment_intent={intent}&amount=200"
    ids: list[str] = []

    def send() -> None:
        answer = raw_post(fake, "/v1/refunds", body, **{"Idempotency-Key": "same"})
        ids.append(answer.json()["id"])

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(ids) == 4 and len(set(ids)) == 1
    assert len(fake.stripe_refunds(intent)) == 1
