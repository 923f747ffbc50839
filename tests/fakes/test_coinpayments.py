"""Tests of the fake CoinPayments API, hosted pages and IPNs, over loopback HTTP."""

import hashlib
import hmac
import time
from urllib.parse import parse_qs, urlencode

import pytest
import requests

from . import FakeProviderServer, cp_signature
from .clients import Receiver, cp_call, create_tx


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
