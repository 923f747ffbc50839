"""Fake HyperPay COPYandPAY (Open Payment Platform): API, widget, pay page, webhooks.

Checkouts, payment status and the widget script:
https://hyperpay.docs.oppwa.com/tutorials/integration-guide
Transaction reports (`/v1/query`, `/v3/query/{id}?includeLinkedTransactions`):
https://hyperpay.docs.oppwa.com/tutorials/reporting/transaction
Refunds (RF against a payment id):
https://docs.latam.ppro.com/manage-payments/backoffice-operations
Encrypted webhooks (AES-256-GCM, IV and tag headers, hex body):
https://hyperpay.docs.oppwa.com/tutorials/webhooks/integration-guide
Throttling of status and report calls:
https://support.peachpayments.com/support/solutions/articles/47001220495-throttling-get-query

What the fake decides where the documentation is silent: a chargeback (CB) and
a portal refund keep the original's `merchantTransactionId`; a second refund
with the same `merchantTransactionId` on a payment is blocked as a duplicate
(800.110.100); checkout status with an entity that does not own the checkout
is 403.
"""

import contextlib
import copy
import hmac
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import requests
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .core import (
    MINOR_UNITS,
    FakeServerCore,
    Reply,
    Request,
    Route,
    append_query,
    deep_merge,
    escape,
    html_page,
    is_http_url,
    json_reply,
    parse_form,
    redirect,
)

# Outcomes the pay page and hyperpay_pay() offer: (result code, description).
HYPERPAY_OUTCOMES = {
    # Test mode answers success with this code.
    "pay": ("000.100.110", "Request successfully processed in 'Merchant in Integrator Test Mode'"),
    "review": ("000.400.000", "Transaction succeeded (please review manually due to fraud screening)"),
    "decline": ("800.100.151", "transaction declined (invalid card)"),
    "pending": ("000.200.000", "transaction pending"),
    "waiting": ("800.400.500", "Waiting for confirmation of non-instant payment. Denied for now."),
    "uncertain": ("900.100.300", "timeout, uncertain result"),
}  # fmt: skip
# Answers tests may queue for the next refunds (fake.hyperpay_refund_answers).
HYPERPAY_REFUND_ANSWERS = frozenset({"declined", "rejected", "uncertain"})
HYPERPAY_CHECKOUT_SECONDS = 30 * 60

_OK = ("000.100.110", "Request successfully processed in 'Merchant in Integrator Test Mode'")  # fmt: skip
_SUCCESS = re.compile(r"^(000\.000\.|000\.100\.1|000\.[36]|000\.400\.[1][12]0)")
_REVIEW = re.compile(r"^(000\.400\.0[^3]|000\.400\.100)")
_CURRENCY = re.compile(r"[A-Z]{3}")
_REFERENCE = re.compile(r"[\x20-\x7e]{1,255}")
_NO_SESSION = (
    "invalid or missing parameter - (opp) No payment session found for the "
    "requested id - are you mixing test/live servers or have you paid more than "
    "30min ago?"
)


class HyperPayFake(FakeServerCore):
    """Fake HyperPay: `/v1/…` and `/v3/query/…` calls, paymentWidgets.js, pay page."""

    STATE = ("_hyperpay_checkouts", "_hyperpay_transactions")
    ROUTES = {
        "/v1/checkouts": "_hyperpay_route",
        "/v1/paymentWidgets.js": "_hyperpay_route",
        "/v1/payments/": "_hyperpay_route",
        "/v1/query": "_hyperpay_route",
        "/v3/query/": "_hyperpay_route",
        "/hyperpay/pay/": "_hyperpay_route",
    }

    def __init__(
        self,
        *,
        hyperpay_access_token: str = "OGFjN2E0Yzk4ZmFrZWhwYXl0b2tlbg==",
        hyperpay_entity_id: str = "8ac7a4c98fa1e2b3018fa1e2b3c40001",
        hyperpay_mada_entity_id: str = "8ac7a4c98fa1e2b3018fa1e2b3c40002",
        hyperpay_webhook_key: str = "5A1F" * 16,
        hyperpay_webhook_url: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.hyperpay_access_token = hyperpay_access_token
        self.hyperpay_entity_id = hyperpay_entity_id
        self.hyperpay_mada_entity_id = hyperpay_mada_entity_id
        self.hyperpay_webhook_key = hyperpay_webhook_key
        # Where webhooks go (configured in HyperPay's portal, not per payment).
        self.hyperpay_webhook_url = hyperpay_webhook_url
        # Transaction reports per entity and kind in any 60 s; None: no limit.
        self.hyperpay_query_limit: int | None = None
        # Answers for the next refunds (HYPERPAY_REFUND_ANSWERS).
        self.hyperpay_refund_answers: list[str] = []
        # The next refunds are made, but their answer never reaches the caller.
        self.hyperpay_lose_refund_answers = 0
        self.hyperpay_refunds_applied = 0
        # Attempts per webhook until a 2xx answer.
        self.hyperpay_notify_attempts = 3
        # Every webhook POST: (transaction id, attempt, HTTP status or 0).
        self.hyperpay_deliveries: list[tuple[str, int, int]] = []
        self._hyperpay_checkouts: dict[str, dict[str, Any]] = {}
        self._hyperpay_transactions: dict[str, dict[str, Any]] = {}
        self._hyperpay_queries: dict[tuple[str, str], deque[float]] = {}
        self._hyperpay_senders: list[threading.Thread] = []

    def gateway_settings(self) -> dict[str, dict[str, object]]:
        """Return the GATEWAY_SETTINGS entries that point the adapters at this fake."""
        return {
            "hyperpay": {
                "api_base_url": self.url,
                "access_token": self.hyperpay_access_token,
                "entity_id": self.hyperpay_entity_id,
                "mada_entity_id": "",
                "brands": "VISA MASTER",
                "webhook_key": self.hyperpay_webhook_key,
                "payment_type": "DB",
                # The fake throttles only when told to (hyperpay_query_limit).
                "query_per_minute": self.hyperpay_query_limit or 0,
            },
            **super().gateway_settings(),
        }

    def reset_calls(self) -> None:
        """Forget calls, and the report budgets they used."""
        with self._lock:
            super().reset_calls()
            self._hyperpay_queries.clear()

    # --- HyperPay control -----------------------------------------------------

    def hyperpay_pay(
        self,
        checkout_id: str,
        outcome: str = "pay",
        *,
        amount: Decimal | str | None = None,
        brand: str | None = None,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Submit a payment (DB) on a checkout, as the widget would; return it.

        `amount` pays a sum other than the checkout's (a mismatch);
        `notify=False` loses the webhook (the merchant learns by polling).
        """
        with self._lock:
            checkout = self._hyperpay_checkouts[checkout_id]
            if checkout["completed"]:
                raise ValueError(f"checkout {checkout_id} was already paid")
            code, description = HYPERPAY_OUTCOMES[outcome]
            value = checkout["amount"] if amount is None else Decimal(str(amount))
            payment = self._hyperpay_add(
                {
                    "paymentType": checkout["paymentType"],
                    "paymentBrand": brand or checkout["brands"][0],
                    "amount": value,
                    "currency": checkout["currency"],
                    "merchantTransactionId": checkout["merchantTransactionId"],
                    "entity": checkout["entity"],
                    "checkout": checkout_id,
                    "code": code,
                    "description": description,
                }
            )
            checkout["payments"].append(payment["id"])
            if _SUCCESS.match(code) or _REVIEW.match(code):
                checkout["completed"] = True
            view = self._hyperpay_view(payment)
        if notify:
            self._hyperpay_notify_quietly(payment["id"])
        return view

    def hyperpay_settle(
        self, payment_id: str, *, approve: bool = True, notify: bool = True
    ) -> dict[str, Any]:
        """Give a pending or waiting payment its final result (same id)."""
        with self._lock:
            payment = self._hyperpay_transactions[payment_id]
            code, description = HYPERPAY_OUTCOMES["pay" if approve else "decline"]
            payment.update(code=code, description=description, timestamp=_now())
            if approve and payment.get("checkout"):
                self._hyperpay_checkouts[payment["checkout"]]["completed"] = True
            view = self._hyperpay_view(payment)
        if notify:
            self._hyperpay_notify_quietly(payment_id)
        return view

    def hyperpay_expire_checkout(self, checkout_id: str) -> None:
        """End a checkout's life now: its status endpoint no longer knows it."""
        with self._lock:
            self._hyperpay_checkouts[checkout_id]["expired"] = True

    def hyperpay_chargeback(
        self,
        payment_id: str,
        amount: Decimal | str | None = None,
        *,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Record a chargeback (CB) of a paid payment, and notify."""
        with self._lock:
            payment = self._hyperpay_transactions[payment_id]
            chargeback = self._hyperpay_add(
                {
                    "paymentType": "CB",
                    "amount": payment["amount"]
                    if amount is None
                    else Decimal(str(amount)),
                    "currency": payment["currency"],
                    "merchantTransactionId": payment["merchantTransactionId"],
                    "referencedId": payment_id,
                    "entity": payment["entity"],
                    "code": "000.100.200",
                    "description": "Reason not Specified",
                }
            )
            view = self._hyperpay_view(chargeback)
        if notify:
            self._hyperpay_notify_quietly(chargeback["id"])
        return view

    def hyperpay_refund_externally(
        self, payment_id: str, amount: Decimal | str
    ) -> dict[str, Any]:
        """Refund as if done in HyperPay's portal (not in hyperpay_refunds_applied)."""
        with self._lock:
            payment = self._hyperpay_transactions[payment_id]
            value = Decimal(str(amount))
            if value > self._hyperpay_available(payment):
                raise ValueError("refund exceeds the refundable amount")
            refund = self._hyperpay_add(
                {
                    "paymentType": "RF",
                    "amount": value,
                    "currency": payment["currency"],
                    "merchantTransactionId": payment["merchantTransactionId"],
                    "referencedId": payment_id,
                    "entity": payment["entity"],
                    "code": _OK[0],
                    "description": _OK[1],
                }
            )
            return self._hyperpay_view(refund)

    def hyperpay_checkout(self, checkout_id: str) -> dict[str, Any]:
        """Return a copy of a stored checkout."""
        with self._lock:
            return copy.deepcopy(self._hyperpay_checkouts[checkout_id])

    def hyperpay_transaction(self, transaction_id: str) -> dict[str, Any]:
        """Return a transaction as the API shows it."""
        with self._lock:
            return self._hyperpay_view(self._hyperpay_transactions[transaction_id])

    def hyperpay_entity_of(self, transaction_id: str) -> str:
        """Return the entity a transaction was made under."""
        with self._lock:
            return self._hyperpay_transactions[transaction_id]["entity"]

    def hyperpay_transactions(self, reference: str) -> list[dict[str, Any]]:
        """Return the transactions with a merchantTransactionId, oldest first."""
        with self._lock:
            return [
                self._hyperpay_view(item)
                for item in self._hyperpay_transactions.values()
                if item["merchantTransactionId"] == reference
            ]

    def hyperpay_notification(
        self,
        transaction_id: str | None = None,
        *,
        kind: str = "PAYMENT",
        key: str | None = None,
        json_body: bool = False,
        tamper: bool = False,
        payload_overrides: Mapping[str, Any] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Build an encrypted webhook about a transaction (or of another `kind`).

        `json_body` wraps the hex ciphertext as `{"encryptedBody": …}` (HyperPay's
        plugins); `key` encrypts with another key; `tamper` alters one byte of
        the ciphertext after encryption.
        """
        if transaction_id is not None:
            with self._lock:
                payload = self._hyperpay_view(
                    self._hyperpay_transactions[transaction_id]
                )
        else:
            payload = {"id": secrets.token_hex(16), "registrationType": "CARD"}
        if payload_overrides:
            payload = deep_merge(payload, payload_overrides)
        envelope: dict[str, Any] = {"type": kind, "payload": payload}
        if kind == "REGISTRATION":
            envelope["action"] = "CREATED"
        iv = secrets.token_bytes(12)
        secret = bytes.fromhex(key or self.hyperpay_webhook_key)
        sealed = AESGCM(secret).encrypt(iv, json.dumps(envelope).encode(), None)
        ciphertext, tag = bytearray(sealed[:-16]), sealed[-16:]
        if tamper:
            ciphertext[len(ciphertext) // 2] ^= 0x01
        text = bytes(ciphertext).hex().upper()
        body = json.dumps({"encryptedBody": text}) if json_body else text
        headers = {
            "Content-Type": "application/json" if json_body else "text/plain",
            "X-Initialization-Vector": iv.hex().upper(),
            "X-Authentication-Tag": tag.hex().upper(),
        }
        return body.encode(), headers

    def hyperpay_send_notification(
        self,
        transaction_id: str | None = None,
        *,
        url: str | None = None,
        attempts: int = 1,
        **build: Any,
    ) -> requests.Response:
        """POST a webhook to `url` or the configured one, again until answered 2xx.

        Each attempt is encrypted afresh (a new IV), as a redelivery would be.
        """
        target = url or self.hyperpay_webhook_url
        if not target:
            raise ValueError("no webhook URL configured")
        for attempt in range(1, max(1, attempts) + 1):
            body, headers = self.hyperpay_notification(transaction_id, **build)
            try:
                response = requests.post(
                    target, data=body, headers=headers, timeout=self.notify_timeout
                )
            except requests.RequestException:
                self._hyperpay_delivered(transaction_id, attempt, 0)
                if attempt >= attempts:
                    raise
                continue
            self._hyperpay_delivered(transaction_id, attempt, response.status_code)
            if 200 <= response.status_code < 300:
                break
        return response

    def hyperpay_wait_notifications(self, timeout: float = 10.0) -> None:
        """Wait for webhooks sent in the background (after refunds)."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                senders = [t for t in self._hyperpay_senders if t.is_alive()]
                self._hyperpay_senders = senders
            if not senders:
                return
            senders[0].join(max(0.0, end - time.monotonic()))
            if time.monotonic() >= end:
                raise TimeoutError("HyperPay webhooks still being sent")

    def _hyperpay_delivered(
        self, transaction_id: str | None, attempt: int, status: int
    ):
        with self._lock:
            self.hyperpay_deliveries.append((transaction_id or "", attempt, status))

    # --- routing (called from handler threads) -------------------------------

    def _hyperpay_route(self, req: Request) -> Route | None:
        path, method = req.path, req.method
        parts = [unquote(part) for part in path.strip("/").split("/")]

        def api(operation: str, handler: Callable[[], Reply]) -> Route:
            def guarded() -> Reply:
                return self._hyperpay_guard(req) or handler()

            return f"hyperpay:{operation}", True, guarded

        if parts == ["v1", "checkouts"] and method == "POST":
            return api("checkout", lambda: self._hyperpay_create_checkout(req))
        if (
            len(parts) == 4
            and parts[:2] == ["v1", "checkouts"]
            and parts[3] == "payment"
            and method == "GET"
        ):
            return api("status", lambda: self._hyperpay_status(req, parts[2]))
        if len(parts) == 3 and parts[:2] == ["v1", "payments"] and method == "POST":
            return api("refund", lambda: self._hyperpay_refund(req, parts[2]))
        if parts == ["v1", "query"] and method == "GET":
            return api("query", lambda: self._hyperpay_query_reference(req))
        if len(parts) == 3 and parts[:2] == ["v3", "query"] and method == "GET":
            return api("query_id", lambda: self._hyperpay_query_id(req, parts[2]))
        if parts == ["v1", "paymentWidgets.js"] and method == "GET":
            return "hyperpay:widget_js", False, lambda: self._hyperpay_widget_js(req)
        if len(parts) == 3 and parts[:2] == ["hyperpay", "pay"]:
            return (
                "hyperpay:pay_page",
                False,
                lambda: self._hyperpay_pay_page(req, parts[2]),
            )
        return None

    def _hyperpay_guard(self, req: Request) -> Reply | None:
        """Refuse a wrong Bearer token (401) or an entity not of this token (403)."""
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        expected = self.hyperpay_access_token.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected
        ):
            return _hyperpay_error(
                "800.900.300", "invalid authentication information", 401
            )
        entity = _hyperpay_params(req).get("entityId", "")
        if entity not in (self.hyperpay_entity_id, self.hyperpay_mada_entity_id):
            return _hyperpay_error(
                "800.900.301",
                "user authorization failed, user has no sufficient rights to "
                "process transaction",
                403,
            )
        return None

    # --- HyperPay API ---------------------------------------------------------

    def _hyperpay_create_checkout(self, req: Request) -> Reply:
        form = parse_form(req.body)
        currency = form.get("currency", "")
        if not _CURRENCY.fullmatch(currency):
            return _hyperpay_invalid("currency", currency)
        amount = _hyperpay_amount(form.get("amount", ""), currency)
        if amount is None:
            return _hyperpay_invalid("amount", form.get("amount", ""))
        payment_type = form.get("paymentType", "")
        if payment_type not in ("DB", "PA"):
            return _hyperpay_invalid("paymentType", payment_type)
        reference = form.get("merchantTransactionId", "")
        if reference and not _REFERENCE.fullmatch(reference):
            return _hyperpay_invalid("merchantTransactionId", reference)
        entity = form["entityId"]
        mada = entity == self.hyperpay_mada_entity_id
        checkout = {
            "id": secrets.token_hex(16).upper() + ".uat01-vm-tx04",
            "entity": entity,
            "amount": amount,
            "currency": currency,
            "paymentType": payment_type,
            "merchantTransactionId": reference,
            "email": form.get("customer.email", ""),
            "brands": ["MADA"] if mada else ["VISA", "MASTER"],
            "created": time.monotonic(),
            "expired": False,
            "completed": False,
            "payments": [],
        }
        with self._lock:
            self._hyperpay_checkouts[checkout["id"]] = checkout
        return json_reply(
            {
                "result": {
                    "code": "000.200.100",
                    "description": "successfully created checkout",
                },
                **_envelope(entity),
                "id": checkout["id"],
            }
        )

    def _hyperpay_status(self, req: Request, checkout_id: str) -> Reply:
        entity = _hyperpay_params(req)["entityId"]
        with self._lock:
            checkout = self._hyperpay_checkouts.get(checkout_id)
            if checkout is None or self._hyperpay_gone(checkout):
                return _hyperpay_error("200.300.404", _NO_SESSION, 400)
            if checkout["entity"] != entity:
                return _hyperpay_error(
                    "800.900.301", "user authorization failed for this checkout", 403
                )
            if not checkout["payments"]:
                return json_reply(
                    {
                        "result": {
                            "code": "000.200.000",
                            "description": "transaction pending",
                        },
                        **_envelope(entity),
                    }
                )
            payment = self._hyperpay_transactions[checkout["payments"][-1]]
            return json_reply({**self._hyperpay_view(payment), **_envelope(entity)})

    def _hyperpay_query_reference(self, req: Request) -> Reply:
        params = _hyperpay_params(req)
        entity, reference = params["entityId"], params.get("merchantTransactionId", "")
        if not reference:
            return _hyperpay_invalid("merchantTransactionId", reference)
        throttled = self._hyperpay_throttle(entity, "reference")
        if throttled is not None:
            return throttled
        with self._lock:
            found = [
                self._hyperpay_view(item)
                for item in reversed(self._hyperpay_transactions.values())
                if item["merchantTransactionId"] == reference
                and item["entity"] == entity
            ]
        if not found:
            return _hyperpay_error("700.400.580", "cannot find transaction", 200)
        return json_reply(
            {
                "result": {"code": "000.000.100", "description": "successful request"},
                **_envelope(entity),
                "payments": found,
            }
        )

    def _hyperpay_query_id(self, req: Request, transaction_id: str) -> Reply:
        params = _hyperpay_params(req)
        entity = params["entityId"]
        throttled = self._hyperpay_throttle(entity, "id")
        if throttled is not None:
            return throttled
        with self._lock:
            item = self._hyperpay_transactions.get(transaction_id)
            if item is None or item["entity"] != entity:
                return _hyperpay_error("700.400.580", "cannot find transaction", 200)
            if params.get("includeLinkedTransactions") != "true":
                return json_reply({**self._hyperpay_view(item), **_envelope(entity)})
            linked = [
                self._hyperpay_view(other)
                for other in self._hyperpay_transactions.values()
                if other.get("referencedId") == transaction_id
            ]
            return json_reply(
                {
                    "result": {
                        "code": "000.000.100",
                        "description": "successful request",
                    },
                    **_envelope(entity),
                    "payments": [self._hyperpay_view(item), *linked],
                }
            )

    def _hyperpay_refund(self, req: Request, payment_id: str) -> Reply | None:
        form = parse_form(req.body)
        entity = form["entityId"]
        if form.get("paymentType") != "RF":
            return _hyperpay_invalid("paymentType", form.get("paymentType", ""))
        reference = form.get("merchantTransactionId", "")
        if reference and not _REFERENCE.fullmatch(reference):
            return _hyperpay_invalid("merchantTransactionId", reference)
        with self._lock:
            payment = self._hyperpay_transactions.get(payment_id)
            if payment is None or payment["paymentType"] != "DB":
                return _hyperpay_error("700.400.580", "cannot find transaction", 400)
            if payment["entity"] != entity:
                return _hyperpay_error(
                    "700.400.700",
                    "initial and referencing channel-ids do not match",
                    400,
                )
            currency = form.get("currency", "")
            if currency != payment["currency"]:
                return _hyperpay_invalid("currency", currency)
            amount = _hyperpay_amount(form.get("amount", ""), currency)
            if amount is None:
                return _hyperpay_invalid("amount", form.get("amount", ""))
            if reference and any(
                item["paymentType"] == "RF"
                and item.get("referencedId") == payment_id
                and item["merchantTransactionId"] == reference
                for item in self._hyperpay_transactions.values()
            ):
                return _hyperpay_error("800.110.100", "duplicate transaction", 200)
            if not _SUCCESS.match(payment["code"]) or amount > self._hyperpay_available(
                payment
            ):
                return _hyperpay_error(
                    "700.400.200",
                    "cannot refund (refund volume exceeded or tx reversed or "
                    "invalid workflow?)",
                    400,
                )
            answer = (
                self.hyperpay_refund_answers.pop(0)
                if self.hyperpay_refund_answers
                else ""
            )
            if answer == "rejected":
                return _hyperpay_error(
                    "600.200.500", "Invalid payment data. Refunds not enabled", 400
                )
            code, description = {
                "declined": ("800.100.402", "cc/bank account holder not valid"),
                "uncertain": HYPERPAY_OUTCOMES["uncertain"],
            }.get(answer, _OK)
            refund = self._hyperpay_add(
                {
                    "paymentType": "RF",
                    "amount": amount,
                    "currency": currency,
                    "merchantTransactionId": reference,
                    "referencedId": payment_id,
                    "entity": entity,
                    "code": code,
                    "description": description,
                }
            )
            self.hyperpay_refunds_applied += code == _OK[0]
            reply = json_reply({**self._hyperpay_view(refund), **_envelope(entity)})
            lose = self.hyperpay_lose_refund_answers > 0
            self.hyperpay_lose_refund_answers -= lose
        self._hyperpay_notify_in_background(refund["id"])
        # A lost answer: the refund is made, the caller hears nothing.
        return None if lose else reply

    # --- HyperPay state -------------------------------------------------------

    def _hyperpay_add(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a new transaction (under the lock); return it."""
        item = {
            "id": "8ac7a4a1" + secrets.token_hex(12),
            "referencedId": None,
            "checkout": None,
            "timestamp": _now(),
            **fields,
        }
        item["ndc"] = f"{item['entity']}_{secrets.token_hex(8)}"
        self._hyperpay_transactions[item["id"]] = item
        return item

    def _hyperpay_gone(self, checkout: dict[str, Any]) -> bool:
        age = time.monotonic() - checkout["created"]
        return checkout["expired"] or age >= HYPERPAY_CHECKOUT_SECONDS

    def _hyperpay_available(self, payment: dict[str, Any]) -> Decimal:
        taken = sum(
            (
                item["amount"]
                for item in self._hyperpay_transactions.values()
                if item.get("referencedId") == payment["id"]
                and item["paymentType"] in ("RF", "CB")
                and (_SUCCESS.match(item["code"]) or item["paymentType"] == "CB")
            ),
            Decimal(0),
        )
        return payment["amount"] - taken

    def _hyperpay_throttle(self, entity: str, kind: str) -> Reply | None:
        limit = self.hyperpay_query_limit
        if not limit:
            return None
        now = time.monotonic()
        with self._lock:
            calls = self._hyperpay_queries.setdefault((entity, kind), deque())
            while calls and now - calls[0] >= 60:
                calls.popleft()
            if len(calls) >= limit:
                return _hyperpay_error(
                    "800.120.100", "Too many requests. Please try again later.", 429
                )
            calls.append(now)
        return None

    def _hyperpay_view(self, item: dict[str, Any]) -> dict[str, Any]:
        """Return a transaction as the API shows it (a payment object)."""
        places = MINOR_UNITS.get(item["currency"], 2)
        view: dict[str, Any] = {
            "id": item["id"],
            "paymentType": item["paymentType"],
            "amount": f"{item['amount']:.{places}f}",
            "currency": item["currency"],
            "descriptor": "4447.7510.2306 Magic eSIM",
            "merchantTransactionId": item["merchantTransactionId"],
            "result": {"code": item["code"], "description": item["description"]},
            "timestamp": item["timestamp"],
            "ndc": item["ndc"],
        }
        if item.get("paymentBrand"):
            view["paymentBrand"] = item["paymentBrand"]
            view["card"] = {
                "bin": "411111",
                "last4Digits": "1111",
                "holder": "Jane Jones",
            }
        if item.get("referencedId"):
            view["referencedId"] = item["referencedId"]
        return view

    def _hyperpay_notify_quietly(self, transaction_id: str) -> None:
        if not self.hyperpay_webhook_url:
            return
        # Delivery problems are the receiver's to report; the payer is unaffected.
        with contextlib.suppress(requests.RequestException):
            self.hyperpay_send_notification(
                transaction_id, attempts=self.hyperpay_notify_attempts
            )

    def _hyperpay_notify_in_background(self, transaction_id: str) -> None:
        if not self.hyperpay_webhook_url:
            return
        sender = threading.Thread(
            target=self._hyperpay_notify_quietly,
            args=(transaction_id,),
            name="fake-hyperpay-notify",
            daemon=True,
        )
        with self._lock:
            self._hyperpay_senders.append(sender)
        sender.start()

    # --- the widget and the pay page -------------------------------------------

    def _hyperpay_widget_js(self, req: Request) -> Reply:
        checkout_id = _hyperpay_params(req).get("checkoutId", "")
        with self._lock:
            known = checkout_id in self._hyperpay_checkouts
        if not known:
            script = 'throw new Error("paymentWidgets.js: unknown checkoutId");\n'
            return Reply(200, script.encode(), "application/javascript; charset=utf-8")
        # Plain DOM calls only: no inline handlers or styles, which the
        # merchant's Content-Security-Policy may refuse.
        script = (
            "(function () {\n"
            f"  var base = {json.dumps(self.url)};\n"
            f"  var checkoutId = {json.dumps(checkout_id)};\n"
            "  var form = document.querySelector('form.paymentWidgets');\n"
            "  if (!form) { throw new Error('no form.paymentWidgets'); }\n"
            "  var brands = (form.getAttribute('data-brands') || '').split(/\\s+/)\n"
            "    .filter(Boolean);\n"
            "  var note = document.createElement('p');\n"
            "  note.className = 'wpwl-brands';\n"
            "  note.textContent = 'Pay with ' + brands.join(', ');\n"
            "  var link = document.createElement('a');\n"
            "  link.id = 'wpwl-pay';\n"
            "  link.textContent = 'Enter card details';\n"
            "  link.href = base + '/hyperpay/pay/' + encodeURIComponent(checkoutId) +\n"
            "    '?shopperResultUrl=' + encodeURIComponent(form.action);\n"
            "  form.appendChild(note);\n"
            "  form.appendChild(link);\n"
            "  window.wpwl = {checkoutId: checkoutId, brands: brands};\n"
            "})();\n"
        )
        return Reply(200, script.encode(), "application/javascript; charset=utf-8")

    def _hyperpay_pay_page(self, req: Request, checkout_id: str) -> Reply:
        with self._lock:
            checkout = copy.deepcopy(self._hyperpay_checkouts.get(checkout_id))
        if checkout is None or self._hyperpay_gone(checkout):
            return html_page("Not found", "<p>Unknown or expired checkout.</p>", 404)
        if req.method == "GET":
            result_url = _hyperpay_params(req).get("shopperResultUrl", "")
            places = MINOR_UNITS.get(checkout["currency"], 2)
            buttons = "".join(
                f'<button type="submit" name="action" value="{choice}">'
                f"{choice.title()}</button> "
                for choice in ("pay", "decline", "pending")
            )
            return html_page(
                "COPYandPAY",
                f'<p>Amount: <span id="amount">{checkout["amount"]:.{places}f} '
                f"{escape(checkout['currency'])}</span></p>"
                f"<p>Brands: {escape(' '.join(checkout['brands']))}</p>"
                f'<form method="post" action="/hyperpay/pay/{quote(checkout_id)}">'
                f'<input type="hidden" name="shopperResultUrl" value="{escape(result_url)}">'
                f"{buttons}</form>",
            )
        if req.method != "POST":
            return Reply(405, b"Method Not Allowed", headers={"Allow": "GET, POST"})
        form = parse_form(req.body)
        action, result_url = form.get("action", ""), form.get("shopperResultUrl", "")
        if action not in ("pay", "decline", "pending"):
            return html_page(
                "Bad request", "<p>Choose Pay, Decline or Pending.</p>", 400
            )
        if not is_http_url(result_url):
            return html_page("Bad request", "<p>No shopperResultUrl.</p>", 400)
        if checkout["completed"]:
            return html_page("Already paid", "<p>This checkout was paid.</p>", 409)
        self.hyperpay_pay(checkout_id, action)
        return redirect(
            append_query(
                result_url,
                {
                    "id": checkout_id,
                    "resourcePath": f"/v1/checkouts/{checkout_id}/payment",
                },
            )
        )


# --- helpers -----------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "+0000"


def _envelope(entity: str) -> dict[str, str]:
    return {
        "buildNumber": "fake@2026-01-01 00:00:00 +0000",
        "timestamp": _now(),
        "ndc": f"{entity}_{secrets.token_hex(8)}",
    }


def _hyperpay_error(code: str, description: str, status: int) -> Reply:
    return json_reply(
        {"result": {"code": code, "description": description}, **_envelope("")},
        status,
    )


def _hyperpay_invalid(name: str, value: str) -> Reply:
    return json_reply(
        {
            "result": {
                "code": "200.300.404",
                "description": "invalid or missing parameter",
                "parameterErrors": [
                    {"name": name, "value": value, "message": "invalid value"}
                ],
            },
            **_envelope(""),
        },
        400,
    )


def _hyperpay_params(req: Request) -> dict[str, str]:
    """Return the query string, or for a POST the form, as one dict."""
    if req.method == "POST":
        return parse_form(req.body)
    parsed = parse_qs(req.query, keep_blank_values=True)
    return {name: values[-1] for name, values in parsed.items()}


def _hyperpay_amount(text: str, currency: str) -> Decimal | None:
    """Parse a positive amount written with the currency's decimals."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not number.is_finite() or number <= 0:
        return None
    places = MINOR_UNITS.get(currency, 2)
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or -exponent > places:
        return None
    return number.quantize(Decimal(1).scaleb(-places))
