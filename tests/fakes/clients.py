"""HTTP clients and a webhook receiver for the fake server's own tests."""

import threading
import time
import uuid
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

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
