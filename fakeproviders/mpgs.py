"""Fake MPGS (Mastercard Gateway) Hosted Checkout: REST API, pay page, webhooks.

Sessions (INITIATE_CHECKOUT), Retrieve Order/Transaction and Refund:
https://ap-gateway.mastercard.com/api/documentation/integrationGuidelines/hostedCheckout/establishingAsession.html
Webhook notifications (X-Notification-Secret, -Id, -Attempt):
https://test-gateway.mastercard.com/api/documentation/integrationGuidelines/supportedFeatures/pickAdditionalFunctionality/webhookNotifications.html
"""

import contextlib
import copy
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote

import requests

from .core import (
    MINOR_UNITS,
    FakeServerCore,
    Reply,
    Request,
    Route,
    append_query,
    basic_auth,
    deep_merge,
    escape,
    html_page,
    is_http_url,
    json_reply,
    now_iso,
    parse_decimal,
    parse_form,
    random_alnum,
    redirect,
)

MPGS_MIN_VERSION = 63
MPGS_DESCRIPTION_MAX = 127
# Refund answers tests may queue (fake.mpgs_refund_answers) instead of a success.
MPGS_REFUND_ANSWERS = frozenset({"rejected", "invalid", "declined", "busy"})

_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MPGS_PATH = re.compile(
    r"/api/rest/version/(?P<version>[^/]+)/merchant/(?P<merchant>[^/]+)/(?P<rest>.+)"
)


class MpgsFake(FakeServerCore):
    """Fake MPGS: `/api/rest/version/…` calls, checkout.min.js and the pay page."""

    STATE = ("_mpgs_sessions", "_mpgs_latest_session", "_mpgs_orders")
    ROUTES = {
        "/api/rest/": "_mpgs_route",
        "/checkout/pay/": "_mpgs_route",
        "/static/checkout/": "_mpgs_route",
    }

    def __init__(
        self,
        *,
        mpgs_merchant_id: str = "TESTMERCHANT",
        mpgs_api_password: str = "mpgs-password",
        mpgs_webhook_secret: str = "mpgs-webhook-secret",
        mpgs_notification_url: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.mpgs_merchant_id = mpgs_merchant_id
        self.mpgs_api_password = mpgs_api_password
        self.mpgs_webhook_secret = mpgs_webhook_secret
        self.mpgs_notification_url = mpgs_notification_url
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
        self._mpgs_sessions: dict[str, dict[str, Any]] = {}
        self._mpgs_latest_session: dict[str, str] = {}
        self._mpgs_orders: dict[str, dict[str, Any]] = {}

    def gateway_settings(self) -> dict[str, dict[str, object]]:
        """Return the GATEWAY_SETTINGS entries that point the adapters at this fake."""
        return {
            "mpgs": {
                "api_base_url": self.url,
                "api_version": 100,
                "merchant_id": self.mpgs_merchant_id,
                "api_password": self.mpgs_api_password,
                "webhook_secret": self.mpgs_webhook_secret,
                "checkout_url": "",
            },
            **super().gateway_settings(),
        }

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
                "timeOfRecord": now_iso(),
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
                "timeOfRecord": now_iso(),
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
            payload = deep_merge(payload, body_overrides)
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

    # --- routing (called from handler threads) -------------------------------

    def _mpgs_route(self, req: Request) -> Route | None:
        path = req.path
        if match := _MPGS_PATH.fullmatch(path):
            operation, handler = self._mpgs_api_route(req, match["rest"])
            version, merchant = match["version"], unquote(match["merchant"])

            def guarded() -> Reply:
                return self._mpgs_guard(req, version, merchant) or handler()

            return operation, True, guarded
        if path.startswith("/checkout/pay/"):
            key = unquote(path.removeprefix("/checkout/pay/"))
            return "mpgs:pay_page", False, lambda: self._mpgs_pay_page(req, key)
        if path == "/static/checkout/checkout.min.js" and req.method == "GET":
            return "mpgs:checkout_js", False, self._mpgs_checkout_js
        return None

    # --- MPGS API ---------------------------------------------------------

    def _mpgs_api_route(
        self, req: Request, rest: str
    ) -> tuple[str, Callable[[], Reply]]:
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

    def _mpgs_guard(self, req: Request, version: str, merchant: str) -> Reply | None:
        """Return an error reply when the version or credentials are unacceptable."""
        number = int(version) if version.isdigit() else 0
        if number < MPGS_MIN_VERSION:
            return _mpgs_error(f"Unsupported API version '{version}'", field="version")
        with self._lock:
            self.mpgs_versions_seen.add(number)
        user, password = basic_auth(req.headers.get("Authorization", ""))
        checks = (
            (merchant, self.mpgs_merchant_id),
            (user, f"merchant.{self.mpgs_merchant_id}"),
            (password, self.mpgs_api_password),
        )
        # Evaluate every comparison so timing does not reveal which part failed.
        matches = [hmac.compare_digest(a.encode(), b.encode()) for a, b in checks]
        if all(matches):
            return None
        return json_reply(
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

    def _mpgs_create_session(self, req: Request) -> Reply:
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
        if not is_http_url(return_url):
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
        if notification_url is not None and not is_http_url(notification_url):
            return _mpgs_invalid("order.notificationUrl", notification_url)
        description = order.get("description", "")
        if not isinstance(description, str) or len(description) > MPGS_DESCRIPTION_MAX:
            return _mpgs_invalid("order.description", description)
        merchant = interaction.get("merchant")
        merchant_name = merchant.get("name") if isinstance(merchant, dict) else None
        if not merchant_name:
            return _mpgs_missing("interaction.merchant.name")
        session = {
            "id": "SESSION0002" + random_alnum(20),
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
            "creationTime": now_iso(),
            "completed": False,
        }
        with self._lock:
            self._mpgs_sessions[session["id"]] = session
            self._mpgs_latest_session[order_id] = session["id"]
        return json_reply(
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

    def _mpgs_get_order(self, order_id: str) -> Reply:
        with self._lock:
            order = self._mpgs_orders.get(order_id)
            if order is None:
                return _mpgs_no_order(order_id)
            return json_reply(self._mpgs_order_view(order))

    def _mpgs_refund(self, req: Request, order_id: str, txn_id: str) -> Reply:
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
                    return json_reply(existing["response"])
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
            reply = json_reply(txn["response"])
        # Like the gateway: a notification once the Refund completes, sent
        # after the answer (the caller is not kept waiting for its delivery).
        self._mpgs_notify_in_background(order_id)
        return reply

    def _mpgs_get_txn(self, order_id: str, txn_id: str) -> Reply:
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
            return json_reply(self._mpgs_txn_response(order, txn))

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
                    "creationTime": now_iso(),
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
                "timeOfRecord": now_iso(),
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
            "timeOfRecord": now_iso(),
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

    def _mpgs_checkout_js(self) -> Reply:
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
        return Reply(200, script.encode(), "application/javascript; charset=utf-8")

    def _mpgs_pay_page(self, req: Request, session_id: str) -> Reply:
        with self._lock:
            session = copy.deepcopy(self._mpgs_sessions.get(session_id))
        if session is None:
            return html_page("Not found", "<p>Unknown or expired session.</p>", 404)
        if req.method == "GET":
            places = MINOR_UNITS.get(session["currency"], 2)
            return html_page(
                "Hosted Checkout",
                f"<h1>{escape(session['merchantName'] or 'Merchant')}</h1>"
                f'<p>Amount: <span id="amount">{session["amount"]:.{places}f}'
                f" {escape(session['currency'])}</span></p>"
                f"<p>{escape(session['description'])}</p>"
                f'<form method="post" action="/checkout/pay/{escape(session_id)}">'
                '<button type="submit" name="action" value="pay">Pay</button> '
                '<button type="submit" name="action" value="decline">Decline</button>'
                "</form>",
            )
        if req.method != "POST":
            return Reply(405, b"Method Not Allowed", headers={"Allow": "GET, POST"})
        action = parse_form(req.body).get("action", "")
        if action not in ("pay", "decline"):
            return html_page("Bad request", "<p>Choose Pay or Decline.</p>", 400)
        if session["completed"]:
            return html_page(
                "Already paid", "<p>This session was already used.</p>", 409
            )
        approve = action == "pay"
        self._mpgs_record_payment(session_id, approve=approve)
        self._mpgs_notify_quietly(session["orderId"])
        indicator = session["successIndicator"]
        if not approve:
            while indicator == session["successIndicator"]:
                indicator = secrets.token_hex(8)
        location = append_query(
            session["returnUrl"],
            {"resultIndicator": indicator, "sessionVersion": session["version"]},
        )
        return redirect(location)


# --- helpers -----------------------------------------------------------------


def _mpgs_error(
    explanation: str,
    *,
    field: str | None = None,
    validation_type: str | None = None,
    status: int = 400,
    cause: str = "INVALID_REQUEST",
) -> Reply:
    error: dict[str, str] = {"cause": cause, "explanation": explanation}
    if field is not None:
        error["field"] = field
    if validation_type is not None:
        error["validationType"] = validation_type
    return json_reply({"result": "ERROR", "error": error}, status)


def _mpgs_missing(name: str) -> Reply:
    return _mpgs_error(
        f"Missing parameter '{name}'", field=name, validation_type="MISSING"
    )


def _mpgs_invalid(name: str, value: Any) -> Reply:
    return _mpgs_error(
        f"Value '{value}' is invalid.", field=name, validation_type="INVALID"
    )


def _mpgs_no_order(order_id: str) -> Reply:
    return _mpgs_error(
        f"Value '{order_id}' is invalid. No order exists with this order id",
        field="orderid",
        validation_type="INVALID",
    )


def _mpgs_amount(value: Any, currency: str) -> Decimal | None:
    """Parse a positive amount with no more decimals than the currency allows."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    number = parse_decimal(str(value))
    if number is None or not number.is_finite() or number <= 0:
        return None
    places = MINOR_UNITS.get(currency, 2)
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


def _mpgs_refund_refusal(answer: str) -> Reply | None:
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


def _json_object(body: bytes) -> tuple[dict[str, Any], Reply | None]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}, _mpgs_error("Unable to parse the request body as JSON")
    if not isinstance(payload, dict):
        return {}, _mpgs_error("The request body must be a JSON object")
    return payload, None
