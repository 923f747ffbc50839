"""CoinPayments adapter: signing, envelope, no nonce, status mapping and IPNs."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode

import pytest
import requests
import responses

from fakeproviders import FakeProviderServer
from gateways import coinpayments
from gateways.base import (
    CheckoutRequest,
    GatewayConfigError,
    GatewayUnavailable,
    NotSupported,
    PaymentRef,
    RefundRequest,
    Status,
    WebhookRejected,
    WebhookReply,
)
from gateways.coinpayments import CoinPaymentsGateway, sign

FIXTURES = (
    Path(__file__).resolve().parents[1] / "fixtures" / "gateways" / "coinpayments"
)
API_URL = "https://www.coinpayments.net/api.php"
SETTINGS = {
    "public_key": "pub-4f1c0a-public-api-key",
    "private_key": "priv-9d2e77-private-api-key-never-logged",
    "merchant_id": "0123456789abcdef0123456789abcdef",
    "ipn_secret": "ipn-7a3b55-secret-never-logged",
    "ipn_url": "",
}
TXN_ID = "CPHK4GZ1XQ5MTB7N2ZPLRE3WYA"
REF_ID = "pay_7Xq2LmN9sV4tR8wK1zB3"
VECTOR_BODY = (
    b"currency=BTC&version=1&cmd=get_callback_address&key=your_api_public_key"
    b"&format=json"
)
VECTOR_HMAC = (
    "5590eac015e7692902e1a9cd5464f1d305a4b593d2f1343d826ac5affc5ac6f9"
    "60a5167284f9bf31295cba0e04df9d8f7087935b5344c468ccf2dd036e159102"
)


# helpers ------------------------------------------------------------------------


def load_json(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def load_form(name: str) -> bytes:
    return (FIXTURES / name).read_bytes().strip()


def form_of(request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}


def with_fields(body: bytes, **changes: str | None) -> bytes:
    """Return a form body with some fields replaced (None drops the field)."""
    pairs = dict(parse_qsl(body.decode(), keep_blank_values=True))
    for key, value in changes.items():
        if value is None:
            pairs.pop(key, None)
        else:
            pairs[key] = value
    return urlencode(pairs).encode()


def signed(body: bytes, secret: str = SETTINGS["ipn_secret"]) -> dict[str, str]:
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "HMAC": sign(secret, body),
    }


def tx_info(**fields) -> dict:
    payload = load_json("get_tx_info.json")
    payload["result"].update(fields)
    return payload


def checkout_request(**overrides) -> CheckoutRequest:
    values = {
        "ref_id": REF_ID,
        "amount": Decimal("49.99"),
        "currency": "USD",
        "email": "buyer@example.com",
        "description": "eSIM Europe 10 GB",
        "return_url": f"https://shop.example/checkout/return/{REF_ID}/",
        "cancel_url": f"https://shop.example/checkout/return/{REF_ID}/?cancel=1",
        "notify_url": "https://shop.example/api/webhooks/coinpayments/",
        "site_url": "https://shop.example",
    }
    return CheckoutRequest(**{**values, **overrides})


def paid_ref(**overrides) -> PaymentRef:
    values = {
        "ref_id": REF_ID,
        "transaction_id": TXN_ID,
        "amount": Decimal("49.99"),
        "currency": "USD",
        "data": {"crypto_amount": "0.00123456", "crypto_currency": "BTC"},
    }
    return PaymentRef(**{**values, **overrides})


@pytest.fixture
def gateway() -> CoinPaymentsGateway:
    return CoinPaymentsGateway(SETTINGS)


# signing and configuration -----------------------------------------------------------


def test_sign_reproduces_the_documented_test_vector():
    assert sign("test", VECTOR_BODY) == VECTOR_HMAC


@pytest.mark.parametrize(
    "key, env",
    [
        ("public_key", "COINPAYMENTS_PUBLIC_KEY"),
        ("private_key", "COINPAYMENTS_PRIVATE_KEY"),
        ("merchant_id", "COINPAYMENTS_MERCHANT_ID"),
        ("ipn_secret", "COINPAYMENTS_IPN_SECRET"),
    ],
)
@pytest.mark.parametrize("blank", ["", "   ", None])
def test_missing_credential_names_its_env_var_and_no_value(key, env, blank):
    settings = {**SETTINGS, key: blank}
    with pytest.raises(GatewayConfigError, match=env) as raised:
        CoinPaymentsGateway(settings)
    for value in filter(None, SETTINGS.values()):
        assert value not in str(raised.value)


def test_no_settings_names_every_missing_env_var():
    with pytest.raises(GatewayConfigError) as raised:
        CoinPaymentsGateway({})
    for env in coinpayments.REQUIRED_SETTINGS.values():
        assert env in str(raised.value)


def test_default_coin_must_be_offered():
    settings = {**SETTINGS, "currency2": "LTC", "coins": ["BTC"]}
    with pytest.raises(GatewayConfigError, match="COINPAYMENTS_CURRENCY2"):
        CoinPaymentsGateway(settings)


def test_defaults_and_checkout_options(gateway):
    assert gateway.api_url == API_URL
    assert gateway.currency2 == "BTC"
    assert gateway.checkout_options() == ["BTC"]
    several = CoinPaymentsGateway({**SETTINGS, "coins": "btc, LTC ,usdt.trc20"})
    assert several.checkout_options() == ["BTC", "LTC", "USDT.TRC20"]


# create_transaction ------------------------------------------------------------------


@responses.activate
def test_create_checkout_sends_one_signed_form(gateway):
    seen = []

    def reply(request):
        seen.append(request)
        return 200, {}, json.dumps(load_json("create_transaction.json"))

    responses.add_callback(responses.POST, API_URL, callback=reply)
    gateway.create_checkout(checkout_request())

    (request,) = seen
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["HMAC"] == sign(SETTINGS["private_key"], request.body)
    assert request.body.startswith(
        b"version=1&key=pub-4f1c0a-public-api-key&cmd=create_transaction"
        b"&format=json&amount="
    )
    assert form_of(request) == {
        "version": "1",
        "key": SETTINGS["public_key"],
        "cmd": "create_transaction",
        "format": "json",
        "amount": "49.99",
        "currency1": "USD",
        "currency2": "BTC",
        "buyer_email": "buyer@example.com",
        "invoice": REF_ID,
        "item_name": "eSIM Europe 10 GB",
        "ipn_url": "https://shop.example/api/webhooks/coinpayments/",
        "success_url": f"https://shop.example/checkout/return/{REF_ID}/",
        "cancel_url": f"https://shop.example/checkout/return/{REF_ID}/?cancel=1",
    }


@responses.activate
def test_create_checkout_parses_the_result(gateway):
    fixture = load_json("create_transaction.json")
    responses.add(responses.POST, API_URL, json=fixture)
    before = datetime.now(UTC)
    session = gateway.create_checkout(checkout_request())
    after = datetime.now(UTC)

    result = fixture["result"]
    assert session.payment_url == result["checkout_url"]
    assert session.transaction_id == TXN_ID
    assert session.crypto_address == "3Q7tPK4wNsDBb5vk1Ld8ZcE2qMyXr6hJfA"
    assert session.crypto_amount == Decimal("0.00123456")
    assert isinstance(session.crypto_amount, Decimal)
    assert session.crypto_currency == "BTC"
    assert session.expires_at.tzinfo is not None
    assert before + timedelta(seconds=9000) <= session.expires_at
    assert session.expires_at <= after + timedelta(seconds=9000)
    assert session.data == {
        "status_url": result["status_url"],
        "qrcode_url": result["qrcode_url"],
        "confirms_needed": "2",
        "crypto_amount": "0.00123456",
        "crypto_currency": "BTC",
    }
    assert session.raw == result


@responses.activate
def test_create_checkout_uses_chosen_coin_and_configured_ipn_url():
    gateway = CoinPaymentsGateway(
        {**SETTINGS, "coins": ["BTC", "LTC"], "ipn_url": "https://ipn.example/cp/"}
    )
    responses.add(responses.POST, API_URL, json=load_json("create_transaction.json"))
    session = gateway.create_checkout(checkout_request(crypto_currency="ltc"))
    fields = form_of(responses.calls[0].request)
    assert fields["currency2"] == "LTC"
    assert fields["ipn_url"] == "https://ipn.example/cp/"
    assert session.crypto_currency == "LTC"


@responses.activate
def test_create_checkout_refuses_a_coin_not_offered(gateway):
    with pytest.raises(ValueError, match="DOGE is not offered"):
        gateway.create_checkout(checkout_request(crypto_currency="DOGE"))
    assert len(responses.calls) == 0


@responses.activate
def test_create_checkout_formats_zero_decimal_currencies(gateway):
    responses.add(responses.POST, API_URL, json=load_json("create_transaction.json"))
    gateway.create_checkout(checkout_request(amount=Decimal("5000"), currency="JPY"))
    fields = form_of(responses.calls[0].request)
    assert (fields["amount"], fields["currency1"]) == ("5000", "JPY")


@pytest.mark.parametrize(
    "status, body, content_type, match",
    [
        (
            200,
            json.dumps(load_json("error.json")),
            "application/json",
            "create_transaction refused: That amount is larger",
        ),
        (200, '{"error": "OK", "result": {}}', "application/json", "refused: OK"),
        (200, '{"result": {}}', "application/json", "no error field"),
        (
            200,
            "<html><body>Cloudflare: checking your browser</body></html>",
            "text/html",
            "unreadable answer",
        ),
        (
            200,
            '{"error":"ok","result":{"amount":"0.001',
            "application/json",
            "unreadable answer",
        ),
        (503, "Service Unavailable", "text/plain", "HTTP 503"),
        (
            200,
            '{"error": "ok", "result": {"txn_id": "CP1"}}',
            "application/json",
            "answer is incomplete",
        ),
        (
            200,
            '{"error": "ok", "result": []}',
            "application/json",
            "answer is incomplete",
        ),
    ],
    ids=[
        "envelope",
        "ok-case",
        "no-error",
        "html",
        "truncated",
        "503",
        "incomplete",
        "empty",
    ],
)
@responses.activate
def test_create_checkout_faults_are_unavailable(
    gateway, status, body, content_type, match
):
    responses.add(
        responses.POST, API_URL, body=body, status=status, content_type=content_type
    )
    with pytest.raises(GatewayUnavailable, match=match):
        gateway.create_checkout(checkout_request())
    assert len(responses.calls) == 1  # never repeated: not idempotent


@responses.activate
def test_connection_error_is_unavailable(gateway):
    responses.add(
        responses.POST, API_URL, body=requests.ConnectionError("Connection refused")
    )
    with pytest.raises(GatewayUnavailable, match="connection error"):
        gateway.create_checkout(checkout_request())
    assert len(responses.calls) == 1


@responses.activate
def test_refused_connection_is_marked_never_sent(gateway):
    responses.add(
        responses.POST, API_URL, body=requests.ConnectionError("Connection refused")
    )
    with pytest.raises(GatewayUnavailable) as raised:
        gateway.create_checkout(checkout_request())
    assert raised.value.contacted is False


@responses.activate
def test_status_faults_are_unavailable(gateway):
    responses.add(responses.POST, API_URL, json={"error": "Invalid transaction ID!"})
    with pytest.raises(GatewayUnavailable, match="get_tx_info refused: Invalid"):
        gateway.fetch_status(paid_ref())
    responses.replace(responses.POST, API_URL, body="Bad Gateway", status=503)
    with pytest.raises(GatewayUnavailable, match="HTTP 503"):
        gateway.fetch_status(paid_ref())


# nonce --------------------------------------------------------------------------------


@responses.activate
def test_no_command_sends_a_nonce_and_each_body_is_signed(gateway):
    responses.add(responses.POST, API_URL, json=load_json("create_transaction.json"))
    responses.add(responses.POST, API_URL, json=tx_info())
    responses.add(responses.POST, API_URL, json=load_json("get_tx_info_multi.json"))

    gateway.create_checkout(checkout_request())
    gateway.fetch_status(paid_ref())
    gateway.fetch_status_many([paid_ref()])

    sent = [call.request for call in responses.calls]
    commands = [form_of(request)["cmd"] for request in sent]
    assert commands == ["create_transaction", "get_tx_info", "get_tx_info_multi"]
    for request in sent:
        assert b"nonce" not in request.body
        assert "nonce" not in form_of(request)
        assert request.headers["HMAC"] == sign(SETTINGS["private_key"], request.body)


@responses.activate
def test_a_nonce_refusal_is_a_fault_and_is_not_re_sent(gateway):
    # No nonce is sent, so a nonce refusal cannot be cured by sending again.
    responses.add(responses.POST, API_URL, json=load_json("invalid_nonce.json"))
    with pytest.raises(GatewayUnavailable, match="get_tx_info refused: Invalid nonce"):
        gateway.fetch_status(paid_ref())
    assert len(responses.calls) == 1


@pytest.fixture
def fake_gateway(fake: FakeProviderServer):
    """Return an adapter pointed at the fake server, its counters reset."""
    fake.clear_faults()
    fake.reset_calls()
    fake.latency = 0.0
    gateway = CoinPaymentsGateway(
        {
            "public_key": fake.cp_public_key,
            "private_key": fake.cp_private_key,
            "merchant_id": fake.cp_merchant_id,
            "ipn_secret": fake.cp_ipn_secret,
            "api_url": f"{fake.url}/api.php",
            "coins": ["BTC"],
        }
    )
    yield gateway
    fake.latency = 0.0
    fake.clear_faults()


def test_concurrent_batches_are_never_refused_or_re_sent(fake, fake_gateway):
    threads, calls_each = 8, 25
    refs = []
    for n in range(25):
        session = fake_gateway.create_checkout(checkout_request(ref_id=f"ref{n:02}"))
        if n % 5 == 0:
            fake.cp_set_status(session.transaction_id, 100)
        refs.append(
            paid_ref(
                ref_id=f"ref{n:02}",
                transaction_id=session.transaction_id,
                data=session.data,
            )
        )
    fake.reset_calls()
    # A little latency keeps several calls in flight at once.
    fake.latency = 0.005
    start = threading.Barrier(threads)
    answers: list[dict] = []
    failures: list[Exception] = []

    def poll() -> None:
        start.wait()
        for _ in range(calls_each):
            try:
                answers.append(fake_gateway.fetch_status_many(refs))
            except Exception as exc:
                failures.append(exc)

    workers = [threading.Thread(target=poll) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)

    assert failures == []
    assert fake.cp_nonce_rejections == 0
    # One request per call made: nothing was refused and sent again.
    assert fake.count("cp:get_tx_info_multi") == threads * calls_each
    assert len(fake.calls) == threads * calls_each
    assert fake.max_in_flight > 1  # the calls really overlapped
    assert len(answers) == threads * calls_each
    for answer in answers:
        assert sorted(answer) == [f"ref{n:02}" for n in range(25)]
        completed = {
            ref for ref, result in answer.items() if result.status == Status.COMPLETED
        }
        assert completed == {f"ref{n:02}" for n in range(0, 25, 5)}


# get_tx_info -------------------------------------------------------------------------


@responses.activate
def test_fetch_status_sends_txid_and_reports_the_price_when_paid_in_full(gateway):
    responses.add(responses.POST, API_URL, json=tx_info())
    result = gateway.fetch_status(paid_ref())

    request = responses.calls[0].request
    fields = form_of(request)
    assert (fields["cmd"], fields["txid"]) == ("get_tx_info", TXN_ID)
    assert request.headers["HMAC"] == sign(SETTINGS["private_key"], request.body)
    assert result.status == Status.COMPLETED
    assert (result.amount, result.currency) == (Decimal("49.99"), "USD")
    assert result.transaction_id == TXN_ID
    assert result.message == "Complete"
    assert result.raw == load_json("get_tx_info.json")["result"]


def test_fetch_status_without_txn_id_stays_pending_without_a_call(gateway):
    with responses.RequestsMock() as mock:
        result = gateway.fetch_status(paid_ref(transaction_id=""))
        assert len(mock.calls) == 0
    assert result.status == Status.PENDING


HOUR = 3600


@pytest.mark.parametrize(
    "code, text, expires_in, expected",
    [
        (100, "Complete", HOUR, Status.COMPLETED),
        (101, "Complete", HOUR, Status.COMPLETED),
        ("100", "Complete", HOUR, Status.COMPLETED),
        (2, "Queued for nightly payout", HOUR, Status.COMPLETED),
        (0, "Waiting for buyer funds...", HOUR, Status.PENDING),
        (1, "We have confirmed coin reception from the buyer", HOUR, Status.PENDING),
        (3, "PayPal Pending", HOUR, Status.PENDING),
        (5, "In Escrow", HOUR, Status.PENDING),
        (99, "", HOUR, Status.PENDING),
        (-1, "Cancelled", -60, Status.EXPIRED),
        (-1, "Cancelled", HOUR, Status.FAILED),
        (-1, "Cancelled / Timed Out", HOUR, Status.FAILED),
        (-1, "Cancelled / Timed Out", -60, Status.EXPIRED),
        (-2, "PayPal Refund or Reversal", HOUR, Status.REFUNDED),
        (-3, "Error", HOUR, Status.FAILED),
        (-100, "", HOUR, Status.FAILED),
        ("abc", "", HOUR, Status.PENDING),
        (None, "", HOUR, Status.PENDING),
        (1.5, "", HOUR, Status.PENDING),
        (True, "", HOUR, Status.PENDING),
        ("", "", HOUR, Status.PENDING),
    ],
)
@responses.activate
def test_status_mapping(gateway, code, text, expires_in, expected):
    expires = int(time.time()) + expires_in
    responses.add(
        responses.POST,
        API_URL,
        json=tx_info(status=code, status_text=text, time_expires=expires),
    )
    assert gateway.fetch_status(paid_ref()).status == expected


@pytest.mark.parametrize(
    "offset, expected", [(-60, Status.EXPIRED), (60, Status.FAILED)]
)
@responses.activate
def test_cancelled_without_time_expires_uses_the_stored_expiry(
    gateway, offset, expected
):
    entry = tx_info(status=-1, status_text="Cancelled")
    del entry["result"]["time_expires"]
    responses.add(responses.POST, API_URL, json=entry)
    ref = paid_ref(expires_at=datetime.now(UTC) + timedelta(seconds=offset))
    assert gateway.fetch_status(ref).status == expected


@pytest.mark.parametrize(
    "received, expected_amount",
    [("0.00100000", Decimal("40.49")), ("0.00123455", Decimal("49.98"))],
)
@responses.activate
def test_underpayment_reports_a_lower_amount_and_says_why(
    gateway, received, expected_amount
):
    responses.add(responses.POST, API_URL, json=tx_info(receivedf=received))
    result = gateway.fetch_status(paid_ref())
    assert result.status == Status.COMPLETED
    assert result.amount == expected_amount
    assert result.amount < Decimal("49.99")
    assert result.currency == "USD"
    assert result.message.startswith(
        f"underpaid: received {received} of 0.00123456 BTC"
    )
    assert result.raw["receivedf"] == received


@responses.activate
def test_wrong_coin_reports_nothing_paid(gateway):
    responses.add(
        responses.POST,
        API_URL,
        json=tx_info(coin="LTC", amountf="0.5", receivedf="0.5"),
    )
    result = gateway.fetch_status(paid_ref())
    assert result.status == Status.COMPLETED
    assert (result.amount, result.currency) == (Decimal("0.00"), "USD")
    assert "wrong coin: received 0.5 LTC, expected 0.00123456 BTC" in result.message


@responses.activate
def test_overpayment_reports_the_coins_worth_at_the_invoice_rate(gateway):
    responses.add(responses.POST, API_URL, json=tx_info(receivedf="0.00200000"))
    result = gateway.fetch_status(paid_ref())
    asked = Decimal(paid_ref().data["crypto_amount"])
    worth = (Decimal("49.99") * Decimal("0.002") / asked).quantize(
        Decimal("0.01"), ROUND_DOWN
    )
    assert worth > Decimal("49.99")
    assert result.amount == worth
    assert result.review.startswith("CoinPayments: overpaid: received 0.00200000")


@responses.activate
def test_without_stored_coin_amount_the_providers_amountf_is_used(gateway):
    responses.add(responses.POST, API_URL, json=tx_info(receivedf="0.00061728"))
    result = gateway.fetch_status(paid_ref(data={}))
    assert result.amount == Decimal("24.99")
    assert "underpaid: received 0.00061728 of 0.00123456 BTC" in result.message


@responses.activate
def test_completed_with_unreadable_amounts_is_a_fault(gateway):
    responses.add(responses.POST, API_URL, json=tx_info(receivedf="lots"))
    with pytest.raises(GatewayUnavailable, match="unreadable coin amounts"):
        gateway.fetch_status(paid_ref())


# get_tx_info_multi -------------------------------------------------------------------


def multi_reply(bad: set[str], seen: list[list[str]]):
    template = load_json("get_tx_info_multi.json")["result"][TXN_ID]

    def reply(request):
        fields = form_of(request)
        assert fields["cmd"] == "get_tx_info_multi"
        assert request.headers["HMAC"] == sign(SETTINGS["private_key"], request.body)
        txids = fields["txid"].split("|")
        seen.append(txids)
        result = {
            txid: {"error": "Invalid transaction ID!"} if txid in bad else template
            for txid in txids
        }
        return 200, {}, json.dumps({"error": "ok", "result": result})

    return reply


@responses.activate
def test_fetch_status_many_chunks_by_25_and_skips_entry_errors(gateway):
    refs = [
        paid_ref(ref_id=f"ref{n:02}", transaction_id=f"CP{n:02}") for n in range(60)
    ]
    refs.append(paid_ref(ref_id="no-txn", transaction_id=""))
    bad = {"CP07", "CP30", "CP59"}
    seen: list[list[str]] = []
    responses.add_callback(responses.POST, API_URL, callback=multi_reply(bad, seen))

    results = gateway.fetch_status_many(refs)

    assert [len(chunk) for chunk in seen] == [25, 25, 10]
    assert [txid for chunk in seen for txid in chunk] == [
        f"CP{n:02}" for n in range(60)
    ]
    assert len(results) == 57
    assert {"ref07", "ref30", "ref59", "no-txn"}.isdisjoint(results)
    assert results["ref00"].status == Status.PENDING
    assert results["ref00"].message == "Waiting for buyer funds..."


@responses.activate
def test_fetch_status_many_uses_the_multi_fixture(gateway):
    responses.add(responses.POST, API_URL, json=load_json("get_tx_info_multi.json"))
    refs = [
        paid_ref(),
        paid_ref(ref_id="other", transaction_id="CPHK0UNKNOWNTXID00000000000"),
    ]
    results = gateway.fetch_status_many(refs)
    assert list(results) == [REF_ID]
    assert form_of(responses.calls[0].request)["txid"] == (
        f"{TXN_ID}|CPHK0UNKNOWNTXID00000000000"
    )


@responses.activate
def test_fetch_status_many_keeps_answered_chunks_when_one_call_fails(gateway):
    refs = [
        paid_ref(ref_id=f"ref{n:02}", transaction_id=f"CP{n:02}") for n in range(30)
    ]
    seen: list[list[str]] = []
    responses.add_callback(responses.POST, API_URL, callback=multi_reply(set(), seen))
    responses.add(responses.POST, API_URL, body="Bad Gateway", status=502)
    # The first registration answers the first call, the second every later one.
    results = gateway.fetch_status_many(refs)
    assert sorted(results) == [f"ref{n:02}" for n in range(25)]


@responses.activate
def test_fetch_status_many_raises_when_every_call_fails(gateway):
    responses.add(responses.POST, API_URL, body="Bad Gateway", status=502)
    with pytest.raises(GatewayUnavailable, match="HTTP 502"):
        gateway.fetch_status_many([paid_ref()])


def test_fetch_status_many_without_txn_ids_makes_no_call(gateway):
    with responses.RequestsMock() as mock:
        assert gateway.fetch_status_many([paid_ref(transaction_id="")]) == {}
        assert len(mock.calls) == 0


# refunds -----------------------------------------------------------------------------


def test_refunds_are_not_supported(gateway):
    request = RefundRequest(REF_ID, "rf_1", Decimal("10"), "USD", TXN_ID)
    with pytest.raises(NotSupported, match="no refund API; record a manual refund"):
        gateway.refund(request)
    with pytest.raises(NotSupported, match="no refund API"):
        gateway.fetch_refund(request)


# IPN ---------------------------------------------------------------------------------


def test_ipn_with_a_good_signature_is_parsed(gateway):
    body = load_form("ipn_api.txt")
    event = gateway.parse_webhook(body, {"hmac": sign(SETTINGS["ipn_secret"], body)})
    assert event.event_id == "8d3c6a1f0e9b47d2a5c4b3e2f1d0c9b8"
    assert event.ref_id == REF_ID
    assert event.transaction_id == TXN_ID
    assert event.status == Status.COMPLETED
    assert (event.amount, event.currency) == (Decimal("49.99"), "USD")
    assert event.confirm is False
    assert event.message == "Complete"
    assert event.raw["email"] == "buyer@example.com"
    assert event.raw["item_name"] == "eSIM Europe 10 GB"
    assert all(isinstance(value, str) for value in event.raw.values())


@pytest.mark.parametrize(
    "status, text, expected",
    [
        ("0", "Waiting for buyer funds...", Status.PENDING),
        ("2", "Queued for nightly payout", Status.COMPLETED),
        ("-1", "Cancelled / Timed Out", Status.EXPIRED),
        ("-1", "Cancelled", Status.FAILED),
    ],
)
def test_ipn_status_mapping(gateway, status, text, expected):
    body = with_fields(load_form("ipn_api.txt"), status=status, status_text=text)
    assert gateway.parse_webhook(body, signed(body)).status == expected


def test_ipn_of_another_type_is_ignored(gateway):
    body = load_form("ipn_deposit.txt")
    event = gateway.parse_webhook(body, signed(body))
    assert event.status is None
    assert event.event_id == "1f2e3d4c5b6a79880796a5b4c3d2e1f0"
    assert event.message == "ignored ipn_type deposit"


def test_ipn_reported_complete_but_short_asks_for_confirmation(gateway):
    body = with_fields(load_form("ipn_api.txt"), received_amount="0.001")
    event = gateway.parse_webhook(body, signed(body))
    assert event.status == Status.COMPLETED
    assert event.confirm is True
    assert "underpaid: received 0.001 of 0.00123456 BTC" in event.message


def test_ipn_verified_skips_the_hmac_but_not_the_merchant(gateway):
    body = load_form("ipn_api.txt")
    assert gateway.parse_webhook(body, {}, verified=True).transaction_id == TXN_ID
    other = with_fields(body, merchant="fedcba9876543210fedcba9876543210")
    with pytest.raises(WebhookRejected, match="merchant"):
        gateway.parse_webhook(other, {}, verified=True)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda body: (body, {}), "missing HMAC header"),
        (lambda body: (body, {"HMAC": ""}), "missing HMAC header"),
        (
            lambda body: (body, signed(body, "not-the-ipn-secret")),
            "HMAC signature does not match",
        ),
        (
            lambda body: (with_fields(body, amount1="0.01"), signed(body)),
            "HMAC signature does not match",
        ),
        (lambda body: (body, {"HMAC": "zz" * 64}), "HMAC signature does not match"),
    ],
    ids=["missing", "empty", "wrong-secret", "tampered", "garbage"],
)
def test_ipn_with_a_bad_signature_is_rejected(gateway, make, match):
    body, headers = make(load_form("ipn_api.txt"))
    with pytest.raises(WebhookRejected, match=match):
        gateway.parse_webhook(body, headers)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"merchant": "fedcba9876543210fedcba9876543210"}, "merchant does not match"),
        ({"merchant": None}, "merchant does not match"),
        ({"ipn_mode": "httpauth"}, "ipn_mode is not hmac"),
        ({"ipn_mode": None}, "ipn_mode is not hmac"),
        ({"amount1": "49,99"}, "amount1 is not an amount"),
        ({"amount1": "NaN"}, "amount1 is not an amount"),
        ({"amount1": None}, "amount1 is not an amount"),
        ({"amount1": "-1"}, "bad amount1"),
        ({"currency1": ""}, "no currency1"),
        ({"status": "1.5"}, "status is not an integer"),
        ({"status": "complete"}, "status is not an integer"),
        ({"txn_id": None}, "no txn_id"),
        ({"ipn_id": ""}, "no ipn_id"),
    ],
)
def test_ipn_with_bad_fields_is_rejected(gateway, changes, match):
    body = with_fields(load_form("ipn_api.txt"), **changes)
    with pytest.raises(WebhookRejected, match=match):
        gateway.parse_webhook(body, signed(body))


def test_webhook_reply_is_ipn_ok(gateway):
    assert gateway.webhook_reply(None) == WebhookReply(200, "IPN OK", "text/plain")


# redaction ---------------------------------------------------------------------------


@responses.activate
def test_logs_and_errors_never_carry_keys_secrets_or_hmacs(gateway, caplog):
    caplog.set_level(logging.DEBUG)

    def echo_credentials(request):
        fields = form_of(request)
        error = f"HMAC {request.headers['HMAC']} does not match key {fields['key']}"
        return 200, {}, json.dumps({"error": error})

    responses.add(responses.POST, API_URL, json=load_json("create_transaction.json"))
    responses.add(responses.POST, API_URL, json=tx_info())
    responses.add_callback(responses.POST, API_URL, callback=echo_credentials)
    responses.add(responses.POST, API_URL, body="Service Unavailable", status=503)

    messages = []
    gateway.create_checkout(checkout_request())
    gateway.fetch_status(paid_ref())
    with pytest.raises(GatewayUnavailable) as refused:
        gateway.fetch_status(paid_ref())
    messages.append(str(refused.value))
    with pytest.raises(GatewayUnavailable) as down:
        gateway.fetch_status(paid_ref())
    messages.append(str(down.value))

    body = load_form("ipn_api.txt")
    forged = sign("guessed-secret", body)
    with pytest.raises(WebhookRejected) as rejected:
        gateway.parse_webhook(body, {"HMAC": forged})
    messages.append(str(rejected.value))

    secrets = [
        SETTINGS["private_key"],
        SETTINGS["ipn_secret"],
        SETTINGS["public_key"],
        sign(SETTINGS["ipn_secret"], body),
        forged,
        *(call.request.headers["HMAC"] for call in responses.calls),
    ]
    assert len(responses.calls) == 4
    assert "get_tx_info" in caplog.text  # the calls were logged, safely
    assert "refused: HMAC [redacted] does not match key [redacted]" in messages[0]
    for secret in secrets:
        assert secret not in caplog.text
        for message in messages:
            assert secret not in message


# edges: unconfirmed coins, underpaid then timed out, permanent answers, other IPN
# types, repeated fields (issue #8). Fixtures follow the field lists of
# https://www.coinpayments.net/apidoc-get-tx-info and
# https://www.coinpayments.net/merchant-tools-ipn.

PAST = datetime(2025, 1, 1, tzinfo=UTC)
FUTURE = datetime.now(UTC) + timedelta(hours=1)


@responses.activate
def test_coins_received_but_unconfirmed_are_pending_and_settling(gateway):
    responses.add(
        responses.POST, API_URL, json=load_json("get_tx_info_unconfirmed.json")
    )
    result = gateway.fetch_status(paid_ref(expires_at=PAST))
    assert result.status == Status.PENDING
    assert result.settling is True
    assert result.review == ""
    assert result.message == (
        "coins received, waiting for confirmations: received 0.00123456 of "
        "0.00123456 BTC, 1 confirmations (Waiting for buyer funds...)"
    )


@pytest.mark.parametrize(
    "code, received, settling",
    [
        (0, "0.00000000", False),  # nothing sent yet: free to expire
        (0, "0.00000001", True),
        (1, "0.00123456", True),
        (100, "0.00123456", False),  # completed: nothing left to settle
    ],
)
@responses.activate
def test_settling_only_while_pending_with_coins(gateway, code, received, settling):
    responses.add(
        responses.POST,
        API_URL,
        json=tx_info(status=code, receivedf=received, time_expires=0),
    )
    assert gateway.fetch_status(paid_ref()).settling is settling


@responses.activate
def test_unreadable_received_amount_while_pending_is_a_fault(gateway):
    responses.add(responses.POST, API_URL, json=tx_info(status=0, receivedf="x"))
    with pytest.raises(GatewayUnavailable, match="unreadable coin amounts"):
        gateway.fetch_status(paid_ref())


@responses.activate
def test_underpaid_then_timed_out_is_expired_and_flagged_with_the_coins(gateway):
    responses.add(
        responses.POST,
        API_URL,
        json=load_json("get_tx_info_underpaid_timed_out.json"),
    )
    result = gateway.fetch_status(paid_ref())
    assert result.status == Status.EXPIRED
    assert result.settling is False
    assert "received 0.00100000 of 0.00123456 BTC" in result.review
    assert "refund or top up by hand" in result.review
    assert result.message.startswith("ended after coins arrived: received 0.00100000")


@responses.activate
def test_timed_out_with_nothing_received_is_not_flagged(gateway):
    responses.add(
        responses.POST,
        API_URL,
        json=tx_info(status=-1, status_text="Cancelled / Timed Out", receivedf="0"),
    )
    result = gateway.fetch_status(paid_ref())
    assert (result.status, result.review) == (Status.EXPIRED, "")


@pytest.mark.parametrize(
    "fixture, flagged",
    [("error_invalid_payment_id.json", False), ("error_no_permission.json", True)],
)
@responses.activate
def test_permanent_answer_after_the_deadline_fails_the_payment(
    gateway, fixture, flagged
):
    words = load_json(fixture)["error"]
    responses.add(responses.POST, API_URL, json=load_json(fixture))
    result = gateway.fetch_status(paid_ref(expires_at=PAST))
    assert result.status == Status.FAILED
    assert result.message == f"CoinPayments answered: {words}"
    assert bool(result.review) is flagged
    if flagged:
        assert words in result.review


@pytest.mark.parametrize(
    "fixture", ["error_invalid_payment_id.json", "error_no_permission.json"]
)
@pytest.mark.parametrize("expires_at", [FUTURE, None])
@responses.activate
def test_permanent_answer_before_the_deadline_is_retried_like_an_outage(
    gateway, fixture, expires_at
):
    responses.add(responses.POST, API_URL, json=load_json(fixture))
    with pytest.raises(GatewayUnavailable, match="get_tx_info refused"):
        gateway.fetch_status(paid_ref(expires_at=expires_at))


@pytest.mark.parametrize(
    "reply",
    [
        {"json": load_json("error.json")},
        {"json": {"error": "Too many errors in the last two minutes from 1.2.3.4"}},
        {"body": "Bad Gateway", "status": 502},
        {"body": "<html>busy</html>", "status": 200},
    ],
    ids=["other-error", "lockout", "502", "garbage"],
)
@responses.activate
def test_outages_after_the_deadline_still_raise(gateway, reply):
    responses.add(responses.POST, API_URL, **reply)
    with pytest.raises(GatewayUnavailable):
        gateway.fetch_status(paid_ref(expires_at=PAST))


@responses.activate
def test_batch_entry_refused_for_ever_fails_only_refs_past_their_deadline(gateway):
    responses.add(responses.POST, API_URL, json=load_json("get_tx_info_multi.json"))
    unknown = "CPHK0UNKNOWNTXID00000000000"
    refs = [
        paid_ref(),
        paid_ref(ref_id="late", transaction_id=unknown, expires_at=PAST),
    ]
    results = gateway.fetch_status_many(refs)
    assert results["late"].status == Status.FAILED
    assert results["late"].message == "CoinPayments answered: Invalid transaction ID!"
    assert results[REF_ID].status == Status.PENDING
    # Before the deadline the same entry is left out (retried with back-off).
    early = paid_ref(ref_id="early", transaction_id=unknown, expires_at=FUTURE)
    assert "early" not in gateway.fetch_status_many([early])


@responses.activate
def test_batch_call_without_permission_fails_overdue_refs_and_flags_them(gateway):
    responses.add(responses.POST, API_URL, json=load_json("error_no_permission.json"))
    refs = [
        paid_ref(ref_id="late", transaction_id="CP1", expires_at=PAST),
        paid_ref(ref_id="early", transaction_id="CP2", expires_at=FUTURE),
    ]
    results = gateway.fetch_status_many(refs)
    assert list(results) == ["late"]
    assert results["late"].status == Status.FAILED
    assert "permission" in results["late"].review
    # With no ref past its deadline the refusal is a fault, as before.
    with pytest.raises(GatewayUnavailable, match="permission"):
        gateway.fetch_status_many(refs[1:])


@pytest.mark.parametrize(
    "fixture, ipn_type",
    [
        ("ipn_deposit.txt", "deposit"),
        ("ipn_simple.txt", "simple"),
        ("ipn_button.txt", "button"),
        ("ipn_cart.txt", "cart"),
        ("ipn_donation.txt", "donation"),
        ("ipn_withdrawal.txt", "withdrawal"),
    ],
)
def test_ipns_of_other_types_name_no_payment_and_carry_no_status(
    gateway, fixture, ipn_type
):
    body = load_form(fixture)
    event = gateway.parse_webhook(body, signed(body))
    assert (event.status, event.ref_id, event.transaction_id) == (None, "", "")
    assert event.confirm is False
    assert event.message == f"ignored ipn_type {ipn_type}"
    assert event.raw["ipn_type"] == ipn_type
    # Still verified like any IPN: a forged one is refused.
    with pytest.raises(WebhookRejected):
        gateway.parse_webhook(body, signed(body, "guessed"))


def test_ipn_timed_out_after_coins_arrived_asks_for_confirmation(gateway):
    body = load_form("ipn_api_timed_out_underpaid.txt")
    event = gateway.parse_webhook(body, signed(body))
    assert event.status == Status.EXPIRED
    assert event.confirm is True
    assert "received 0.00100000 of 0.00123456 BTC" in event.message


def test_ipn_timed_out_with_nothing_received_needs_no_confirmation(gateway):
    body = with_fields(
        load_form("ipn_api_timed_out_underpaid.txt"), received_amount="0.00000000"
    )
    event = gateway.parse_webhook(body, signed(body))
    assert (event.status, event.confirm) == (Status.EXPIRED, False)


def test_repeated_ipn_fields_keep_the_last_value_as_php_does(gateway):
    # PHP's $_POST, read by the provider's own IPN sample, keeps the last of
    # repeated fields; the signature covers the whole body either way.
    body = load_form("ipn_api.txt") + b"&status=0&status_text=Waiting&invoice=other"
    event = gateway.parse_webhook(body, signed(body))
    assert event.status == Status.PENDING
    assert event.ref_id == "other"
    # Coins arrived and wait for confirmations: settling, as a lookup says.
    assert event.message.startswith("coins received, waiting for confirmations")
    assert event.message.endswith("(Waiting)") and event.settling
    first_wins = b"status=0&" + load_form("ipn_api.txt")
    assert gateway.parse_webhook(first_wins, signed(first_wins)).status == (
        Status.COMPLETED
    )
