"""Tests of the fake CoinPayments/MPGS server itself, over real loopback HTTP."""

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from . import FakeProviderServer, cp_signature

MPGS_AUTH = ("merchant.TESTMERCHANT", "mpgs-password")


class Receiver:
    """Record POSTs (IPNs, notifications) sent to a loopback URL."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Message, bytes]] = []
        # HTTP statuses for the next POSTs (200 once they run out).
        self.answers: list[int] = []
        received, answers = self.received, self.answers

        class Handler(BaseHTTPRequestHandler):
            """Store each POST."""

            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                """Store the request and answer 200."""
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, self.headers, body))
                self.send_response(answers.pop(0) if answers else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        """Stop the receiver."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    """Serve one fake for the whole module."""
    with FakeProviderServer() as server:
        yield server
    # A crash inside the fake would otherwise only surface as an HTTP 500.
    assert server.errors == []


@pytest.fixture(autouse=True)
def _clean_fake(fake: FakeProviderServer) -> Iterator[None]:
    """Start every test with no faults, latency or recorded calls."""
    fake.clear_faults()
    fake.latency = 0.0
    fake.reset_calls()
    yield
    fake.clear_faults()
    fake.latency = 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Provide a webhook receiver."""
    rec = Receiver()
    yield rec
    rec.close()


def cp_call(
    fake: FakeProviderServer,
    cmd: str,
    *,
    client: Any = requests,
    secret: str | None = None,
    timeout: float | tuple[float, float] = 5,
    **fields: str,
) -> requests.Response:
    """POST a signed CoinPayments API call."""
    data = {"version": "1", "key": fake.cp_public_key, "cmd": cmd, "format": "json"}
    body = urlencode({**data, **fields}).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "HMAC": cp_signature(secret or fake.cp_private_key, body),
    }
    return client.post(
        f"{fake.url}/api.php", data=body, headers=headers, timeout=timeout
    )


def create_tx(fake: FakeProviderServer, **fields: str) -> dict[str, Any]:
    """Create a CoinPayments transaction and return its result."""
    defaults = {
        "amount": "10.00",
        "currency1": "USD",
        "currency2": "BTC",
        "buyer_email": "buyer@example.com",
    }
    payload = cp_call(fake, "create_transaction", **{**defaults, **fields}).json()
    assert payload["error"] == "ok", payload
    return payload["result"]


def mpgs_url(fake: FakeProviderServer, rest: str, version: int = 100) -> str:
    """Return an MPGS REST URL for the fake's merchant."""
    return f"{fake.url}/api/rest/version/{version}/merchant/TESTMERCHANT/{rest}"


def new_order_id() -> str:
    """Return a fresh MPGS order id."""
    return "ord-" + uuid.uuid4().hex[:12]


def create_session(
    fake: FakeProviderServer,
    order_id: str,
    *,
    amount: str = "25.00",
    notification_url: str | None = None,
    return_url: str = "http://shop.test/return?ref=abc",
) -> dict[str, Any]:
    """Initiate an MPGS checkout session and return the answer."""
    order: dict[str, Any] = {
        "id": order_id,
        "amount": amount,
        "currency": "USD",
        "description": "eSIM 10 GB",
    }
    if notification_url:
        order["notificationUrl"] = notification_url
    response = requests.post(
        mpgs_url(fake, "session"),
        json={
            "apiOperation": "INITIATE_CHECKOUT",
            "interaction": {
                "operation": "PURCHASE",
                "returnUrl": return_url,
                "merchant": {"name": "Magic eSIM"},
            },
            "order": order,
        },
        auth=MPGS_AUTH,
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return response.json()


def refund(
    fake: FakeProviderServer, order_id: str, txn_id: str, amount: str
) -> requests.Response:
    """PUT an MPGS refund."""
    return requests.put(
        mpgs_url(fake, f"order/{order_id}/transaction/{txn_id}"),
        json={
            "apiOperation": "REFUND",
            "transaction": {"amount": amount, "currency": "USD"},
        },
        auth=MPGS_AUTH,
        timeout=5,
    )


def wait_idle(fake: FakeProviderServer, deadline: float = 3.0) -> None:
    """Wait until no request is being handled."""
    end = time.monotonic() + deadline
    while fake.in_flight and time.monotonic() < end:
        time.sleep(0.01)
    assert fake.in_flight == 0


# --- CoinPayments --------------------------------------------------------------


def test_cp_signature_matches_documented_test_vector() -> None:
    body = (
        "currency=BTC&version=1&cmd=get_callback_address"
        "&key=your_api_public_key&format=json"
    )
    assert cp_signature("test", body) == (
        "5590eac015e7692902e1a9cd5464f1d305a4b593d2f1343d826ac5affc5ac6f9"
        "60a5167284f9bf31295cba0e04df9d8f7087935b5344c468ccf2dd036e159102"
    )


def test_cp_create_transaction_converts_and_stores(fake: FakeProviderServer) -> None:
    result = create_tx(
        fake,
        amount="100.00",
        currency1="EUR",
        currency2="ETH",
        invoice="INV-1",
        ipn_url="http://shop.test/ipn",
    )

    # 100 EUR = 110 USD = 0.0366666... ETH, rounded to 8 places.
    assert result["amount"] == "0.03666667"
    assert result["txn_id"].startswith("CP") and len(result["txn_id"]) == 24
    assert result["txn_id"][2:].isalnum() and result["txn_id"][2:].isupper()
    assert result["confirms_needed"] == "2"
    assert result["timeout"] == 3600
    assert "dest_tag" not in result
    assert result["checkout_url"] == f"{fake.url}/cp/checkout/{result['txn_id']}"
    assert result["status_url"] == f"{fake.url}/cp/status/{result['txn_id']}"
    assert result["address"].startswith("0x")
    stored = fake.cp_transaction(result["txn_id"])
    assert stored["status"] == 0
    assert stored["amount1"] == "100.00"
    assert stored["ipn_url"] == "http://shop.test/ipn"
    assert stored["expires"] - stored["created"] == 3600
    assert fake.cp_find_by_invoice("INV-1") == result["txn_id"]
    assert fake.count("cp:create_transaction") == 1


def test_cp_rejects_bad_or_missing_hmac(fake: FakeProviderServer) -> None:
    wrong = cp_call(
        fake,
        "create_transaction",
        secret="not-the-private-key",
        amount="1",
        currency1="USD",
        currency2="BTC",
        buyer_email="a@b.c",
    )
    missing = requests.post(
        f"{fake.url}/api.php",
        data={"version": "1", "key": "cp-public", "cmd": "get_tx_info", "txid": "x"},
        timeout=5,
    )

    assert wrong.status_code == 200
    assert wrong.json() == {"error": "HMAC signature does not match"}
    assert missing.json() == {"error": "HMAC signature does not match"}


def test_cp_rejects_unknown_key_version_and_command(fake: FakeProviderServer) -> None:
    bad_version = cp_call(fake, "get_tx_info", version="2", txid="x").json()
    unknown_cmd = cp_call(fake, "rates").json()
    fields = {"version": "1", "key": "someone-else", "cmd": "rates"}
    body = urlencode(fields).encode()
    bad_key = requests.post(
        f"{fake.url}/api.php",
        data=body,
        headers={"HMAC": cp_signature("cp-private", body)},
        timeout=5,
    ).json()

    assert bad_version["error"] == "Invalid API version"
    assert unknown_cmd["error"] == "Unknown command"
    assert bad_key["error"] == "Invalid API public key"
    assert fake.count("cp:rates") == 2


def test_cp_rejects_non_increasing_nonce(fake: FakeProviderServer) -> None:
    txn_id = create_tx(fake)["txn_id"]

    # Above any nonce an earlier test of this module sent to the shared fake.
    base = time.time_ns() // 1000
    first = cp_call(fake, "get_tx_info", txid=txn_id, nonce=str(base)).json()
    repeated = cp_call(fake, "get_tx_info", txid=txn_id, nonce=str(base)).json()
    lower = cp_call(fake, "get_tx_info", txid=txn_id, nonce=str(base - 1)).json()
    higher = cp_call(fake, "get_tx_info", txid=txn_id, nonce=str(base + 1)).json()

    assert first["error"] == "ok"
    assert repeated == {"error": "Invalid nonce"}
    assert lower == {"error": "Invalid nonce"}
    assert higher["error"] == "ok"
    assert fake.cp_nonce_rejections == 2
    fake.reset_calls()
    assert fake.cp_nonce_rejections == 0


def test_cp_nonce_is_optional(fake: FakeProviderServer) -> None:
    txn_id = create_tx(fake)["txn_id"]

    before = cp_call(fake, "get_tx_info", txid=txn_id).json()
    with_nonce = cp_call(
        fake, "get_tx_info", txid=txn_id, nonce=str(time.time_ns() // 1000)
    )
    after = cp_call(fake, "get_tx_info", txid=txn_id).json()
    again = cp_call(fake, "get_tx_info", txid=txn_id).json()

    # A nonce sent once does not make it compulsory for the key.
    assert before["error"] == with_nonce.json()["error"] == "ok"
    assert after["error"] == again["error"] == "ok"
    assert fake.cp_nonce_rejections == 0


def test_cp_get_tx_info_multi_reports_each_id(fake: FakeProviderServer) -> None:
    waiting = create_tx(fake)["txn_id"]
    paid = create_tx(fake)["txn_id"]
    fake.cp_set_status(paid, 100)

    payload = cp_call(fake, "get_tx_info_multi", txid=f"{waiting}|{paid}").json()

    assert payload["error"] == "ok"
    result = payload["result"]
    assert set(result) == {waiting, paid}
    assert result[waiting]["error"] == "ok"
    assert result[waiting]["status"] == 0
    assert result[waiting]["status_text"] == "Waiting for buyer funds..."
    assert result[waiting]["amountf"] == "0.00016667"
    assert result[waiting]["amount"] == 16667
    assert result[waiting]["received"] == 0
    assert result[waiting]["coin"] == "BTC"
    assert result[waiting]["type"] == "coins"
    assert result[paid]["status"] == 100
    assert result[paid]["status_text"] == "Complete"
    assert result[paid]["received"] == 16667
    assert result[paid]["receivedf"] == "0.00016667"
    assert isinstance(result[paid]["time_expires"], int)


def test_cp_get_tx_info_multi_limits_ids_to_25(fake: FakeProviderServer) -> None:
    real = create_tx(fake)["txn_id"]
    ids = [real] + [f"CPUNKNOWN{i:02d}" for i in range(24)]

    ok = cp_call(fake, "get_tx_info_multi", txid="|".join(ids)).json()
    too_many = cp_call(
        fake, "get_tx_info_multi", txid="|".join([*ids, "CPONEMORE"])
    ).json()

    assert ok["error"] == "ok"
    assert ok["result"][real]["error"] == "ok"
    assert ok["result"]["CPUNKNOWN00"] == {"error": "Invalid payment ID"}
    assert too_many == {"error": "Too many transaction IDs"}


def test_cp_get_tx_info_unknown_id_is_top_level_error(
    fake: FakeProviderServer,
) -> None:
    payload = cp_call(fake, "get_tx_info", txid="CPNOPE").json()

    assert payload == {"error": "Invalid payment ID"}


def test_cp_ipn_is_signed_and_updates_status(fake: FakeProviderServer) -> None:
    txn_id = create_tx(fake, invoice="INV-IPN", custom="c-1")["txn_id"]

    body, headers = fake.cp_ipn(txn_id, status=100, ipn_id="ipn-fixed")

    expected = hmac.new(b"cp-ipn-secret", body, hashlib.sha512).hexdigest()
    assert headers["HMAC"] == expected
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert fields["ipn_id"] == "ipn-fixed"
    assert fields["ipn_mode"] == "hmac"
    assert fields["merchant"] == "cp-merchant"
    assert fields["status"] == "100"
    assert fields["currency1"] == "USD" and fields["amount1"] == "10.00"
    assert fields["currency2"] == "BTC" and fields["amount2"] == "0.00016667"
    assert fields["received_amount"] == "0.00016667"
    assert fields["invoice"] == "INV-IPN" and fields["custom"] == "c-1"
    # A following status query agrees with the IPN.
    info = cp_call(fake, "get_tx_info", txid=txn_id).json()["result"]
    assert info["status"] == 100


def test_cp_ipn_tampering_helpers(fake: FakeProviderServer) -> None:
    txn_id = create_tx(fake)["txn_id"]

    body, headers = fake.cp_ipn(
        txn_id, overrides={"amount1": "0.01", "status": "100"}, secret="forged"
    )

    fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert fields["amount1"] == "0.01"
    assert fields["status"] == "100"
    assert headers["HMAC"] == cp_signature("forged", body)
    assert headers["HMAC"] != cp_signature("cp-ipn-secret", body)
    # A status given only through overrides leaves the stored transaction alone.
    assert fake.cp_transaction(txn_id)["status"] == 0
    assert fake.cp_ipn(txn_id)[0] != fake.cp_ipn(txn_id)[0]  # fresh ipn_id each time


def test_cp_checkout_page_pay_sends_ipn_and_redirects(
    fake: FakeProviderServer, receiver: Receiver
) -> None:
    result = create_tx(
        fake, ipn_url=f"{receiver.url}/ipn", success_url="http://shop.test/ok"
    )

    page = requests.get(result["checkout_url"], timeout=5)
    paid = requests.post(
        result["checkout_url"],
        data={"action": "pay"},
        allow_redirects=False,
        timeout=5,
    )
    again = requests.post(result["checkout_url"], data={"action": "pay"}, timeout=5)

    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert result["address"] in page.text and 'value="pay"' in page.text
    assert paid.status_code == 303
    assert paid.headers["Location"] == "http://shop.test/ok"
    assert again.status_code == 409
    assert len(receiver.received) == 1
    path, headers, body = receiver.received[0]
    assert path == "/ipn"
    assert headers["HMAC"] == cp_signature("cp-ipn-secret", body)
    assert parse_qs(body.decode())["status"] == ["100"]
    assert fake.cp_transaction(result["txn_id"])["status"] == 100
    status_page = requests.get(result["status_url"], timeout=5)
    assert "Complete" in status_page.text


def test_cp_repeated_fields_keep_the_last_value_as_php_does(
    fake: FakeProviderServer,
) -> None:
    real = create_tx(fake)["txn_id"]
    data = {"version": "1", "key": fake.cp_public_key, "format": "json"}
    pairs = [*data.items(), ("cmd", "get_tx_info"), ("txid", "CPNOPE"), ("txid", real)]
    body = urlencode(pairs).encode()
    answer = requests.post(
        f"{fake.url}/api.php",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "HMAC": cp_signature(fake.cp_private_key, body),
        },
        timeout=5,
    ).json()
    assert answer["error"] == "ok"
    assert fake.cp_ids_asked[real] == 1 and "CPNOPE" not in fake.cp_ids_asked

    body, _ = fake.cp_ipn(real, status=0, repeat={"status": "100"})
    assert body.endswith(b"&status=100")
    assert parse_qs(body.decode())["status"] == ["0", "100"]


@pytest.mark.parametrize(
    "currency1, amount",
    [("EUR", "10.00"), ("JPY", "1500"), ("CAD", "12.50"), ("KWD", "3.250")],
)
@pytest.mark.parametrize(
    "coin", ["BTC", "LTC", "ETH", "USDT", "USDC", "BCH", "DOGE", "XRP", "TRX", "LTCT"]
)
def test_cp_converts_more_fiat_currencies_into_more_coins(
    fake: FakeProviderServer, currency1: str, amount: str, coin: str
) -> None:
    result = create_tx(fake, amount=amount, currency1=currency1, currency2=coin)
    tx = fake.cp_transaction(result["txn_id"])
    assert tx["currency1"] == currency1 and tx["currency2"] == coin
    assert float(result["amount"]) > 0
    assert ("dest_tag" in result) is (coin == "XRP")


def test_cp_unknown_fiat_or_coin_is_refused(fake: FakeProviderServer) -> None:
    fields = {"amount": "1", "buyer_email": "b@example.com"}
    bad_fiat = cp_call(
        fake, "create_transaction", currency1="XXX", currency2="BTC", **fields
    )
    assert bad_fiat.json() == {"error": "Unknown currency1: XXX"}
    bad_coin = cp_call(
        fake, "create_transaction", currency1="USD", currency2="EUR", **fields
    )
    assert bad_coin.json()["error"].startswith("Unknown or unsupported currency2")


def test_cp_key_without_permission_is_refused_in_the_providers_words(
    fake: FakeProviderServer,
) -> None:
    real = create_tx(fake)["txn_id"]
    fake.cp_permissions = {"create_transaction"}
    try:
        for cmd in ("get_tx_info", "get_tx_info_multi"):
            answer = cp_call(fake, cmd, txid=real).json()
            assert answer == {
                "error": "This API Key does not have permission to use that command!"
            }
        assert create_tx(fake)["txn_id"]
    finally:
        fake.cp_permissions = None


def test_cp_coins_received_but_unconfirmed(fake: FakeProviderServer) -> None:
    result = create_tx(fake)
    fake.cp_receive(result["txn_id"], confirms=5)
    info = cp_call(fake, "get_tx_info", txid=result["txn_id"]).json()["result"]
    assert info["status"] == 0
    assert info["status_text"] == "Waiting for buyer funds..."
    assert info["receivedf"] == result["amount"]
    assert info["recv_confirms"] == 1  # always short of the confirmations needed
    fake.cp_receive(result["txn_id"], "0.00001")
    info = cp_call(fake, "get_tx_info", txid=result["txn_id"]).json()["result"]
    assert info["receivedf"] == "0.00001000"


def test_cp_underpaid_then_timed_out(fake: FakeProviderServer) -> None:
    result = create_tx(fake)
    fake.cp_receive(result["txn_id"], "0.00010000")
    fake.cp_time_out(result["txn_id"])
    info = cp_call(fake, "get_tx_info", txid=result["txn_id"]).json()["result"]
    assert (info["status"], info["status_text"]) == (-1, "Cancelled / Timed Out")
    assert info["receivedf"] == "0.00010000"
    assert info["time_expires"] < time.time()
    body, _ = fake.cp_ipn(result["txn_id"])
    ipn = parse_qs(body.decode())
    assert (ipn["status"], ipn["received_amount"]) == (["-1"], ["0.00010000"])


@pytest.mark.parametrize(
    "ipn_type", ["simple", "button", "cart", "donation", "deposit", "withdrawal"]
)
def test_cp_other_ipn_types_are_signed_for_the_merchant(
    fake: FakeProviderServer, ipn_type: str
) -> None:
    body, headers = fake.cp_other_ipn(ipn_type, status="0")
    fields = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
    assert fields["ipn_type"] == ipn_type and fields["status"] == "0"
    assert fields["merchant"] == fake.cp_merchant_id
    assert fields["ipn_mode"] == "hmac" and fields["txn_id"]
    assert headers["HMAC"] == cp_signature(fake.cp_ipn_secret, body)
    with pytest.raises(ValueError, match="ipn_type"):
        fake.cp_other_ipn("api")


# --- MPGS ---------------------------------------------------------------------


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
    from gateways import money

    from .core import MINOR_UNITS

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


# --- faults and transport --------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "502", "503", "429"])
def test_fault_http_error_status(fake: FakeProviderServer, kind: str) -> None:
    txn_id = create_tx(fake)["txn_id"]
    fake.add_fault("cp:get_tx_info", kind)

    faulted = cp_call(fake, "get_tx_info", txid=txn_id)
    normal = cp_call(fake, "get_tx_info", txid=txn_id)

    assert faulted.status_code == int(kind)
    if kind == "429":
        assert faulted.headers["Retry-After"] == "1"
    assert normal.json()["error"] == "ok"
    assert fake.pending_faults() == []


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [
        ("html", "text/html"),
        ("truncated", "application/json"),
        ("garbage", "application/json"),
    ],
)
def test_fault_unreadable_body(
    fake: FakeProviderServer, kind: str, content_type: str
) -> None:
    txn_id = create_tx(fake)["txn_id"]
    fake.add_fault("cp:get_tx_info", kind)

    faulted = cp_call(fake, "get_tx_info", txid=txn_id)

    assert faulted.status_code == 200
    assert faulted.headers["Content-Type"].startswith(content_type)
    with pytest.raises(ValueError):
        json.loads(faulted.content)
    assert cp_call(fake, "get_tx_info", txid=txn_id).json()["error"] == "ok"


def test_fault_latency_delays_then_answers(fake: FakeProviderServer) -> None:
    txn_id = create_tx(fake)["txn_id"]
    fake.add_fault("cp:get_tx_info", "latency", seconds=0.2)

    started = time.monotonic()
    response = cp_call(fake, "get_tx_info", txid=txn_id)
    elapsed = time.monotonic() - started

    assert elapsed >= 0.2
    assert response.json()["error"] == "ok"


def test_global_latency_applies_to_api_calls(fake: FakeProviderServer) -> None:
    fake.latency = 0.15

    started = time.monotonic()
    response = requests.get(mpgs_url(fake, "order/none"), auth=MPGS_AUTH, timeout=5)
    elapsed = time.monotonic() - started

    assert response.status_code == 400
    assert elapsed >= 0.15


def test_fault_timeout_trips_client_read_timeout(fake: FakeProviderServer) -> None:
    fake.add_fault("mpgs:order", "timeout", seconds=0.6)

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(mpgs_url(fake, "order/x"), auth=MPGS_AUTH, timeout=(1, 0.2))

    assert fake.count("mpgs:order") == 1
    # Let the handler finish its sleep so later tests see an idle server.
    wait_idle(fake)


def test_fault_drop_closes_without_answer(fake: FakeProviderServer) -> None:
    fake.add_fault("mpgs:order", "drop")

    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        requests.get(mpgs_url(fake, "order/x"), auth=MPGS_AUTH, timeout=5)

    assert not isinstance(caught.value, requests.exceptions.Timeout)
    after = requests.get(mpgs_url(fake, "order/x"), auth=MPGS_AUTH, timeout=5)
    assert after.status_code == 400


def test_wildcard_fault_hits_any_operation_times(fake: FakeProviderServer) -> None:
    fake.add_fault("*", "503", times=2)

    first = requests.get(mpgs_url(fake, "order/x"), auth=MPGS_AUTH, timeout=5)
    second = cp_call(fake, "get_tx_info", txid="CPNOPE")
    third = cp_call(fake, "get_tx_info", txid="CPNOPE")

    assert (first.status_code, second.status_code) == (503, 503)
    assert third.json() == {"error": "Invalid payment ID"}
    assert fake.pending_faults() == []


def test_add_fault_rejects_unknown_kind(fake: FakeProviderServer) -> None:
    with pytest.raises(ValueError):
        fake.add_fault("*", "explode")

    assert fake.pending_faults() == []


def test_max_in_flight_counts_concurrent_requests(fake: FakeProviderServer) -> None:
    fake.latency = 0.3
    workers = 8
    barrier = threading.Barrier(workers)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        response = requests.get(mpgs_url(fake, "order/x"), auth=MPGS_AUTH, timeout=5)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [400] * workers
    assert fake.max_in_flight == workers
    assert fake.in_flight == 0


def test_keep_alive_reuses_one_connection(fake: FakeProviderServer) -> None:
    txn_id = create_tx(fake)["txn_id"]
    fake.reset_calls()

    started = time.monotonic()
    with requests.Session() as session:
        answers = [
            cp_call(fake, "get_tx_info", client=session, txid=txn_id).json()
            for _ in range(50)
        ]
    elapsed = time.monotonic() - started

    assert all(answer["error"] == "ok" for answer in answers)
    assert fake.count("cp:get_tx_info") == 50
    assert fake.connections_accepted == 1
    assert elapsed < 3


def test_stop_closes_idle_keep_alive_connections() -> None:
    server = FakeProviderServer().start()
    session = requests.Session()
    url = f"{server.url}/static/checkout/checkout.min.js"
    assert session.get(url, timeout=5).status_code == 200

    started = time.monotonic()
    server.stop()
    stopped_in = time.monotonic() - started

    assert stopped_in < 2
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=1)
    session.close()
