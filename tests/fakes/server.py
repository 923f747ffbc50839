"""Fake CoinPayments v1 and MPGS Hosted Checkout APIs, served over loopback HTTP.

The fake keeps provider-side state, checks credentials the way the real services
do, serves minimal hosted pages, posts IPNs/notifications to our webhook URLs and
injects transport faults on demand. Integration tests and benchmarks drive it
over real sockets so that our HTTP client, timeouts and pooling are exercised.
"""

import base64
import contextlib
import copy
import hashlib
import hmac
import html
import json
import re
import secrets
import socket
import socketserver
import string
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

import requests

FAULT_KINDS = frozenset(
    {
        "latency",
        "timeout",
        "drop",
        "500",
        "502",
        "503",
        "429",
        "html",
        "truncated",
        "garbage",
    }
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
MPGS_MIN_VERSION = 63

_COIN_PLACES = Decimal("0.00000001")
_SATOSHI = Decimal(100_000_000)
_UPPER_ALNUM = string.ascii_uppercase + string.digits
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_MAX_BODY = 1_000_000
_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MPGS_PATH = re.compile(
    r"/api/rest/version/(?P<version>[^/]+)/merchant/(?P<merchant>[^/]+)/(?P<rest>.+)"
)
# ISO 4217 currencies whose minor unit is not cents; everything else gets 2
# places. The fake's own copy (a test checks it against gateways.money).
_MINOR_UNITS = {
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),  # fmt: skip
        0,
    ),
}
MPGS_DESCRIPTION_MAX = 127
# Refund answers tests may queue (fake.mpgs_refund_answers) instead of a success.
MPGS_REFUND_ANSWERS = frozenset({"rejected", "invalid", "declined", "busy"})

_TRUNCATED_JSON = b'{"error": "ok", "result": {"amount": "0.0016", "status": '
_GARBAGE = b"\x00\x9f\x92\x96\xff\xfe<<not json>>\x1f\x8b\x08"
_HTML_ERROR = (
    b"<!doctype html><html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to "
    b"service your request. Please try again later.</p></body></html>"
)


def cp_signature(secret: str, body: bytes | str) -> str:
    """Return the CoinPayments HMAC: lowercase hex HMAC-SHA512 of the raw body."""
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), raw, hashlib.sha512).hexdigest()


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: str
    headers: Message
    body: bytes


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    operation: str
    kind: str
    times: int
    seconds: float


class FakeProviderServer:
    """Serve fake CoinPayments and MPGS APIs on 127.0.0.1 from a daemon thread."""

    def __init__(
        self,
        cp_public_key: str = "cp-public",
        cp_private_key: str = "cp-private",
        cp_merchant_id: str = "cp-merchant",
        cp_ipn_secret: str = "cp-ipn-secret",
        mpgs_merchant_id: str = "TESTMERCHANT",
        mpgs_api_password: str = "mpgs-password",
        mpgs_webhook_secret: str = "mpgs-webhook-secret",
        mpgs_notification_url: str | None = None,
    ) -> None:
        self.cp_public_key = cp_public_key
        self.cp_private_key = cp_private_key
        self.cp_merchant_id = cp_merchant_id
        self.cp_ipn_secret = cp_ipn_secret
        self.mpgs_merchant_id = mpgs_merchant_id
        self.mpgs_api_password = mpgs_api_password
        self.mpgs_webhook_secret = mpgs_webhook_secret
        self.mpgs_notification_url = mpgs_notification_url

        # Tunables tests may set directly.
        self.latency: float = 0.0
        self.cp_timeout: int = 3600
        # Commands the API key may use; None allows every command.
        self.cp_permissions: set[str] | None = None
        self.notify_timeout: float = 10.0
        self.verbose: bool = False

        # Observations; guarded by _lock like all other state.
        self.calls: list[tuple[str, str]] = []
        # Calls refused for a nonce not above the key's last one. The nonce is
        # optional, as at CoinPayments: a call without one is never refused.
        self.cp_nonce_rejections = 0
        # How often each CoinPayments transaction id was asked about.
        self.cp_ids_asked: Counter[str] = Counter()
        self._blackholes: list[socket.socket] = []
        self.max_in_flight = 0
        self.connections_accepted = 0
        self.errors: list[str] = []
        self.mpgs_versions_seen: set[int] = set()
        self.mpgs_refunds_applied = 0
        # Every notification POST: (notification id, attempt, HTTP status or 0).
        self.mpgs_deliveries: list[tuple[str, int, int]] = []
        # Attempts per notification until a 2xx answer, and the pause between.
        self.mpgs_notify_attempts = 3
        self.mpgs_retry_delay = 0.0
        # Answers for the next refund PUTs (see MPGS_REFUND_ANSWERS).
        self.mpgs_refund_answers: list[str] = []
        self._mpgs_senders: list[threading.Thread] = []

        # Re-entrant so control methods can compose without a second lock.
        self._lock = threading.RLock()
        self._in_flight = 0
        self._faults: list[_Fault] = []
        self._cp_nonces: dict[str, int] = {}
        self._cp_txs: dict[str, dict[str, Any]] = {}
        self._mpgs_sessions: dict[str, dict[str, Any]] = {}
        self._mpgs_latest_session: dict[str, str] = {}
        self._mpgs_orders: dict[str, dict[str, Any]] = {}

        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._stopping = threading.Event()

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> Self:
        """Bind an ephemeral loopback port and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("FakeProviderServer is already running")
        self._stopping.clear()
        httpd = _HTTPServer(self)
        self._httpd = httpd
        self._url = f"http://127.0.0.1:{httpd.server_port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-provider-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        # Wakes handlers sleeping in latency/timeout faults.
        self._stopping.set()
        httpd.shutdown()
        # Idle keep-alive handlers block in recv(); closing their sockets ends them.
        httpd.close_open_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
        self._url = None
        for sock in self._blackholes:
            sock.close()
        self._blackholes.clear()

    def blackhole_url(self) -> str:
        """Return a loopback URL whose connections never complete (connect timeout).

        A listening socket with a backlog of one, already filled and never
        accepted: the kernel drops further SYNs, so clients time out while
        connecting, as with a provider host that is unreachable.
        """
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        self._blackholes.append(listener)
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            self._blackholes.append(filler)
        time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> Self:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._url is None:
            raise RuntimeError("FakeProviderServer is not running")
        return self._url

    # --- observation and fault injection --------------------------------------

    @property
    def in_flight(self) -> int:
        """Return how many requests are being handled right now."""
        with self._lock:
            return self._in_flight

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
            "mpgs": {
                "api_base_url": self.url,
                "api_version": 100,
                "merchant_id": self.mpgs_merchant_id,
                "api_password": self.mpgs_api_password,
                "webhook_secret": self.mpgs_webhook_secret,
                "checkout_url": "",
            },
        }

    def count(self, operation: str) -> int:
        """Return how many requests for `operation` arrived."""
        with self._lock:
            return sum(1 for op, _ in self.calls if op == operation)

    def reset_calls(self) -> None:
        """Forget recorded calls and restart the concurrency/connection counters."""
        with self._lock:
            self.calls.clear()
            self.cp_nonce_rejections = 0
            self.cp_ids_asked.clear()
            self.max_in_flight = self._in_flight
            self.connections_accepted = 0

    def add_fault(
        self, operation: str, kind: str, *, times: int = 1, seconds: float = 0.0
    ) -> None:
        """Make the next `times` requests for `operation` (or "*") fail as `kind`."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {FAULT_KINDS}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(_Fault(operation, kind, times, seconds))

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[tuple[str, str, int]]:
        """Return pending faults as (operation, kind, times left)."""
        with self._lock:
            return [(f.operation, f.kind, f.times) for f in self._faults]

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
                "deposit_id": "CD" + _random_alnum(22),
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
                "id": "CW" + _random_alnum(22),
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
                "txn_id": "CP" + _random_alnum(22),
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

    # --- MPGS control ---------------------------------------------------------

    def mpgs_pay(
        self,
        order_id: str,
        *,
        approve: bool = True,
        amount: Decimal | str | None = None,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Pay or decline the order's newest session, notify, and return the order.

        `notify=False` loses the notification (the merchant learns by polling).
        """
        with self._lock:
            session_id = self._mpgs_latest_session[order_id]
        # `amount` lets tests pay a sum other than the session's (a mismatch).
        self._mpgs_record_payment(session_id, approve=approve, amount=amount)
        if notify:
            self._mpgs_notify_quietly(order_id)
        order = self.mpgs_order(order_id)
        assert order is not None
        return order

    def mpgs_refund_externally(
        self, order_id: str, amount: Decimal | str
    ) -> dict[str, Any]:
        """Refund as if done in the merchant portal (not in mpgs_refunds_applied)."""
        with self._lock:
            order = self._mpgs_orders[order_id]
            value = _mpgs_amount(str(amount), order["currency"])
            if value is None:
                raise ValueError(f"invalid refund amount {amount!r}")
            if value > _mpgs_available(order):
                raise ValueError("Requested refund amount exceeds available balance")
            txn = self._mpgs_add_refund(order, "EXT-" + secrets.token_hex(6), value)
            return copy.deepcopy(txn["response"])

    def mpgs_authorize(self, order_id: str) -> dict[str, Any]:
        """Authorize the newest session's amount without capturing it (AUTHORIZED)."""
        with self._lock:
            session_id = self._mpgs_latest_session[order_id]
        self._mpgs_record_payment(session_id, approve=True, txn_type="AUTHORIZATION")
        self._mpgs_notify_quietly(order_id)
        return self._mpgs_view(order_id)

    def mpgs_void(self, order_id: str) -> dict[str, Any]:
        """Void the order's payment (same day) or authorisation: CANCELLED, notify.

        The captured (or authorised) total drops to 0, as a VOID_PAYMENT (or
        VOID_AUTHORIZATION) transaction records.
        """
        with self._lock:
            order = self._mpgs_orders[order_id]
            totals = _mpgs_totals(order)
            captured = totals["captured"]
            kind = "VOID_PAYMENT" if captured > 0 else "VOID_AUTHORIZATION"
            amount = captured if captured > 0 else totals["authorized"]
            if amount <= 0:
                raise ValueError("nothing to void")
            txn: dict[str, Any] = {
                "id": "VOID-" + secrets.token_hex(5),
                "type": kind,
                "amount": amount,
                "currency": order["currency"],
                "result": "SUCCESS",
                "gatewayCode": "APPROVED",
                "timeOfRecord": _now_iso(),
            }
            order["transactions"].append(txn)
            order["lastUpdatedTime"] = txn["timeOfRecord"]
        self._mpgs_notify_quietly(order_id)
        return self._mpgs_view(order_id)

    def mpgs_dispute(self, order_id: str) -> dict[str, Any]:
        """Mark a paid order as disputed by the payer (DISPUTED), and notify."""
        with self._lock:
            self._mpgs_orders[order_id]["disputed"] = True
        self._mpgs_notify_quietly(order_id)
        return self._mpgs_view(order_id)

    def mpgs_chargeback(
        self, order_id: str, amount: Decimal | str | None = None
    ) -> dict[str, Any]:
        """Record a processed chargeback (CHARGEBACK_PROCESSED), and notify."""
        with self._lock:
            order = self._mpgs_orders[order_id]
            value = _mpgs_totals(order)["captured"] if amount is None else amount
            txn: dict[str, Any] = {
                "id": "CB-" + secrets.token_hex(5),
                "type": "CHARGEBACK",
                "amount": Decimal(str(value)),
                "currency": order["currency"],
                "result": "SUCCESS",
                "gatewayCode": "APPROVED",
                "timeOfRecord": _now_iso(),
            }
            order["transactions"].append(txn)
            order["lastUpdatedTime"] = txn["timeOfRecord"]
        self._mpgs_notify_quietly(order_id)
        return self._mpgs_view(order_id)

    def mpgs_wait_notifications(self, timeout: float = 10.0) -> None:
        """Wait for notifications sent in the background (after refunds)."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                senders = [t for t in self._mpgs_senders if t.is_alive()]
                self._mpgs_senders = senders
            if not senders:
                return
            senders[0].join(max(0.0, end - time.monotonic()))
            if time.monotonic() >= end:
                raise TimeoutError("MPGS notifications still being sent")

    def mpgs_order(self, order_id: str) -> dict[str, Any] | None:
        """Return the order as Retrieve Order would, or None before any payment."""
        with self._lock:
            order = self._mpgs_orders.get(order_id)
            return None if order is None else self._mpgs_order_view(order)

    def mpgs_session(self, session_id: str) -> dict[str, Any]:
        """Return a copy of a stored checkout session."""
        with self._lock:
            return copy.deepcopy(self._mpgs_sessions[session_id])

    def mpgs_notification(
        self,
        order_id: str,
        *,
        secret: str | None = None,
        notification_id: str | None = None,
        body_overrides: Mapping[str, Any] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Build a webhook notification about the order's latest transaction."""
        with self._lock:
            order = self._mpgs_orders[order_id]
            txn = order["transactions"][-1]
            totals = _mpgs_totals(order)
            payload: dict[str, Any] = {
                "merchant": self.mpgs_merchant_id,
                "order": {
                    "id": order["id"],
                    "amount": float(order["amount"]),
                    "currency": order["currency"],
                    "status": totals["status"],
                    "totalCapturedAmount": float(totals["captured"]),
                    "totalRefundedAmount": float(totals["refunded"]),
                },
                "transaction": _mpgs_txn_fields(txn),
                "result": txn["result"],
                "response": {"gatewayCode": txn["gatewayCode"]},
                "timeOfRecord": txn["timeOfRecord"],
            }
        if body_overrides:
            payload = _deep_merge(payload, body_overrides)
        headers = {
            "Content-Type": "application/json",
            "X-Notification-Secret": (
                self.mpgs_webhook_secret if secret is None else secret
            ),
            "X-Notification-Id": notification_id or str(uuid.uuid4()),
            "X-Notification-Attempt": "1",
        }
        return json.dumps(payload).encode(), headers

    def mpgs_send_notification(
        self,
        order_id: str,
        *,
        url: str | None = None,
        secret: str | None = None,
        notification_id: str | None = None,
        body_overrides: Mapping[str, Any] | None = None,
        attempts: int = 1,
    ) -> requests.Response:
        """POST a notification to `url`, the order's notificationUrl or the default.

        Not answered 2xx, it is sent again (same X-Notification-Id, the
        X-Notification-Attempt header counting up) up to `attempts` times in all.
        MPGS publishes no retry schedule; this is the fake's choice.
        """
        with self._lock:
            target = (
                url
                or self._mpgs_orders[order_id]["notificationUrl"]
                or self.mpgs_notification_url
            )
        if not target:
            raise ValueError(f"no notification URL known for order {order_id}")
        body, headers = self.mpgs_notification(
            order_id,
            secret=secret,
            notification_id=notification_id,
            body_overrides=body_overrides,
        )
        for attempt in range(1, max(1, attempts) + 1):
            if attempt > 1:
                self._pause(self.mpgs_retry_delay)
            headers["X-Notification-Attempt"] = str(attempt)
            try:
                response = requests.post(
                    target, data=body, headers=headers, timeout=self.notify_timeout
                )
            except requests.RequestException:
                self._mpgs_delivered(headers, attempt, 0)
                if attempt >= attempts:
                    raise
                continue
            self._mpgs_delivered(headers, attempt, response.status_code)
            if 200 <= response.status_code < 300:
                break
        return response

    def _mpgs_delivered(self, headers: dict[str, str], attempt: int, status: int):
        with self._lock:
            self.mpgs_deliveries.append((headers["X-Notification-Id"], attempt, status))

    # --- request plumbing (called from handler threads) ----------------------

    def _connection_accepted(self) -> None:
        with self._lock:
            self.connections_accepted += 1

    def _begin(self, operation: str, path: str) -> None:
        with self._lock:
            self.calls.append((operation, path))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _take_fault(self, operation: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation in (operation, "*"):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return _Fault(fault.operation, fault.kind, 1, fault.seconds)
        return None

    def _pause(self, seconds: float) -> None:
        # An event wait rather than sleep() so stop() is never held up by a fault.
        if seconds > 0:
            self._stopping.wait(seconds)

    def _record_error(self) -> None:
        text = traceback.format_exc()
        with self._lock:
            self.errors.append(text)
        print(text, file=sys.stderr)

    def _route(self, req: _Request) -> tuple[str, bool, Callable[[], _Reply]]:
        """Return (operation, counts as API call, handler) for a request."""
        path = req.path
        if path == "/api.php":
            cmd = _form(req.body).get("cmd", "") if req.method == "POST" else ""
            return f"cp:{cmd or 'unknown'}", True, lambda: self._cp_api(req)
        if match := _MPGS_PATH.fullmatch(path):
            operation, handler = self._mpgs_route(req, match["rest"])
            version, merchant = match["version"], unquote(match["merchant"])

            def guarded() -> _Reply:
                return self._mpgs_guard(req, version, merchant) or handler()

            return operation, True, guarded
        for prefix, operation, page in (
            ("/cp/checkout/", "cp:checkout_page", self._cp_checkout_page),
            ("/cp/status/", "cp:status_page", self._cp_status_page),
            ("/checkout/pay/", "mpgs:pay_page", self._mpgs_pay_page),
        ):
            if path.startswith(prefix):
                key = unquote(path.removeprefix(prefix))
                return operation, False, lambda page=page, key=key: page(req, key)
        if path == "/static/checkout/checkout.min.js" and req.method == "GET":
            return "mpgs:checkout_js", False, self._mpgs_checkout_js
        return "unknown", False, lambda: _Reply(404, b"Not Found")

    # --- CoinPayments API -----------------------------------------------------

    def _cp_api(self, req: _Request) -> _Reply:
        if req.method != "POST":
            return _cp_error("API calls must be POSTed")
        fields = _form(req.body)
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

    def _cp_create_transaction(self, fields: dict[str, str]) -> _Reply:
        for name in ("amount", "currency1", "currency2", "buyer_email"):
            if not fields.get(name):
                return _cp_error(f"Missing required field: {name}")
        amount1 = _decimal(fields["amount"])
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
        txn_id = "CP" + _random_alnum(22)
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

    def _cp_get_tx_info(self, fields: dict[str, str]) -> _Reply:
        with self._lock:
            self.cp_ids_asked[fields.get("txid", "").strip()] += 1
            tx = self._cp_txs.get(fields.get("txid", "").strip())
            if tx is None:
                return _cp_error(CP_INVALID_TXID)
            return _cp_ok(self._cp_tx_info(tx))

    def _cp_get_tx_info_multi(self, fields: dict[str, str]) -> _Reply:
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

    def _cp_checkout_page(self, req: _Request, txn_id: str) -> _Reply:
        with self._lock:
            tx = copy.deepcopy(self._cp_txs.get(txn_id))
        if tx is None:
            return _page("Not found", "<p>Unknown transaction.</p>", 404)
        if req.method == "GET":
            return _page(
                "CoinPayments checkout",
                f"<h1>Pay {_coin(tx['amount2'])} {_e(tx['currency2'])}</h1>"
                f"<p>Order total: {_e(tx['amount1'])} {_e(tx['currency1'])}"
                f" (invoice {_e(tx['invoice'])})</p>"
                f'<p>Send to: <code id="address">{_e(tx["address"])}</code></p>'
                f'<p>Status: <span id="status">{_e(_cp_status_text(tx["status"]))}'
                "</span></p>"
                f'<form method="post" action="/cp/checkout/{_e(txn_id)}">'
                '<button type="submit" name="action" value="pay">Pay</button> '
                '<button type="submit" name="action" value="cancel">Cancel</button>'
                "</form>",
            )
        if req.method != "POST":
            return _Reply(405, b"Method Not Allowed", headers={"Allow": "GET, POST"})
        action = _form(req.body).get("action", "")
        if action not in ("pay", "cancel"):
            return _page("Bad request", "<p>Choose Pay or Cancel.</p>", 400)
        if tx["status"] != 0:
            return _page("Closed", "<p>This payment is no longer open.</p>", 409)
        paid = action == "pay"
        self.cp_set_status(txn_id, 100 if paid else -1)
        if tx["ipn_url"]:
            # Like the real service, a failing merchant endpoint never blocks the buyer.
            with contextlib.suppress(requests.RequestException):
                self.cp_send_ipn(txn_id)
        target = tx["success_url"] if paid else tx["cancel_url"]
        if target:
            return _redirect(target)
        return _page("Done", f"<p>{'Paid' if paid else 'Cancelled'}.</p>")

    def _cp_status_page(self, req: _Request, txn_id: str) -> _Reply:
        with self._lock:
            tx = copy.deepcopy(self._cp_txs.get(txn_id))
        if tx is None:
            return _page("Not found", "<p>Unknown transaction.</p>", 404)
        return _page(
            "Payment status",
            f"<h1>Payment {_e(txn_id)}</h1>"
            f'<p id="status">{_e(_cp_status_text(tx["status"]))}</p>'
            f"<p>Received {_coin(tx['received'])} of {_coin(tx['amount2'])} "
            f"{_e(tx['currency2'])}</p>",
        )

    # --- MPGS API ---------------------------------------------------------

    def _mpgs_route(self, req: _Request, rest: str) -> tuple[str, Callable[[], _Reply]]:
        parts = [unquote(p) for p in rest.split("/")]
        method = req.method
        if parts == ["session"] and method == "POST":
            return "mpgs:session", lambda: self._mpgs_create_session(req)
        if len(parts) == 2 and parts[0] == "order" and method == "GET":
            return "mpgs:order", lambda: self._mpgs_get_order(parts[1])
        if len(parts) == 4 and parts[0] == "order" and parts[2] == "transaction":
            order_id, txn_id = parts[1], parts[3]
            if method == "PUT":
                return "mpgs:refund", lambda: self._mpgs_refund(req, order_id, txn_id)
            if method == "GET":
                return "mpgs:transaction", lambda: self._mpgs_get_txn(order_id, txn_id)
        return "mpgs:unknown", lambda: _mpgs_error(
            f"Unsupported request: {method} {rest}", status=404
        )

    def _mpgs_guard(self, req: _Request, version: str, merchant: str) -> _Reply | None:
        """Return an error reply when the version or credentials are unacceptable."""
        number = int(version) if version.isdigit() else 0
        if number < MPGS_MIN_VERSION:
            return _mpgs_error(f"Unsupported API version '{version}'", field="version")
        with self._lock:
            self.mpgs_versions_seen.add(number)
        user, password = _basic_auth(req.headers.get("Authorization", ""))
        checks = (
            (merchant, self.mpgs_merchant_id),
            (user, f"merchant.{self.mpgs_merchant_id}"),
            (password, self.mpgs_api_password),
        )
        # Evaluate every comparison so timing does not reveal which part failed.
        matches = [hmac.compare_digest(a.encode(), b.encode()) for a, b in checks]
        if all(matches):
            return None
        return _json_reply(
            {
                "result": "ERROR",
                "error": {
                    "cause": "INVALID_REQUEST",
                    "explanation": "Invalid credentials.",
                },
            },
            401,
            headers={"WWW-Authenticate": 'Basic realm="fake-mpgs"'},
        )

    def _mpgs_create_session(self, req: _Request) -> _Reply:
        payload, problem = _json_object(req.body)
        if problem is not None:
            return problem
        if payload.get("apiOperation") != "INITIATE_CHECKOUT":
            return _mpgs_invalid("apiOperation", payload.get("apiOperation"))
        interaction = payload.get("interaction")
        if not isinstance(interaction, dict):
            return _mpgs_missing("interaction")
        order = payload.get("order")
        if not isinstance(order, dict):
            return _mpgs_missing("order")
        if interaction.get("operation") != "PURCHASE":
            return _mpgs_invalid("interaction.operation", interaction.get("operation"))
        return_url = interaction.get("returnUrl")
        if return_url is None:
            return _mpgs_missing("interaction.returnUrl")
        if not _is_http_url(return_url):
            return _mpgs_invalid("interaction.returnUrl", return_url)
        order_id = order.get("id")
        if order_id is None:
            return _mpgs_missing("order.id")
        if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
            return _mpgs_invalid("order.id", order_id)
        currency = order.get("currency")
        if currency is None:
            return _mpgs_missing("order.currency")
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            return _mpgs_invalid("order.currency", currency)
        if order.get("amount") is None:
            return _mpgs_missing("order.amount")
        amount = _mpgs_amount(order["amount"], currency)
        if amount is None:
            return _mpgs_invalid("order.amount", order["amount"])
        notification_url = order.get("notificationUrl")
        if notification_url is not None and not _is_http_url(notification_url):
            return _mpgs_invalid("order.notificationUrl", notification_url)
        description = order.get("description", "")
        if not isinstance(description, str) or len(description) > MPGS_DESCRIPTION_MAX:
            return _mpgs_invalid("order.description", description)
        merchant = interaction.get("merchant")
        merchant_name = merchant.get("name") if isinstance(merchant, dict) else None
        if not merchant_name:
            return _mpgs_missing("interaction.merchant.name")
        session = {
            "id": "SESSION0002" + _random_alnum(20),
            "version": secrets.token_hex(5),
            "successIndicator": secrets.token_hex(8),
            "orderId": order_id,
            "amount": amount,
            "currency": currency,
            "description": str(order.get("description", "")),
            "reference": order.get("reference"),
            "returnUrl": return_url,
            "notificationUrl": notification_url,
            "merchantName": merchant_name,
            "creationTime": _now_iso(),
            "completed": False,
        }
        with self._lock:
            self._mpgs_sessions[session["id"]] = session
            self._mpgs_latest_session[order_id] = session["id"]
        return _json_reply(
            {
                "merchant": self.mpgs_merchant_id,
                "result": "SUCCESS",
                "session": {
                    "id": session["id"],
                    "updateStatus": "SUCCESS",
                    "version": session["version"],
                },
                "successIndicator": session["successIndicator"],
            },
            201,
        )

    def _mpgs_get_order(self, order_id: str) -> _Reply:
        with self._lock:
            order = self._mpgs_orders.get(order_id)
            if order is None:
                return _mpgs_no_order(order_id)
            return _json_reply(self._mpgs_order_view(order))

    def _mpgs_refund(self, req: _Request, order_id: str, txn_id: str) -> _Reply:
        payload, problem = _json_object(req.body)
        if problem is not None:
            return problem
        if not _ORDER_ID.fullmatch(txn_id):
            return _mpgs_invalid("transactionid", txn_id)
        if payload.get("apiOperation") != "REFUND":
            return _mpgs_invalid("apiOperation", payload.get("apiOperation"))
        details = payload.get("transaction")
        if not isinstance(details, dict):
            return _mpgs_missing("transaction")
        with self._lock:
            order = self._mpgs_orders.get(order_id)
            if order is None:
                return _mpgs_no_order(order_id)
            existing = _find_txn(order, txn_id)
            if existing is not None:
                if existing["type"] == "REFUND":
                    # Idempotent replay: same answer, no second refund.
                    return _json_reply(existing["response"])
                return _mpgs_error(
                    f"Value '{txn_id}' is invalid. Transaction already exists",
                    field="transactionid",
                )
            currency = details.get("currency")
            if currency is None:
                return _mpgs_missing("transaction.currency")
            if currency != order["currency"]:
                return _mpgs_invalid("transaction.currency", currency)
            if details.get("amount") is None:
                return _mpgs_missing("transaction.amount")
            amount = _mpgs_amount(details["amount"], currency)
            if amount is None:
                return _mpgs_invalid("transaction.amount", details["amount"])
            if amount > _mpgs_available(order):
                return _mpgs_error(
                    "Requested refund amount exceeds available balance",
                    field="transaction.amount",
                )
            answer = self.mpgs_refund_answers.pop(0) if self.mpgs_refund_answers else ""
            refused = _mpgs_refund_refusal(answer)
            if refused is not None:
                return refused  # nothing recorded: the refund was not done
            txn = self._mpgs_add_refund(
                order, txn_id, amount, declined=answer == "declined"
            )
            self.mpgs_refunds_applied += answer != "declined"
            reply = _json_reply(txn["response"])
        # Like the gateway: a notification once the Refund completes, sent
        # after the answer (the caller is not kept waiting for its delivery).
        self._mpgs_notify_in_background(order_id)
        return reply

    def _mpgs_get_txn(self, order_id: str, txn_id: str) -> _Reply:
        with self._lock:
            order = self._mpgs_orders.get(order_id)
            if order is None:
                return _mpgs_no_order(order_id)
            txn = _find_txn(order, txn_id)
            if txn is None:
                return _mpgs_error(
                    f"Value '{txn_id}' is invalid. "
                    "No transaction exists with this transaction id",
                    field="transactionid",
                    validation_type="INVALID",
                )
            return _json_reply(self._mpgs_txn_response(order, txn))

    # --- MPGS state -------------------------------------------------------

    def _mpgs_record_payment(
        self,
        session_id: str,
        *,
        approve: bool,
        amount: Decimal | str | None = None,
        txn_type: str = "PAYMENT",
    ) -> dict[str, Any]:
        """Record a PAYMENT (or AUTHORIZATION) for the session's order."""
        with self._lock:
            session = self._mpgs_sessions[session_id]
            paid = session["amount"] if amount is None else Decimal(str(amount))
            order_id = session["orderId"]
            order = self._mpgs_orders.get(order_id)
            if order is None:
                order = {
                    "id": order_id,
                    "creationTime": _now_iso(),
                    "notificationUrl": None,
                    "transactions": [],
                }
                self._mpgs_orders[order_id] = order
            # The order reflects the attempt being paid, so a mismatch is visible
            # both in order.amount and in the captured total.
            order["amount"] = paid
            order["currency"] = session["currency"]
            order["description"] = session["description"]
            order["reference"] = session["reference"]
            order["notificationUrl"] = (
                session["notificationUrl"] or order["notificationUrl"]
            )
            txn: dict[str, Any] = {
                "id": secrets.token_hex(5),
                "type": txn_type,
                "amount": paid,
                "currency": session["currency"],
                "result": "SUCCESS" if approve else "FAILURE",
                "gatewayCode": "APPROVED" if approve else "DECLINED",
                "timeOfRecord": _now_iso(),
            }
            order["transactions"].append(txn)
            order["lastUpdatedTime"] = txn["timeOfRecord"]
            if approve:
                session["completed"] = True
            return copy.deepcopy(session)

    def _mpgs_add_refund(
        self, order: dict[str, Any], txn_id: str, amount: Decimal, declined=False
    ) -> dict[str, Any]:
        txn: dict[str, Any] = {
            "id": txn_id,
            "type": "REFUND",
            "amount": amount,
            "currency": order["currency"],
            "result": "FAILURE" if declined else "SUCCESS",
            "gatewayCode": "DECLINED" if declined else "APPROVED",
            "timeOfRecord": _now_iso(),
        }
        order["transactions"].append(txn)
        order["lastUpdatedTime"] = txn["timeOfRecord"]
        txn["response"] = self._mpgs_txn_response(order, txn)
        return txn

    def _mpgs_notify_quietly(self, order_id: str) -> None:
        with self._lock:
            known = self._mpgs_orders[order_id]["notificationUrl"]
        if not (known or self.mpgs_notification_url):
            return
        # Delivery problems are the receiver's to report; the payer is unaffected.
        with contextlib.suppress(requests.RequestException):
            self.mpgs_send_notification(order_id, attempts=self.mpgs_notify_attempts)

    def _mpgs_notify_in_background(self, order_id: str) -> None:
        sender = threading.Thread(
            target=self._mpgs_notify_quietly,
            args=(order_id,),
            name="fake-mpgs-notify",
            daemon=True,
        )
        with self._lock:
            self._mpgs_senders.append(sender)
        sender.start()

    def _mpgs_view(self, order_id: str) -> dict[str, Any]:
        order = self.mpgs_order(order_id)
        assert order is not None
        return order

    def _mpgs_order_summary(self, order: dict[str, Any]) -> dict[str, Any]:
        totals = _mpgs_totals(order)
        summary = {
            "id": order["id"],
            "amount": float(order["amount"]),
            "currency": order["currency"],
            "status": totals["status"],
            "creationTime": order["creationTime"],
            "totalAuthorizedAmount": float(totals["authorized"]),
            "totalCapturedAmount": float(totals["captured"]),
            "totalRefundedAmount": float(totals["refunded"]),
        }
        if totals["chargeback"] > 0:
            summary["chargeback"] = {
                "amount": float(totals["chargeback"]),
                "currency": order["currency"],
            }
        if order["description"]:
            summary["description"] = order["description"]
        if order["reference"] is not None:
            summary["reference"] = order["reference"]
        return summary

    def _mpgs_order_view(self, order: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._mpgs_order_summary(order),
            "result": "SUCCESS",
            "merchant": self.mpgs_merchant_id,
            "lastUpdatedTime": order["lastUpdatedTime"],
            "transaction": [
                {
                    "transaction": _mpgs_txn_fields(txn),
                    "result": txn["result"],
                    "response": {"gatewayCode": txn["gatewayCode"]},
                    "timeOfRecord": txn["timeOfRecord"],
                }
                for txn in order["transactions"]
            ],
        }

    def _mpgs_txn_response(
        self, order: dict[str, Any], txn: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "merchant": self.mpgs_merchant_id,
            "result": txn["result"],
            "transaction": _mpgs_txn_fields(txn),
            "response": {"gatewayCode": txn["gatewayCode"]},
            "order": self._mpgs_order_summary(order),
            "timeOfRecord": txn["timeOfRecord"],
        }

    # --- MPGS hosted pages --------------------------------------------------

    def _mpgs_checkout_js(self) -> _Reply:
        script = (
            "(function () {\n"
            f"  var base = {json.dumps(self.url)};\n"
            "  var config = null;\n"
            "  window.Checkout = {\n"
            "    configure: function (cfg) { config = cfg; },\n"
            "    showPaymentPage: function () {\n"
            "      if (!config || !config.session || !config.session.id) {\n"
            '        throw new Error("Checkout.configure({session: {id}}) first");\n'
            "      }\n"
            "      window.location.href = base + '/checkout/pay/' +\n"
            "        encodeURIComponent(config.session.id);\n"
            "    }\n"
            "  };\n"
            "})();\n"
        )
        return _Reply(200, script.encode(), "application/javascript; charset=utf-8")

    def _mpgs_pay_page(self, req: _Request, session_id: str) -> _Reply:
        with self._lock:
            session = copy.deepcopy(self._mpgs_sessions.get(session_id))
        if session is None:
            return _page("Not found", "<p>Unknown or expired session.</p>", 404)
        if req.method == "GET":
            places = _MINOR_UNITS.get(session["currency"], 2)
            return _page(
                "Hosted Checkout",
                f"<h1>{_e(session['merchantName'] or 'Merchant')}</h1>"
                f'<p>Amount: <span id="amount">{session["amount"]:.{places}f}'
                f" {_e(session['currency'])}</span></p>"
                f"<p>{_e(session['description'])}</p>"
                f'<form method="post" action="/checkout/pay/{_e(session_id)}">'
                '<button type="submit" name="action" value="pay">Pay</button> '
                '<button type="submit" name="action" value="decline">Decline</button>'
                "</form>",
            )
        if req.method != "POST":
            return _Reply(405, b"Method Not Allowed", headers={"Allow": "GET, POST"})
        action = _form(req.body).get("action", "")
        if action not in ("pay", "decline"):
            return _page("Bad request", "<p>Choose Pay or Decline.</p>", 400)
        if session["completed"]:
            return _page("Already paid", "<p>This session was already used.</p>", 409)
        approve = action == "pay"
        self._mpgs_record_payment(session_id, approve=approve)
        self._mpgs_notify_quietly(session["orderId"])
        indicator = session["successIndicator"]
        if not approve:
            while indicator == session["successIndicator"]:
                indicator = secrets.token_hex(8)
        location = _append_query(
            session["returnUrl"],
            {"resultIndicator": indicator, "sessionVersion": session["version"]},
        )
        return _redirect(location)


class _Handler(BaseHTTPRequestHandler):
    """Translate HTTP requests into FakeProviderServer calls."""

    protocol_version = "HTTP/1.1"
    server: "_HTTPServer"

    def do_GET(self) -> None:
        """Handle a GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Handle a POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Handle a PUT."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Handle a DELETE."""
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet unless the fake is verbose."""
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def _dispatch(self) -> None:
        fake = self.server.fake
        body = self._read_body()
        if body is None:
            return
        parts = urlsplit(self.path)
        req = _Request(self.command, parts.path, parts.query, self.headers, body)
        operation, is_api, handler = fake._route(req)
        fake._begin(operation, self.path)
        try:
            fault = fake._take_fault(operation)
            if is_api:
                fake._pause(fake.latency)
            if fault is not None and fault.kind == "latency":
                fake._pause(fault.seconds)
                fault = None
            if fault is not None:
                reply = self._fault_reply(fault)
            else:
                try:
                    reply = handler()
                except Exception:
                    fake._record_error()
                    reply = _Reply(500, b"fake server bug; see .errors")
        finally:
            # Leave before replying so in_flight is exact once the client has it.
            fake._end()
        if reply is None:
            # No reply at all: the server closes the socket when we return.
            self.close_connection = True
        else:
            self._send(reply)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            # Neither provider accepts chunked uploads, and our client never sends them.
            self.close_connection = True
            self._send(_Reply(411, b"Length Required"))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._send(_Reply(400, b"Bad Content-Length"))
            return None
        return self.rfile.read(length) if length else b""

    def _fault_reply(self, fault: _Fault) -> _Reply | None:
        """Return the broken reply for a fault, or None to answer nothing."""
        kind = fault.kind
        if kind == "timeout":
            self.server.fake._pause(fault.seconds)
            return None
        if kind == "drop":
            return None
        if kind in ("500", "502", "503", "429"):
            status = HTTPStatus(int(kind))
            headers = {"Retry-After": "1"} if kind == "429" else {}
            text = f"{status.value} {status.phrase}".encode()
            return _Reply(status.value, text, headers=headers)
        if kind == "html":
            return _Reply(200, _HTML_ERROR, "text/html; charset=utf-8")
        if kind == "truncated":
            return _Reply(200, _TRUNCATED_JSON, "application/json")
        return _Reply(200, _GARBAGE, "application/json")

    def _send(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except OSError:
            # The client went away (e.g. it timed out first); nothing left to do.
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    """Threaded loopback server that tracks its connections."""

    daemon_threads = True
    # Joining handler threads on close would hang on idle keep-alive connections.
    block_on_close = False
    # Benchmarks open many connections at once; the default backlog of 5 drops SYNs.
    request_queue_size = 128

    def __init__(self, fake: FakeProviderServer) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup of the address."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection with Nagle disabled."""
        sock, address = super().get_request()
        # Without this, Nagle plus delayed ACK adds ~40 ms to each keep-alive reply.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._open_lock:
            self._open.add(sock)
        self.fake._connection_accepted()
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Shut down every connection still open."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


# --- helpers -----------------------------------------------------------------


def _json_reply(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> _Reply:
    return _Reply(
        status, json.dumps(payload).encode(), "application/json", headers or {}
    )


def _page(title: str, inner: str, status: int = 200) -> _Reply:
    document = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title></head><body>{inner}</body></html>"
    )
    return _Reply(status, document.encode(), "text/html; charset=utf-8")


def _redirect(location: str) -> _Reply:
    return _Reply(303, b"", headers={"Location": location})


def _cp_ok(result: Any) -> _Reply:
    return _json_reply({"error": "ok", "result": result})


def _cp_error(message: str) -> _Reply:
    return _json_reply({"error": message})


def _cp_status_text(status: int) -> str:
    return CP_STATUS_TEXT.get(status, "Unknown status")


def _mpgs_error(
    explanation: str,
    *,
    field: str | None = None,
    validation_type: str | None = None,
    status: int = 400,
    cause: str = "INVALID_REQUEST",
) -> _Reply:
    error: dict[str, str] = {"cause": cause, "explanation": explanation}
    if field is not None:
        error["field"] = field
    if validation_type is not None:
        error["validationType"] = validation_type
    return _json_reply({"result": "ERROR", "error": error}, status)


def _mpgs_missing(name: str) -> _Reply:
    return _mpgs_error(
        f"Missing parameter '{name}'", field=name, validation_type="MISSING"
    )


def _mpgs_invalid(name: str, value: Any) -> _Reply:
    return _mpgs_error(
        f"Value '{value}' is invalid.", field=name, validation_type="INVALID"
    )


def _mpgs_no_order(order_id: str) -> _Reply:
    return _mpgs_error(
        f"Value '{order_id}' is invalid. No order exists with this order id",
        field="orderid",
        validation_type="INVALID",
    )


def _mpgs_amount(value: Any, currency: str) -> Decimal | None:
    """Parse a positive amount with no more decimals than the currency allows."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    number = _decimal(str(value))
    if number is None or not number.is_finite() or number <= 0:
        return None
    places = _MINOR_UNITS.get(currency, 2)
    exponent = number.as_tuple().exponent
    # Written with more decimals than the currency has ("1000.0" JPY, "10.5"
    # ISK) is refused, even when they are zeros.
    if not isinstance(exponent, int) or -exponent > places:
        return None
    try:
        return number.quantize(Decimal(1).scaleb(-places))
    except InvalidOperation:
        return None


def _mpgs_totals(order: dict[str, Any]) -> dict[str, Any]:
    ok = [t for t in order["transactions"] if t["result"] == "SUCCESS"]

    def total(kind: str) -> Decimal:
        return sum((t["amount"] for t in ok if t["type"] == kind), Decimal(0))

    captured = total("PAYMENT") - total("VOID_PAYMENT")
    refunded = total("REFUND")
    authorized = captured + total("AUTHORIZATION") - total("VOID_AUTHORIZATION")
    chargeback = total("CHARGEBACK")
    voided = total("VOID_PAYMENT") + total("VOID_AUTHORIZATION") > 0
    if captured == 0 and authorized == 0 and voided:
        status = "CANCELLED"
    elif captured == 0:
        status = "AUTHORIZED" if authorized else "FAILED"
    elif chargeback > 0:
        status = "CHARGEBACK_PROCESSED"
    elif order.get("disputed"):
        status = "DISPUTED"
    elif refunded == 0:
        status = "CAPTURED"
    elif refunded < captured:
        status = "PARTIALLY_REFUNDED"
    else:
        status = "REFUNDED"
    return {
        "captured": captured,
        "refunded": refunded,
        "authorized": authorized,
        "chargeback": chargeback,
        "status": status,
    }


def _mpgs_refund_refusal(answer: str) -> _Reply | None:
    """Return the queued refusal of a refund, or None to process it."""
    if answer == "rejected":
        return _mpgs_error(
            "Request rejected: operation not permitted for this merchant",
            cause="REQUEST_REJECTED",
        )
    if answer == "invalid":
        return _mpgs_error(
            "Value 'REFUND' is invalid. Refunds are not enabled for this merchant",
            field="apiOperation",
            validation_type="INVALID",
        )
    if answer == "busy":
        return _mpgs_error(
            "The server is busy, try again later", cause="SERVER_BUSY", status=503
        )
    return None


def _mpgs_available(order: dict[str, Any]) -> Decimal:
    totals = _mpgs_totals(order)
    return totals["captured"] - totals["refunded"]


def _mpgs_txn_fields(txn: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": txn["id"],
        "type": txn["type"],
        "amount": float(txn["amount"]),
        "currency": txn["currency"],
    }


def _find_txn(order: dict[str, Any], txn_id: str) -> dict[str, Any] | None:
    return next((t for t in order["transactions"] if t["id"] == txn_id), None)


def _json_object(body: bytes) -> tuple[dict[str, Any], _Reply | None]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}, _mpgs_error("Unable to parse the request body as JSON")
    if not isinstance(payload, dict):
        return {}, _mpgs_error("The request body must be a JSON object")
    return payload, None


def _basic_auth(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    user, _, password = decoded.partition(":")
    return user, password


def _form(body: bytes) -> dict[str, str]:
    # The real service is PHP: $_POST keeps the last of repeated fields.
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in parsed.items()}


def _decimal(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _coin(amount: Decimal) -> str:
    # Format explicitly: str(Decimal("0.00000001")) would give "1E-8".
    return f"{amount:.8f}"


def _random_alnum(length: int) -> str:
    return "".join(secrets.choice(_UPPER_ALNUM) for _ in range(length))


def _deposit_address(coin: str) -> str:
    if coin in ("ETH", "USDT", "USDC"):
        return "0x" + secrets.token_hex(20)
    if coin in ("XRP", "TRX", "DOGE"):
        first = {"XRP": "r", "TRX": "T", "DOGE": "D"}[coin]
        return first + _random_alnum(33)
    prefix = {"BTC": "bc1q", "BCH": "qq"}.get(coin, "ltc1q")
    return prefix + "".join(secrets.choice(_BECH32) for _ in range(38))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _append_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _e(value: Any) -> str:
    return html.escape(str(value))
