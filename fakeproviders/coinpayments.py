"""Fake CoinPayments v1: API commands, hosted pages and signed IPNs.

API: https://www.coinpayments.net/apidoc
IPNs: https://www.coinpayments.net/merchant-tools-ipn
"""

import contextlib
import copy
import hashlib
import hmac
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import unquote, urlencode

import requests

from .core import (
    FakeServerCore,
    Reply,
    Request,
    Route,
    escape,
    html_page,
    json_reply,
    parse_decimal,
    parse_form,
    random_alnum,
    redirect,
)

# USD value of one unit; fixed so tests can predict every converted amount.
CP_USD_RATES: dict[str, Decimal] = {
    # coins (currency2, or currency1 when no conversion is wanted)
    "BTC": Decimal("60000"),
    "LTC": Decimal("80"),
    "ETH": Decimal("3000"),
    "USDT": Decimal("1"),
    "USDC": Decimal("1"),
    "BCH": Decimal("400"),
    "DOGE": Decimal("0.15"),
    "XRP": Decimal("0.50"),
    "TRX": Decimal("0.12"),
    "LTCT": Decimal("80"),  # the provider's Litecoin testnet coin
    # fiat (currency1)
    "USD": Decimal("1"),
    "EUR": Decimal("1.10"),
    "GBP": Decimal("1.25"),
    "CAD": Decimal("0.73"),
    "AUD": Decimal("0.66"),
    "CHF": Decimal("1.13"),
    "JPY": Decimal("0.0067"),
    "INR": Decimal("0.012"),
    "BRL": Decimal("0.18"),
    "SAR": Decimal("0.2666"),
    "AED": Decimal("0.2723"),
    "KWD": Decimal("3.25"),
}
CP_COINS = frozenset(
    {"BTC", "LTC", "ETH", "USDT", "USDC", "BCH", "DOGE", "XRP", "TRX", "LTCT"}
)
# Coins whose deposits need a destination tag next to the address.
CP_TAG_COINS = frozenset({"XRP"})
# https://www.coinpayments.net/merchant-tools-ipn (Payment Statuses)
CP_STATUS_TEXT: dict[int, str] = {
    -2: "PayPal Refund or Reversal",
    -1: "Cancelled / Timed Out",
    0: "Waiting for buyer funds...",
    1: "We have confirmed coin reception from the buyer",
    2: "Queued for nightly payout",
    3: "PayPal Pending",
    100: "Complete",
}
# What the API answers for a txid the key cannot see, and for a command the
# key was not given ("You must click 'Edit Permissions' to enable most
# commands", https://www.coinpayments.net/apidoc).
CP_INVALID_TXID = "Invalid payment ID"
CP_NO_PERMISSION = "This API Key does not have permission to use that command!"
# ipn_type values besides "api" (https://www.coinpayments.net/merchant-tools-ipn).
CP_OTHER_IPN_TYPES = ("simple", "button", "cart", "donation", "deposit", "withdrawal")
CP_MAX_MULTI_IDS = 25
CP_CONFIRMS_NEEDED = 2
CP_FEE_RATE = Decimal("0.005")

_COIN_PLACES = Decimal("0.00000001")
_SATOSHI = Decimal(100_000_000)
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def cp_signature(secret: str, body: bytes | str) -> str:
    """Return the CoinPayments HMAC: lowercase hex HMAC-SHA512 of the raw body."""
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), raw, hashlib.sha512).hexdigest()


class CoinPaymentsFake(FakeServerCore):
    """Fake CoinPayments: `/api.php` commands and the `/cp/` hosted pages."""

    STATE = ("_cp_txs",)
    ROUTES = {"/api.php": "_cp_route", "/cp/": "_cp_route"}

    def __init__(
        self,
        *,
        cp_public_key: str = "cp-public",
        cp_private_key: str = "cp-private",
        cp_merchant_id: str = "cp-merchant",
        cp_ipn_secret: str = "cp-ipn-secret",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.cp_public_key = cp_public_key
        self.cp_private_key = cp_private_key
        self.cp_merchant_id = cp_merchant_id
        self.cp_ipn_secret = cp_ipn_secret
        self.cp_timeout: int = 3600
        # Commands the API key may use; None allows every command.
        self.cp_permissions: set[str] | None = None
        # Calls refused for a nonce not above the key's last one. The nonce is
        # optional, as at CoinPayments: a call without one is never refused.
        self.cp_nonce_rejections = 0
        # How often each CoinPayments transaction id was asked about.
        self.cp_ids_asked: Counter[str] = Counter()
        self._cp_nonces: dict[str, int] = {}
        self._cp_txs: dict[str, dict[str, Any]] = {}

    def gateway_settings(self) -> dict[str, dict[str, object]]:
        """Return the GATEWAY_SETTINGS entries that point the adapters at this fake."""
        return {
            "coinpayments": {
                "public_key": self.cp_public_key,
                "private_key": self.cp_private_key,
                "merchant_id": self.cp_merchant_id,
                "ipn_secret": self.cp_ipn_secret,
                "ipn_url": "",
                "api_url": f"{self.url}/api.php",
                "currency2": "BTC",
            },
            **super().gateway_settings(),
        }

    def reset_calls(self) -> None:
        """Forget recorded calls, nonce refusals and the ids asked about."""
        with self._lock:
            super().reset_calls()
            self.cp_nonce_rejections = 0
            self.cp_ids_asked.clear()

    # --- CoinPayments control -------------------------------------------------

    def cp_set_status(
        self, txn_id: str, status: int, received: Decimal | str | None = None
    ) -> None:
        """Set a transaction's status; received defaults to the full amount if paid."""
        with self._lock:
            tx = self._cp_txs[txn_id]
            tx["status"] = int(status)
            if received is not None:
                tx["received"] = Decimal(str(received)).quantize(_COIN_PLACES)
            elif status >= 1:
                tx["received"] = tx["amount2"]
            if tx["status"] >= 1:
                tx["recv_confirms"] = CP_CONFIRMS_NEEDED

    def cp_receive(
        self,
        txn_id: str,
        received: Decimal | str | None = None,
        *,
        confirms: int = 0,
    ) -> None:
        """Show coins sent but not confirmed yet: status 0, `received` > 0.

        `received` defaults to the full coin amount; `confirms` stays below
        the confirmations needed.
        """
        with self._lock:
            tx = self._cp_txs[txn_id]
            tx["status"] = 0
            amount = tx["amount2"] if received is None else Decimal(str(received))
            tx["received"] = amount.quantize(_COIN_PLACES)
            tx["recv_confirms"] = min(int(confirms), CP_CONFIRMS_NEEDED - 1)

    def cp_time_out(self, txn_id: str, received: Decimal | str | None = None) -> None:
        """Time a transaction out (-1, its expiry now past), keeping coins received.

        `received` sets what arrived before the end (e.g. part of the amount);
        None keeps what was received so far.
        """
        with self._lock:
            tx = self._cp_txs[txn_id]
            tx["status"] = -1
            tx["expires"] = min(tx["expires"], int(time.time()) - 1)
            if received is not None:
                tx["received"] = Decimal(str(received)).quantize(_COIN_PLACES)

    def cp_transaction(self, txn_id: str) -> dict[str, Any]:
        """Return a copy of the stored transaction."""
        with self._lock:
            return copy.deepcopy(self._cp_txs[txn_id])

    def cp_find_by_invoice(self, invoice: str) -> str:
        """Return the id of the newest transaction created for `invoice`."""
        with self._lock:
            for txn_id, tx in reversed(self._cp_txs.items()):
                if tx["invoice"] == invoice:
                    return txn_id
        raise KeyError(f"no CoinPayments transaction for invoice {invoice!r}")

    def cp_ipn(
        self,
        txn_id: str,
        *,
        status: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        secret: str | None = None,
        ipn_id: str | None = None,
        repeat: Mapping[str, Any] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Build a signed IPN body and headers; `status` also updates the stored tx.

        `repeat` appends fields a second time at the end of the body (signed
        with it): a PHP reader, like the provider's sample, keeps the last.
        """
        if status is not None:
            self.cp_set_status(txn_id, status)
        with self._lock:
            tx = self._cp_txs[txn_id]
            fields: dict[str, str] = {
                "ipn_version": "1.0",
                "ipn_type": "api",
                "ipn_mode": "hmac",
                "ipn_id": ipn_id or uuid.uuid4().hex,
                "merchant": self.cp_merchant_id,
                "txn_id": txn_id,
                "status": str(tx["status"]),
                "status_text": _cp_status_text(tx["status"]),
                "currency1": tx["currency1"],
                "currency2": tx["currency2"],
                "amount1": tx["amount1"],
                "amount2": _coin(tx["amount2"]),
                "fee": _coin((tx["amount2"] * CP_FEE_RATE).quantize(_COIN_PLACES)),
                "email": tx["email"],
                "invoice": tx["invoice"],
                "custom": tx["custom"],
                "received_amount": _coin(tx["received"]),
                "received_confirms": str(tx["recv_confirms"]),
            }
        # Overrides touch only the body, so tampering tests keep the stored truth;
        # None drops a field to simulate an IPN that lacks it.
        for name, value in (overrides or {}).items():
            if value is None:
                fields.pop(name, None)
            else:
                fields[name] = str(value)
        pairs = [*fields.items(), *((k, str(v)) for k, v in (repeat or {}).items())]
        return self._cp_signed(urlencode(pairs).encode(), secret)

    def cp_other_ipn(
        self,
        ipn_type: str,
        *,
        secret: str | None = None,
        ipn_id: str | None = None,
        **fields: Any,
    ) -> tuple[bytes, dict[str, str]]:
        """Build a signed IPN of another type (deposit, button, …) for this merchant.

        The fields are those the IPN page lists for that type, with sample
        values; keyword arguments replace or add fields.
        """
        if ipn_type not in CP_OTHER_IPN_TYPES:
            raise ValueError(f"ipn_type must be one of {CP_OTHER_IPN_TYPES}")
        coin_txid = secrets.token_hex(32)
        common = {
            "ipn_version": "1.0",
            "ipn_type": ipn_type,
            "ipn_mode": "hmac",
            "ipn_id": ipn_id or uuid.uuid4().hex,
            "merchant": self.cp_merchant_id,
        }
        if ipn_type == "deposit":
            body = {
                "deposit_id": "CD" + random_alnum(22),
                "txn_id": coin_txid,
                "address": _deposit_address("BTC"),
                "status": "100",
                "status_text": "Deposit confirmed",
                "currency": "BTC",
                "confirms": "3",
                "amount": "0.00500000",
                "amounti": "500000",
                "fee": "0.00002500",
                "feei": "2500",
                "fiat_coin": "USD",
                "fiat_amount": "300.00000000",
                "fiat_amounti": "30000000000",
            }
        elif ipn_type == "withdrawal":
            body = {
                "id": "CW" + random_alnum(22),
                "status": "2",
                "status_text": "Complete",
                "address": _deposit_address("BTC"),
                "txn_id": coin_txid,
                "currency": "BTC",
                "amount": "0.01000000",
                "amounti": "1000000",
            }
        else:  # simple, button, cart, donation: the provider's own checkouts
            body = {
                "txn_id": "CP" + random_alnum(22),
                "status": "100",
                "status_text": "Complete",
                "currency1": "USD",
                "currency2": "BTC",
                "amount1": "10.00",
                "amount2": "0.00016667",
                "subtotal": "10.00",
                "fee": "0.00000083",
                "net": "0.00016584",
                "item_name": f"A {ipn_type} payment",
                "invoice": "",
                "custom": "",
                "received_amount": "0.00016667",
                "received_confirms": "3",
            }
        merged = {**common, **body, **{k: str(v) for k, v in fields.items()}}
        return self._cp_signed(urlencode(merged).encode(), secret)

    def _cp_signed(
        self, body: bytes, secret: str | None
    ) -> tuple[bytes, dict[str, str]]:
        key = self.cp_ipn_secret if secret is None else secret
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "HMAC": cp_signature(key, body),
        }
        return body, headers

    def cp_send_ipn(
        self,
        txn_id: str,
        *,
        status: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        secret: str | None = None,
        ipn_id: str | None = None,
        url: str | None = None,
    ) -> requests.Response:
        """POST an IPN to `url` or the transaction's ipn_url and return the answer."""
        target = url or self.cp_transaction(txn_id)["ipn_url"]
        if not target:
            raise ValueError(f"transaction {txn_id} has no ipn_url; pass url=")
        body, headers = self.cp_ipn(
            txn_id, status=status, overrides=overrides, secret=secret, ipn_id=ipn_id
        )
        headers["User-Agent"] = "CoinPayments.net IPN Generator"
        return requests.post(
            target, data=body, headers=headers, timeout=self.notify_timeout
        )

    # --- routing (called from handler threads) -------------------------------

    def _cp_route(self, req: Request) -> Route | None:
        path = req.path
        if path == "/api.php":
            cmd = parse_form(req.body).get("cmd", "") if req.method == "POST" else ""
            return f"cp:{cmd or 'unknown'}", True, lambda: self._cp_api(req)
        for prefix, operation, page in (
            ("/cp/checkout/", "cp:checkout_page", self._cp_checkout_page),
            ("/cp/status/", "cp:status_page", self._cp_status_page),
        ):
            if path.startswith(prefix):
                key = unquote(path.removeprefix(prefix))
                return operation, False, lambda page=page, key=key: page(req, key)
        return None

    # --- CoinPayments API -----------------------------------------------------

    def _cp_api(self, req: Request) -> Reply:
        if req.method != "POST":
            return _cp_error("API calls must be POSTed")
        fields = parse_form(req.body)
        key = fields.get("key", "")
        if not hmac.compare_digest(key.encode(), self.cp_public_key.encode()):
            return _cp_error("Invalid API public key")
        expected = cp_signature(self.cp_private_key, req.body)
        given = req.headers.get("HMAC", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return _cp_error("HMAC signature does not match")
        if fields.get("version") != "1":
            return _cp_error("Invalid API version")
        # Optional, but when sent it must beat the last one seen for the key.
        if "nonce" in fields and not self._cp_accept_nonce(key, fields["nonce"]):
            with self._lock:
                self.cp_nonce_rejections += 1
            return _cp_error("Invalid nonce")
        if fields.get("format", "json") != "json":
            return _cp_error("Only format=json is supported")
        commands = {
            "create_transaction": self._cp_create_transaction,
            "get_tx_info": self._cp_get_tx_info,
            "get_tx_info_multi": self._cp_get_tx_info_multi,
        }
        command = commands.get(fields.get("cmd", ""))
        if command is None:
            return _cp_error("Unknown command")
        allowed = self.cp_permissions
        if allowed is not None and fields["cmd"] not in allowed:
            return _cp_error(CP_NO_PERMISSION)
        return command(fields)

    def _cp_accept_nonce(self, key: str, raw: str) -> bool:
        try:
            nonce = int(raw)
        except ValueError:
            return False
        with self._lock:
            last = self._cp_nonces.get(key)
            if last is not None and nonce <= last:
                return False
            self._cp_nonces[key] = nonce
            return True

    def _cp_create_transaction(self, fields: dict[str, str]) -> Reply:
        for name in ("amount", "currency1", "currency2", "buyer_email"):
            if not fields.get(name):
                return _cp_error(f"Missing required field: {name}")
        amount1 = parse_decimal(fields["amount"])
        if amount1 is None or amount1 <= 0:
            return _cp_error("Invalid amount")
        currency1 = fields["currency1"].upper()
        currency2 = fields["currency2"].upper()
        if currency1 not in CP_USD_RATES:
            return _cp_error(f"Unknown currency1: {currency1}")
        if currency2 not in CP_COINS:
            return _cp_error(f"Unknown or unsupported currency2: {currency2}")
        amount2 = (
            amount1 * CP_USD_RATES[currency1] / CP_USD_RATES[currency2]
        ).quantize(_COIN_PLACES, rounding=ROUND_HALF_UP)
        if amount2 <= 0:
            return _cp_error("Amount too small")
        txn_id = "CP" + random_alnum(22)
        now = int(time.time())
        timeout = int(self.cp_timeout)
        tx: dict[str, Any] = {
            "txn_id": txn_id,
            "invoice": fields.get("invoice", ""),
            "custom": fields.get("custom", ""),
            "item_name": fields.get("item_name", ""),
            "buyer_name": fields.get("buyer_name", ""),
            "email": fields["buyer_email"],
            "ipn_url": fields.get("ipn_url", ""),
            "success_url": fields.get("success_url", ""),
            "cancel_url": fields.get("cancel_url", ""),
            "currency1": currency1,
            "currency2": currency2,
            "amount1": fields["amount"],
            "amount2": amount2,
            "address": _deposit_address(currency2),
            "created": now,
            "expires": now + timeout,
            "status": 0,
            "received": Decimal("0").quantize(_COIN_PLACES),
            "recv_confirms": 0,
        }
        result = {
            "amount": _coin(amount2),
            "txn_id": txn_id,
            "address": tx["address"],
            "confirms_needed": str(CP_CONFIRMS_NEEDED),
            "timeout": timeout,
            "checkout_url": f"{self.url}/cp/checkout/{txn_id}",
            "status_url": f"{self.url}/cp/status/{txn_id}",
            "qrcode_url": f"{self.url}/cp/qrgen/{txn_id}.png",
        }
        if currency2 in CP_TAG_COINS:
            result["dest_tag"] = tx["dest_tag"] = str(secrets.randbelow(10**9))
        with self._lock:
            self._cp_txs[txn_id] = tx
        return _cp_ok(result)

    def _cp_tx_info(self, tx: dict[str, Any]) -> dict[str, Any]:
        return {
            "time_created": tx["created"],
            "time_expires": tx["expires"],
            "status": tx["status"],
            "status_text": _cp_status_text(tx["status"]),
            "type": "coins",
            "coin": tx["currency2"],
            "amount": int(tx["amount2"] * _SATOSHI),
            "amountf": _coin(tx["amount2"]),
            "received": int(tx["received"] * _SATOSHI),
            "receivedf": _coin(tx["received"]),
            "recv_confirms": tx["recv_confirms"],
            "payment_address": tx["address"],
        }

    def _cp_get_tx_info(self, fields: dict[str, str]) -> Reply:
        with self._lock:
            self.cp_ids_asked[fields.get("txid", "").strip()] += 1
            tx = self._cp_txs.get(fields.get("txid", "").strip())
            if tx is None:
                return _cp_error(CP_INVALID_TXID)
            return _cp_ok(self._cp_tx_info(tx))

    def _cp_get_tx_info_multi(self, fields: dict[str, str]) -> Reply:
        ids = [t.strip() for t in fields.get("txid", "").split("|") if t.strip()]
        if not ids:
            return _cp_error("No transaction IDs given")
        if len(ids) > CP_MAX_MULTI_IDS:
            return _cp_error("Too many transaction IDs")
        result: dict[str, Any] = {}
        with self._lock:
            self.cp_ids_asked.update(ids)
            for txn_id in ids:
                tx = self._cp_txs.get(txn_id)
                result[txn_id] = (
                    {"error": CP_INVALID_TXID}
                    if tx is None
                    else {"error": "ok", **self._cp_tx_info(tx)}
                )
        return _cp_ok(result)

    # --- CoinPayments hosted pages -----------------------------------------

    def _cp_checkout_page(self, req: Request, txn_id: str) -> Reply:
        with self._lock:
            tx = copy.deepcopy(self._cp_txs.get(txn_id))
        if tx is None:
            return html_page("Not found", "<p>Unknown transaction.</p>", 404)
        if req.method == "GET":
            return html_page(
                "CoinPayments checkout",
                f"<h1>Pay {_coin(tx['amount2'])} {escape(tx['currency2'])}</h1>"
                f"<p>Order total: {escape(tx['amount1'])} {escape(tx['currency1'])}"
                f" (invoice {escape(tx['invoice'])})</p>"
                f'<p>Send to: <code id="address">{escape(tx["address"])}</code></p>'
                f'<p>Status: <span id="status">{escape(_cp_status_text(tx["status"]))}'
                "</span></p>"
                f'<form method="post" action="/cp/checkout/{escape(txn_id)}">'
                '<button type="submit" name="action" value="pay">Pay</button> '
                '<button type="submit" name="action" value="cancel">Cancel</button>'
                "</form>",
            )
        if req.method != "POST":
            return Reply(405, b"Method Not Allowed", headers={"Allow": "GET, POST"})
        action = parse_form(req.body).get("action", "")
        if action not in ("pay", "cancel"):
            return html_page("Bad request", "<p>Choose Pay or Cancel.</p>", 400)
        if tx["status"] != 0:
            return html_page("Closed", "<p>This payment is no longer open.</p>", 409)
        paid = action == "pay"
        self.cp_set_status(txn_id, 100 if paid else -1)
        if tx["ipn_url"]:
            # Like the real service, a failing merchant endpoint never blocks the buyer.
            with contextlib.suppress(requests.RequestException):
                self.cp_send_ipn(txn_id)
        target = tx["success_url"] if paid else tx["cancel_url"]
        if target:
            return redirect(target)
        return html_page("Done", f"<p>{'Paid' if paid else 'Cancelled'}.</p>")

    def _cp_status_page(self, req: Request, txn_id: str) -> Reply:
        with self._lock:
            tx = copy.deepcopy(self._cp_txs.get(txn_id))
        if tx is None:
            return html_page("Not found", "<p>Unknown transaction.</p>", 404)
        return html_page(
            "Payment status",
            f"<h1>Payment {escape(txn_id)}</h1>"
            f'<p id="status">{escape(_cp_status_text(tx["status"]))}</p>'
            f"<p>Received {_coin(tx['received'])} of {_coin(tx['amount2'])} "
            f"{escape(tx['currency2'])}</p>",
        )


# --- helpers -----------------------------------------------------------------


def _cp_ok(result: Any) -> Reply:
    return json_reply({"error": "ok", "result": result})


def _cp_error(message: str) -> Reply:
    return json_reply({"error": message})


def _cp_status_text(status: int) -> str:
    return CP_STATUS_TEXT.get(status, "Unknown status")


def _coin(amount: Decimal) -> str:
    # Format explicitly: str(Decimal("0.00000001")) would give "1E-8".
    return f"{amount:.8f}"


def _deposit_address(coin: str) -> str:
    if coin in ("ETH", "USDT", "USDC"):
        return "0x" + secrets.token_hex(20)
    if coin in ("XRP", "TRX", "DOGE"):
        first = {"XRP": "r", "TRX": "T", "DOGE": "D"}[coin]
        return first + random_alnum(33)
    prefix = {"BTC": "bc1q", "BCH": "qq"}.get(coin, "ltc1q")
    return prefix + "".join(secrets.choice(_BECH32) for _ in range(38))
