"""Fake Stripe: Checkout Sessions, PaymentIntents, charges, refunds, disputes, events.

The API as the official `stripe` library speaks it: form-encoded bodies with
nested `a[b][0]` keys, `Authorization: Bearer <secret key>`, `Idempotency-Key`
on POSTs, `expand[]`, list objects newest first and JSON errors
`{"error": {"type", "code", "message", "param"}}`. Events are signed like
Stripe's (`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`)
and posted to `stripe_webhook_url`.

API reference: https://docs.stripe.com/api/checkout/sessions ,
https://docs.stripe.com/api/refunds , https://docs.stripe.com/api/disputes ,
https://docs.stripe.com/api/idempotent_requests , https://docs.stripe.com/api/errors
Webhook signatures: https://docs.stripe.com/webhooks#verify-manually
"""

import contextlib
import copy
import hashlib
import hmac
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import requests

from .core import (
    MINOR_UNITS,
    FakeServerCore,
    Reply,
    Request,
    Route,
    basic_auth,
    escape,
    html_page,
    is_http_url,
    json_reply,
    parse_form,
    redirect,
)

# Stripe's API unit where it differs from ISO 4217 (the fake's own copy).
STRIPE_PLACES = {"ISK": 2, "MGA": 0}
STRIPE_API_VERSION = "2026-10-28.endive"
# What the next refund POSTs do instead of succeeding (fake.stripe_refund_answers):
# "pending" stays pending, "failed" fails at the bank, "lost" is made but its
# answer never arrives (the connection is dropped), "declined" is refused (400).
STRIPE_REFUND_ANSWERS = frozenset({"pending", "failed", "lost", "declined"})
# Stripe keeps idempotent results for at least 24 hours; the fake for its life.
_ALNUM = string.ascii_letters + string.digits
_SESSION_ID = re.compile(r"cs_(test|live)_[A-Za-z0-9]+")
_INTEGER = re.compile(r"\d{1,15}")
_MIN_EXPIRY, _MAX_EXPIRY = 30 * 60, 24 * 60 * 60
# A few seconds either way, for the client's clock.
_CLOCK_SLACK = 5


@dataclass
class _Dropped:
    """A request that was carried out but whose answer never leaves the fake."""

    reply: Reply


# What an API handler returns: an answer, or a carried-out request whose
# answer is lost (kept for idempotent replays).
_Handled = Reply | _Dropped


class StripeFake(FakeServerCore):
    """Fake Stripe: `/v1/…` API calls (its own prefixes only) and `/c/pay/` pages."""

    # Only Stripe's own resources: HyperPay's fake also lives under /v1/.
    STATE = (
        "_stripe_sessions",
        "_stripe_intents",
        "_stripe_charges",
        "_stripe_refunds",
        "_stripe_disputes",
        "_stripe_events",
    )
    ROUTES = {
        "/v1/checkout/sessions": "_stripe_route",
        "/v1/payment_intents": "_stripe_route",
        "/v1/charges": "_stripe_route",
        "/v1/refunds": "_stripe_route",
        "/v1/disputes": "_stripe_route",
        "/v1/events": "_stripe_route",
        "/c/pay/": "_stripe_route",
    }

    def __init__(
        self,
        *,
        stripe_secret_key: str = "sk_test_fake51StripeSecretKey0a1b2c3d",
        stripe_webhook_secret: str = "whsec_fakeStripeSigningSecret9z8y7x",
        stripe_webhook_url: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.stripe_secret_key = stripe_secret_key
        self.stripe_webhook_secret = stripe_webhook_secret
        # Where events are posted (the Dashboard's webhook endpoint); None: nowhere.
        self.stripe_webhook_url = stripe_webhook_url
        self.stripe_versions_seen: set[str] = set()
        # Refunds actually made through the API (not Dashboard ones).
        self.stripe_refunds_created = 0
        # Answers for the next refund POSTs (see STRIPE_REFUND_ANSWERS).
        self.stripe_refund_answers: list[str] = []
        # Every event POST: (event id, attempt, HTTP status or 0).
        self.stripe_deliveries: list[tuple[str, int, int]] = []
        # Attempts per event until a 2xx answer (Stripe retries for days).
        self.stripe_notify_attempts = 3
        # Hold events instead of posting them (stripe_release to send them,
        # e.g. out of order or twice).
        self.stripe_hold_events = False
        self._stripe_held: list[str] = []
        self._stripe_senders: list[threading.Thread] = []
        self._stripe_sessions: dict[str, dict[str, Any]] = {}
        self._stripe_intents: dict[str, dict[str, Any]] = {}
        self._stripe_charges: dict[str, dict[str, Any]] = {}
        self._stripe_refunds: dict[str, dict[str, Any]] = {}
        self._stripe_disputes: dict[str, dict[str, Any]] = {}
        self._stripe_events: dict[str, dict[str, Any]] = {}
        self._stripe_idempotent: dict[str, tuple[str, Reply]] = {}

    def gateway_settings(self) -> dict[str, dict[str, object]]:
        """Return the GATEWAY_SETTINGS entries that point the adapters at this fake."""
        return {
            "stripe": {
                "secret_key": self.stripe_secret_key,
                "webhook_secret": self.stripe_webhook_secret,
                "api_base": self.url,
            },
            **super().gateway_settings(),
        }

    # --- the payer (what the hosted page's buttons do) ---------------------------

    def stripe_pay(
        self,
        session_id: str,
        *,
        amount: int | None = None,
        currency: str | None = None,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Pay the session by card (captured at once); return the session.

        `amount` (minor units) and `currency` charge something other than the
        session's price, as a provider bug or a tampered flow would.
        `notify=False` loses the event (the merchant learns by polling).
        """
        with self._lock:
            session = self._stripe_open(session_id)
            intent = self._stripe_intent_for(session)
            charge = self._stripe_add_charge(
                intent,
                "succeeded",
                amount=session["amount_total"] if amount is None else amount,
                currency=currency or session["currency"],
            )
            intent.update(
                status="succeeded",
                amount_received=charge["amount"],
                last_payment_error=None,
            )
            session.update(status="complete", payment_status="paid", url=None)
            event = self._stripe_event("checkout.session.completed", session)
        if notify:
            self._stripe_deliver(event)
        return self.stripe_session(session_id)

    def stripe_decline(
        self,
        session_id: str,
        *,
        code: str = "card_declined",
        decline_code: str = "generic_decline",
    ) -> dict[str, Any]:
        """Decline a card attempt; the session stays open for another card."""
        with self._lock:
            session = self._stripe_open(session_id)
            intent = self._stripe_intent_for(session)
            charge = self._stripe_add_charge(
                intent,
                "failed",
                amount=session["amount_total"],
                currency=session["currency"],
                failure=(code, decline_code),
            )
            intent.update(
                status="requires_payment_method",
                last_payment_error={
                    "charge": charge["id"],
                    "code": code,
                    "decline_code": decline_code,
                    "message": "Your card was declined.",
                    "type": "card_error",
                },
            )
            event = self._stripe_event("payment_intent.payment_failed", intent)
        self._stripe_deliver(event)
        return self.stripe_session(session_id)

    def stripe_pay_later(self, session_id: str, *, notify: bool = True):
        """Pay by a delayed method (bank debit): complete but unpaid, processing."""
        with self._lock:
            session = self._stripe_open(session_id)
            intent = self._stripe_intent_for(session)
            self._stripe_add_charge(
                intent,
                "pending",
                amount=session["amount_total"],
                currency=session["currency"],
            )
            intent.update(status="processing", payment_method_types=["sepa_debit"])
            session.update(status="complete", payment_status="unpaid", url=None)
            event = self._stripe_event("checkout.session.completed", session)
        if notify:
            self._stripe_deliver(event)
        return self.stripe_session(session_id)

    def stripe_settle(
        self, session_id: str, *, succeed: bool = True, notify: bool = True
    ) -> dict[str, Any]:
        """End a delayed payment: the money arrives, or the debit fails."""
        with self._lock:
            session = self._stripe_sessions[session_id]
            intent = self._stripe_intents[session["payment_intent"]]
            charge = self._stripe_charges[intent["latest_charge"]]
            if charge["status"] != "pending":
                raise ValueError("no delayed payment in progress")
            if succeed:
                charge.update(status="succeeded", paid=True, captured=True)
                charge["amount_captured"] = charge["amount"]
                intent.update(status="succeeded", amount_received=charge["amount"])
                session["payment_status"] = "paid"
                kind = "checkout.session.async_payment_succeeded"
            else:
                charge.update(
                    status="failed",
                    failure_code="insufficient_funds",
                    failure_message="The account has insufficient funds.",
                )
                intent.update(status="requires_payment_method")
                kind = "checkout.session.async_payment_failed"
            event = self._stripe_event(kind, session)
        if notify:
            self._stripe_deliver(event)
        return self.stripe_session(session_id)

    def stripe_authorize(self, session_id: str) -> dict[str, Any]:
        """Authorise the card without capturing (a manual-capture PaymentIntent)."""
        with self._lock:
            session = self._stripe_open(session_id)
            intent = self._stripe_intent_for(session)
            charge = self._stripe_add_charge(
                intent,
                "succeeded",
                amount=session["amount_total"],
                currency=session["currency"],
            )
            charge.update(captured=False, amount_captured=0)
            intent.update(
                status="requires_capture",
                capture_method="manual",
                amount_capturable=charge["amount"],
            )
            session.update(status="complete", payment_status="unpaid", url=None)
            event = self._stripe_event("checkout.session.completed", session)
        self._stripe_deliver(event)
        return self.stripe_session(session_id)

    def stripe_expire(self, session_id: str, *, notify: bool = True) -> dict[str, Any]:
        """Expire an open session now (its expires_at reached, or expired by API)."""
        with self._lock:
            event = self._stripe_expire_session(self._stripe_open(session_id))
        if notify:
            self._stripe_deliver(event)
        return self.stripe_session(session_id)

    # --- the merchant's Dashboard and the card schemes -------------------------------

    def stripe_refund_externally(self, intent_id: str, amount: int) -> dict[str, Any]:
        """Refund from the Dashboard (no metadata of ours); not counted as created."""
        with self._lock:
            intent = self._stripe_intents[intent_id]
            charge = self._stripe_paid_charge(intent)
            if charge is None or amount > charge["amount"] - charge["amount_refunded"]:
                raise ValueError("nothing (or not that much) to refund")
            refund = self._stripe_add_refund(charge, amount, {}, "succeeded")
            event = self._stripe_event("charge.refunded", charge)
        self._stripe_deliver(event)
        return copy.deepcopy(refund)

    def stripe_dispute(
        self,
        intent_id: str,
        *,
        reason: str = "fraudulent",
        status: str = "needs_response",
        amount: int | None = None,
    ) -> dict[str, Any]:
        """Open a dispute on the paid charge (the payer's bank); send the event."""
        with self._lock:
            charge = self._stripe_paid_charge(self._stripe_intents[intent_id])
            if charge is None:
                raise ValueError("no paid charge to dispute")
            dispute = {
                "id": _stripe_id("dp_"),
                "object": "dispute",
                "amount": charge["amount"] if amount is None else amount,
                "charge": charge["id"],
                "created": int(time.time()),
                "currency": charge["currency"],
                "is_charge_refundable": False,
                "livemode": False,
                "metadata": {},
                "payment_intent": intent_id,
                "reason": reason,
                "status": status,
            }
            self._stripe_disputes[dispute["id"]] = dispute
            charge["disputed"] = True
            event = self._stripe_event("charge.dispute.created", dispute)
        self._stripe_deliver(event)
        return copy.deepcopy(dispute)

    def stripe_close_dispute(self, dispute_id: str, *, won: bool) -> dict[str, Any]:
        """Close a dispute as won or lost; send charge.dispute.closed."""
        with self._lock:
            dispute = self._stripe_disputes[dispute_id]
            dispute["status"] = "won" if won else "lost"
            event = self._stripe_event("charge.dispute.closed", dispute)
        self._stripe_deliver(event)
        return copy.deepcopy(dispute)

    def stripe_settle_refund(self, refund_id: str, *, succeed: bool = True) -> None:
        """Finish a pending refund (the bank's answer); send charge.refunded."""
        with self._lock:
            refund = self._stripe_refunds[refund_id]
            charge = self._stripe_charges[refund["charge"]]
            if succeed:
                refund["status"] = "succeeded"
            else:
                refund.update(status="failed", failure_reason="lost_or_stolen_card")
                charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
            event = self._stripe_event("charge.refunded", charge)
        if succeed:
            self._stripe_deliver(event)

    # --- observation ----------------------------------------------------------------

    def stripe_session(self, session_id: str) -> dict[str, Any]:
        """Return a copy of a session (payment_intent as an id)."""
        with self._lock:
            return copy.deepcopy(self._stripe_sessions[session_id])

    def stripe_intent(self, intent_id: str) -> dict[str, Any]:
        """Return a copy of a PaymentIntent."""
        with self._lock:
            return copy.deepcopy(self._stripe_intents[intent_id])

    def stripe_refunds(self, intent_id: str) -> list[dict[str, Any]]:
        """Return a PaymentIntent's refunds, oldest first."""
        with self._lock:
            return [
                copy.deepcopy(r)
                for r in self._stripe_refunds.values()
                if r["payment_intent"] == intent_id
            ]

    def stripe_events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Return the events created so far (of one type), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(e)
                for e in self._stripe_events.values()
                if kind is None or e["type"] == kind
            ]

    # --- events -----------------------------------------------------------------------

    def stripe_session_event(self, session_id: str, kind: str) -> dict[str, Any]:
        """Create (and keep) an event of `kind` about a session as it is now."""
        with self._lock:
            return copy.deepcopy(
                self._stripe_event(kind, self._stripe_sessions[session_id])
            )

    def stripe_other_event(self) -> dict[str, Any]:
        """Create an event about something other than a payment (a new customer)."""
        with self._lock:
            customer = {
                "id": _stripe_id("cus_", 14),
                "object": "customer",
                "email": "someone@example.com",
                "metadata": {},
            }
            return copy.deepcopy(self._stripe_event("customer.created", customer))

    def stripe_signed(
        self,
        event: Mapping[str, Any],
        *,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Return an event's body and headers, signed as Stripe signs them."""
        body = json.dumps(event, indent=2).encode()
        when = int(time.time()) if timestamp is None else timestamp
        key = self.stripe_webhook_secret if secret is None else secret
        return body, {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": f"t={when},v1={stripe_signature(key, when, body)}",
        }

    def stripe_send(
        self,
        event: Mapping[str, Any],
        *,
        url: str | None = None,
        secret: str | None = None,
        attempts: int = 1,
    ) -> requests.Response:
        """POST an event to `url` or the webhook URL, again until 2xx (`attempts`)."""
        target = url or self.stripe_webhook_url
        if not target:
            raise ValueError("no webhook URL: set stripe_webhook_url")
        response: requests.Response | None = None
        for attempt in range(1, max(1, attempts) + 1):
            # Each attempt is signed afresh, with its own timestamp, as Stripe does.
            body, headers = self.stripe_signed(event, secret=secret)
            try:
                response = requests.post(
                    target, data=body, headers=headers, timeout=self.notify_timeout
                )
            except requests.RequestException:
                self._stripe_delivered(event["id"], attempt, 0)
                if attempt >= attempts:
                    raise
                continue
            self._stripe_delivered(event["id"], attempt, response.status_code)
            if 200 <= response.status_code < 300:
                break
        assert response is not None
        return response

    def stripe_release(self, *, reverse: bool = False, twice: bool = False) -> None:
        """Send the held events (in reverse order, and/or each twice)."""
        with self._lock:
            held, self._stripe_held = self._stripe_held, []
            events = [copy.deepcopy(self._stripe_events[i]) for i in held]
        for event in reversed(events) if reverse else events:
            for _ in range(2 if twice else 1):
                self._stripe_send_quietly(event)

    def stripe_wait_events(self, timeout: float = 10.0) -> None:
        """Wait for events sent in the background (after API calls)."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                senders = [t for t in self._stripe_senders if t.is_alive()]
                self._stripe_senders = senders
            if not senders:
                return
            senders[0].join(max(0.0, end - time.monotonic()))
            if time.monotonic() >= end:
                raise TimeoutError("Stripe events still being sent")

    # --- routing (called from handler threads) -------------------------------------

    def _stripe_route(self, req: Request) -> Route | None:
        path = req.path
        if path.startswith("/c/pay/"):
            session_id = unquote(path.removeprefix("/c/pay/"))
            return "stripe:pay_page", False, lambda: self._stripe_page(req, session_id)
        found = self._stripe_api_route(req, [unquote(p) for p in path.split("/")[2:]])
        if found is None:
            return None
        operation, handler = found
        return operation, True, lambda: self._stripe_api(req, handler)

    def _stripe_api_route(
        self, req: Request, parts: list[str]
    ) -> tuple[str, Callable[[dict[str, Any]], _Handled]] | None:
        method = req.method
        get, post = method == "GET", method == "POST"
        match parts:
            case ["checkout", "sessions"] if post:
                return "stripe:session_create", self._stripe_create_session
            case ["checkout", "sessions", session_id] if get:
                return "stripe:session", lambda p: self._stripe_get_session(
                    session_id, p
                )
            case ["checkout", "sessions", session_id, "expire"] if post:
                return "stripe:session_expire", lambda p: self._stripe_api_expire(
                    session_id
                )
            case ["payment_intents", intent_id] if get:
                return "stripe:payment_intent", lambda p: self._stripe_get(
                    self._stripe_intents, "payment_intent", intent_id
                )
            case ["charges"] if get:
                return "stripe:charges", lambda p: self._stripe_list(
                    self._stripe_charges, p, "/v1/charges"
                )
            case ["charges", charge_id] if get:
                return "stripe:charge", lambda p: self._stripe_get(
                    self._stripe_charges, "charge", charge_id
                )
            case ["refunds"] if post:
                return "stripe:refund_create", self._stripe_create_refund
            case ["refunds"] if get:
                return "stripe:refunds", lambda p: self._stripe_list(
                    self._stripe_refunds, p, "/v1/refunds"
                )
            case ["refunds", refund_id] if get:
                return "stripe:refund", lambda p: self._stripe_get(
                    self._stripe_refunds, "refund", refund_id
                )
            case ["disputes"] if get:
                return "stripe:disputes", lambda p: self._stripe_list(
                    self._stripe_disputes, p, "/v1/disputes"
                )
            case ["events", event_id] if get:
                return "stripe:event", lambda p: self._stripe_get(
                    self._stripe_events, "event", event_id
                )
        # Stripe answers unknown paths with a JSON 404 of its own.
        return "stripe:unknown", lambda p: _stripe_error(
            f"Unrecognized request URL ({method}: {req.path}).", status=404
        )

    def _stripe_api(
        self, req: Request, handler: Callable[[dict[str, Any]], _Handled]
    ) -> Reply | None:
        """Check the key, parse the parameters, honour Idempotency-Key, answer."""
        refused = self._stripe_auth(req)
        if refused is not None:
            return refused
        version = req.headers.get("Stripe-Version")
        if version:
            with self._lock:
                self.stripe_versions_seen.add(version)
        text = req.query if req.method == "GET" else req.body.decode("utf-8", "replace")
        pairs = parse_qsl(text, keep_blank_values=True)
        try:
            params = stripe_params(pairs)
        except ValueError as exc:
            return _stripe_error(str(exc), "parameter_invalid")
        key = req.headers.get("Idempotency-Key") if req.method == "POST" else None
        if not key:
            return _answer(handler(params))
        fingerprint = hashlib.sha256(
            f"{req.method} {req.path} {sorted(pairs)}".encode()
        ).hexdigest()
        with self._lock:
            stored = self._stripe_idempotent.get(key)
            if stored is not None:
                if stored[0] != fingerprint:
                    return _stripe_error(
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with. Try using a key other "
                        f"than '{key}' if you meant to execute a different request.",
                        error_type="idempotency_error",
                    )
                replay = copy.deepcopy(stored[1])
                replay.headers["Idempotent-Replayed"] = "true"
                return replay
            # Under the lock: a concurrent request with the same key waits,
            # then replays (Stripe answers 409 while the first is running).
            handled = handler(params)
            made = handled.reply if isinstance(handled, _Dropped) else handled
            if made.status == 200:
                self._stripe_idempotent[key] = (fingerprint, _stripe_headers(made))
        return _answer(handled)

    def _stripe_auth(self, req: Request) -> Reply | None:
        given = req.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "basic":
            token = basic_auth(given)[0]
        elif scheme.lower() != "bearer":
            token = ""
        token = token.strip()
        if not token:
            return _stripe_error(
                "You did not provide an API key. You need to provide your API key "
                "in the Authorization header, using Bearer auth (e.g. "
                "'Authorization: Bearer YOUR_SECRET_KEY').",
                status=401,
            )
        if hmac.compare_digest(token.encode(), self.stripe_secret_key.encode()):
            return None
        masked = token[:8] + "*" * max(0, len(token) - 12) + token[-4:]
        return _stripe_error(f"Invalid API Key provided: {masked}", status=401)

    # --- Checkout Sessions ----------------------------------------------------------

    def _stripe_create_session(self, params: dict[str, Any]) -> Reply:
        if params.get("mode") != "payment":
            return _stripe_error("Invalid mode: must be payment", param="mode")
        for name in ("success_url", "cancel_url"):
            if name in params and not is_http_url(params[name]):
                return _stripe_error(f"Not a valid URL: {name}", param=name)
        if "success_url" not in params:
            return _stripe_missing("success_url")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            return _stripe_missing("line_items")
        total, currency = 0, ""
        for index, item in enumerate(items):
            price = item.get("price_data") if isinstance(item, dict) else None
            where = f"line_items[{index}]"
            if not isinstance(price, dict):
                return _stripe_missing(f"{where}[price_data]")
            line_currency = str(price.get("currency") or "").lower()
            if not re.fullmatch(r"[a-z]{3}", line_currency):
                return _stripe_error(
                    "Invalid currency", param=f"{where}[price_data][currency]"
                )
            product = price.get("product_data")
            if not isinstance(product, dict) or not product.get("name"):
                return _stripe_missing(f"{where}[price_data][product_data][name]")
            unit = _integer(price.get("unit_amount"))
            quantity = _integer(item.get("quantity"))
            if unit is None or quantity is None or quantity < 1:
                return _stripe_error(
                    "Invalid integer", param=f"{where}[price_data][unit_amount]"
                )
            problem = _amount_problem(unit, line_currency)
            if problem:
                return _stripe_error(
                    problem,
                    code="invalid_charge_amount",
                    param=f"{where}[price_data][unit_amount]",
                )
            if currency and line_currency != currency:
                return _stripe_error("All line items must use one currency")
            total, currency = total + unit * quantity, line_currency
        now = int(time.time())
        expires_at = _integer(params.get("expires_at"))
        if expires_at is None and "expires_at" in params:
            return _stripe_error("Invalid integer", param="expires_at")
        if expires_at is None:
            expires_at = now + _MAX_EXPIRY
        if not (
            now + _MIN_EXPIRY - _CLOCK_SLACK
            <= expires_at
            <= now + _MAX_EXPIRY + _CLOCK_SLACK
        ):
            return _stripe_error(
                "The `expires_at` timestamp must be at least 30 minutes and less "
                "than 24 hours from Checkout Session creation.",
                param="expires_at",
            )
        reference = params.get("client_reference_id")
        if reference is not None and (
            not isinstance(reference, str) or len(reference) > 200
        ):
            return _stripe_error("Invalid string", param="client_reference_id")
        session_id = _stripe_id("cs_test_", 58)
        intent_data = params.get("payment_intent_data")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": reference,
            "client_secret": None,
            "created": now,
            "currency": currency,
            "customer": None,
            "customer_email": params.get("customer_email"),
            "expires_at": expires_at,
            "livemode": False,
            "metadata": _metadata(params.get("metadata")),
            "mode": "payment",
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params["success_url"],
            "ui_mode": "hosted",
            "url": f"{self.url}/c/pay/{session_id}",
            # Private to the fake: what the PaymentIntent will carry.
            "_intent_metadata": _metadata(
                intent_data.get("metadata") if isinstance(intent_data, dict) else None
            ),
            "_description": str(items[0]["price_data"]["product_data"]["name"]),
        }
        with self._lock:
            self._stripe_sessions[session_id] = session
            return json_reply(self._stripe_session_view(session, ()))

    def _stripe_get_session(self, session_id: str, params: dict[str, Any]) -> Reply:
        expand = _expand(params)
        with self._lock:
            session = self._stripe_sessions.get(session_id)
            if session is None:
                return _stripe_missing_object("checkout.session", session_id, "session")
            event = self._stripe_expire_if_due(session)
            view = self._stripe_session_view(session, expand)
        if event is not None:
            self._stripe_deliver_in_background(event)
        return json_reply(view)

    def _stripe_api_expire(self, session_id: str) -> Reply:
        with self._lock:
            session = self._stripe_sessions.get(session_id)
            if session is None:
                return _stripe_missing_object("checkout.session", session_id, "session")
            if session["status"] != "open":
                return _stripe_error(
                    'Only Checkout Sessions with a status in ["open"] can be '
                    f"expired. This Checkout Session has a status of "
                    f'"{session["status"]}".',
                )
            event = self._stripe_expire_session(session)
            view = self._stripe_session_view(session, ())
        self._stripe_deliver_in_background(event)
        return json_reply(view)

    # --- refunds ------------------------------------------------------------------------

    def _stripe_create_refund(self, params: dict[str, Any]) -> _Handled:
        with self._lock:
            intent_id = params.get("payment_intent")
            charge_id = params.get("charge")
            if intent_id is None and charge_id is None:
                return _stripe_error(
                    "One of the following params should be provided for this "
                    "request: payment_intent or charge."
                )
            if intent_id is not None:
                intent = self._stripe_intents.get(str(intent_id))
                if intent is None:
                    return _stripe_missing_object(
                        "payment_intent", str(intent_id), "payment_intent"
                    )
                charge = self._stripe_paid_charge(intent)
            else:
                charge = self._stripe_charges.get(str(charge_id))
                if charge is None:
                    return _stripe_missing_object("charge", str(charge_id), "charge")
            if charge is None or not charge["captured"]:
                return _stripe_error(
                    "This PaymentIntent does not have a successful charge to refund.",
                    code="charge_not_refundable",
                )
            if charge["disputed"]:
                return _stripe_error(
                    f"Charge {charge['id']} has been charged back; cannot issue a "
                    "refund.",
                    code="charge_disputed",
                )
            left = charge["amount"] - charge["amount_refunded"]
            amount = _integer(params.get("amount")) if "amount" in params else left
            if amount is None or amount < 1:
                return _stripe_error(
                    "Invalid positive integer",
                    code="parameter_invalid_integer",
                    param="amount",
                )
            if amount > left:
                return _stripe_error(
                    f"Refund amount ({amount}) is greater than unrefunded amount on "
                    f"charge ({left})",
                    code="amount_too_large",
                    param="amount",
                )
            problem = _amount_problem(amount, charge["currency"])
            if problem:
                return _stripe_error(problem, code="invalid_charge_amount")
            answer = (
                self.stripe_refund_answers.pop(0) if self.stripe_refund_answers else ""
            )
            if answer == "declined":
                return _stripe_error(
                    "Refunds are not available for this payment method.",
                    code="charge_not_refundable",
                )
            status = {"pending": "pending", "failed": "failed"}.get(answer, "succeeded")
            refund = self._stripe_add_refund(
                charge, amount, _metadata(params.get("metadata")), status
            )
            self.stripe_refunds_created += 1
            event = (
                self._stripe_event("charge.refunded", charge)
                if status == "succeeded"
                else None
            )
            reply = json_reply(copy.deepcopy(refund))
        if event is not None:
            # Like Stripe: the event follows the answer, not inside it.
            self._stripe_deliver_in_background(event)
        # "lost": made, and kept for replays, but the caller never hears of it.
        return _Dropped(reply) if answer == "lost" else reply

    # --- generic reads --------------------------------------------------------------

    def _stripe_get(
        self, store: dict[str, dict[str, Any]], kind: str, ident: str
    ) -> Reply:
        with self._lock:
            obj = store.get(ident)
            if obj is None:
                return _stripe_missing_object(kind, ident, "id")
            return json_reply(_public(obj))

    def _stripe_list(
        self, store: dict[str, dict[str, Any]], params: dict[str, Any], url: str
    ) -> Reply:
        limit = _integer(params.get("limit")) if "limit" in params else 10
        if limit is None or not 1 <= limit <= 100:
            return _stripe_error("Invalid limit", param="limit")
        with self._lock:
            intent_id = params.get("payment_intent")
            if intent_id is not None and intent_id not in self._stripe_intents:
                return _stripe_missing_object(
                    "payment_intent", str(intent_id), "payment_intent"
                )
            items = [
                _public(obj)
                for obj in store.values()
                if intent_id is None or obj.get("payment_intent") == intent_id
            ]
        items.reverse()  # newest first, as Stripe lists
        return json_reply(
            {
                "object": "list",
                "data": items[:limit],
                "has_more": len(items) > limit,
                "url": url,
            }
        )

    # --- state (always under self._lock) --------------------------------------------

    def _stripe_open(self, session_id: str) -> dict[str, Any]:
        session = self._stripe_sessions[session_id]
        if session["status"] != "open":
            raise ValueError(f"session {session_id} is {session['status']}")
        return session

    def _stripe_intent_for(self, session: dict[str, Any]) -> dict[str, Any]:
        """Return the session's PaymentIntent, made at the first attempt."""
        if session["payment_intent"] is not None:
            return self._stripe_intents[session["payment_intent"]]
        intent_id = _stripe_id("pi_", 24)
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": "automatic_async",
            "client_secret": f"{intent_id}_secret_{_stripe_id('', 25)}",
            "created": int(time.time()),
            "currency": session["currency"],
            "description": session["_description"],
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(session["_intent_metadata"]),
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
        }
        self._stripe_intents[intent_id] = intent
        session["payment_intent"] = intent_id
        return intent

    def _stripe_add_charge(
        self,
        intent: dict[str, Any],
        status: str,
        *,
        amount: int,
        currency: str,
        failure: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        paid = status == "succeeded"
        charge = {
            "id": _stripe_id("ch_", 24),
            "object": "charge",
            "amount": amount,
            "amount_captured": amount if paid else 0,
            "amount_refunded": 0,
            "captured": paid,
            "created": int(time.time()),
            "currency": currency.lower(),
            "disputed": False,
            "failure_code": failure[0] if failure else None,
            "failure_message": "Your card was declined." if failure else None,
            "livemode": False,
            # A PaymentIntent's charges carry its metadata.
            "metadata": dict(intent["metadata"]),
            "outcome": {
                "network_status": "declined_by_network"
                if failure
                else "approved_by_network",
                "reason": failure[1] if failure else None,
                "type": "issuer_declined" if failure else "authorized",
            },
            "paid": paid,
            "payment_intent": intent["id"],
            "refunded": False,
            "status": status,
        }
        self._stripe_charges[charge["id"]] = charge
        intent["latest_charge"] = charge["id"]
        return charge

    def _stripe_add_refund(
        self,
        charge: dict[str, Any],
        amount: int,
        metadata: dict[str, str],
        status: str,
    ) -> dict[str, Any]:
        refund = {
            "id": _stripe_id("re_", 24),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "failure_reason": "lost_or_stolen_card" if status == "failed" else None,
            "metadata": metadata,
            "payment_intent": charge["payment_intent"],
            "reason": None,
            "status": status,
        }
        self._stripe_refunds[refund["id"]] = refund
        if status != "failed":
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        return refund

    def _stripe_paid_charge(self, intent: dict[str, Any]) -> dict[str, Any] | None:
        return next(
            (
                c
                for c in self._stripe_charges.values()
                if c["payment_intent"] == intent["id"] and c["status"] == "succeeded"
            ),
            None,
        )

    def _stripe_expire_session(self, session: dict[str, Any]) -> dict[str, Any]:
        session.update(status="expired", url=None)
        intent_id = session["payment_intent"]
        if intent_id is not None:
            self._stripe_intents[intent_id]["status"] = "canceled"
        return self._stripe_event("checkout.session.expired", session)

    def _stripe_expire_if_due(self, session: dict[str, Any]) -> dict[str, Any] | None:
        """Expire an open session past its expires_at (Stripe does it by itself)."""
        if session["status"] == "open" and time.time() >= session["expires_at"]:
            return self._stripe_expire_session(session)
        return None

    def _stripe_session_view(
        self, session: dict[str, Any], expand: tuple[str, ...]
    ) -> dict[str, Any]:
        view = _public(session)
        intent_id = session["payment_intent"]
        if intent_id is not None and (
            "payment_intent" in expand or "payment_intent.latest_charge" in expand
        ):
            intent = _public(self._stripe_intents[intent_id])
            charge_id = intent["latest_charge"]
            if charge_id and "payment_intent.latest_charge" in expand:
                intent["latest_charge"] = _public(self._stripe_charges[charge_id])
            view["payment_intent"] = intent
        return view

    def _stripe_event(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an event with a snapshot of `obj`; keep it."""
        event = {
            "id": _stripe_id("evt_", 24),
            "object": "event",
            "api_version": STRIPE_API_VERSION,
            "created": int(time.time()),
            "data": {"object": _public(obj)},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }
        self._stripe_events[event["id"]] = event
        return event

    # --- delivery -----------------------------------------------------------------

    def _stripe_deliver(self, event: dict[str, Any]) -> None:
        """Post an event now (before the payer's redirect), or hold it."""
        with self._lock:
            if self.stripe_hold_events:
                self._stripe_held.append(event["id"])
                return
        self._stripe_send_quietly(copy.deepcopy(event))

    def _stripe_deliver_in_background(self, event: dict[str, Any]) -> None:
        with self._lock:
            if self.stripe_hold_events:
                self._stripe_held.append(event["id"])
                return
            sender = threading.Thread(
                target=self._stripe_send_quietly,
                args=(copy.deepcopy(event),),
                name="fake-stripe-events",
                daemon=True,
            )
            self._stripe_senders.append(sender)
        sender.start()

    def _stripe_send_quietly(self, event: dict[str, Any]) -> None:
        if not self.stripe_webhook_url:
            return
        # Delivery problems are the receiver's to report; the payer is unaffected.
        with contextlib.suppress(requests.RequestException):
            self.stripe_send(event, attempts=self.stripe_notify_attempts)

    def _stripe_delivered(self, event_id: str, attempt: int, status: int) -> None:
        with self._lock:
            self.stripe_deliveries.append((event_id, attempt, status))

    # --- the hosted page ---------------------------------------------------------------

    def _stripe_page(self, req: Request, session_id: str) -> Reply:
        with self._lock:
            session = self._stripe_sessions.get(session_id)
            event = None if session is None else self._stripe_expire_if_due(session)
            session = copy.deepcopy(session)
        if event is not None:
            self._stripe_deliver(event)
        if session is None or not _SESSION_ID.fullmatch(session_id):
            return html_page("Not found", "<p>Something went wrong.</p>", 404)
        if session["status"] != "open":
            return html_page(
                "Session over",
                f"<p>This Checkout Session is {escape(session['status'])}.</p>",
                409,
            )
        if req.method == "GET":
            return self._stripe_form(session, "")
        if req.method != "POST":
            return Reply(405, b"Method Not Allowed", headers={"Allow": "GET, POST"})
        action = parse_form(req.body).get("action", "")
        actions: dict[str, Callable[[], Reply]] = {
            "pay": lambda: self._stripe_paid_back(session_id, self.stripe_pay),
            "pay_later": lambda: self._stripe_paid_back(
                session_id, self.stripe_pay_later
            ),
            "decline": lambda: self._stripe_declined_page(session_id),
            "cancel": lambda: redirect(str(session["cancel_url"] or session["url"])),
            "expire": lambda: self._stripe_expired_page(session_id),
        }
        if action not in actions:
            return html_page("Bad request", "<p>Choose one of the buttons.</p>", 400)
        return actions[action]()

    def _stripe_paid_back(self, session_id: str, pay: Callable[..., Any]) -> Reply:
        session = pay(session_id)
        return redirect(
            str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session_id)
        )

    def _stripe_declined_page(self, session_id: str) -> Reply:
        session = self.stripe_decline(session_id)
        return self._stripe_form(session, "Your card was declined.")

    def _stripe_expired_page(self, session_id: str) -> Reply:
        self.stripe_expire(session_id)
        return html_page("Session expired", "<p>This Checkout Session expired.</p>")

    def _stripe_form(self, session: dict[str, Any], error: str) -> Reply:
        currency = session["currency"].upper()
        places = STRIPE_PLACES.get(currency, MINOR_UNITS.get(currency, 2))
        amount = session["amount_total"] / 10**places
        buttons = "".join(
            f'<button type="submit" name="action" value="{value}">{label}</button> '
            for value, label in (
                ("pay", "Pay"),
                ("decline", "Decline"),
                ("pay_later", "Pay by bank debit"),
                ("cancel", "Back"),
                ("expire", "Let it expire"),
            )
        )
        notice = f'<p role="alert">{escape(error)}</p>' if error else ""
        return html_page(
            "Stripe Checkout",
            f"<h1>{escape(session['_description'])}</h1>"
            f'<p>Amount: <span id="amount">{amount:.{places}f} {currency}</span></p>'
            f"{notice}"
            f'<form method="post" action="/c/pay/{escape(session["id"])}">{buttons}'
            "</form>",
        )


# --- helpers -----------------------------------------------------------------------


def stripe_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the v1 signature: hex HMAC-SHA256(secret, "<timestamp>.<body>")."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def stripe_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest form pairs as Stripe reads them: `a[b][0][c]=v` → {"a": {"b": [{"c": v}]}}.

    Objects whose keys are all indices become lists; `a[]` appends.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        path = [head] + (re.findall(r"([^\[\]]*)\]", "[" + rest) if rest else [])
        node = root
        for index, name in enumerate(path):
            last = index == len(path) - 1
            if name == "":
                name = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[name] = value
            else:
                child = node.setdefault(name, {})
                if not isinstance(child, dict):
                    raise ValueError(f"Invalid parameter: {key}")
                node = child
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _expand(params: Mapping[str, Any]) -> tuple[str, ...]:
    expand = params.get("expand") or []
    return tuple(expand) if isinstance(expand, list) else (str(expand),)


def _metadata(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _integer(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and _INTEGER.fullmatch(value) else None


def _amount_problem(amount: int, currency: str) -> str:
    """Say why Stripe refuses an amount in a currency, or ""."""
    code = currency.upper()
    if code == "ISK" and amount % 100:
        return (
            "Invalid amount. Currency ISK has become effectively zero-decimal and "
            "charged amounts must be evenly divisible by 100."
        )
    if STRIPE_PLACES.get(code, MINOR_UNITS.get(code, 2)) == 3 and amount % 10:
        return f"Invalid amount: {code} amounts must be rounded to the nearest ten."
    return ""


def _public(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Copy an object without the fake's private (underscored) fields."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


def _stripe_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def _stripe_headers(reply: Reply) -> Reply:
    reply.headers.setdefault("Request-Id", _stripe_id("req_", 14))
    return reply


def _answer(handled: _Handled) -> Reply | None:
    """Return the reply to send, or None to drop the connection unanswered."""
    return None if isinstance(handled, _Dropped) else _stripe_headers(handled)


def _stripe_error(
    message: str,
    code: str | None = None,
    *,
    param: str | None = None,
    status: int = 400,
    error_type: str = "invalid_request_error",
) -> Reply:
    error: dict[str, str] = {"message": message, "type": error_type}
    if code:
        error["code"] = code
        error["doc_url"] = (
            f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"
        )
    if param:
        error["param"] = param
    return json_reply({"error": error}, status)


def _stripe_missing(param: str) -> Reply:
    return _stripe_error(
        f"Missing required param: {param}.", "parameter_missing", param=param
    )


def _stripe_missing_object(kind: str, ident: str, param: str) -> Reply:
    return _stripe_error(
        f"No such {kind}: '{ident}'", "resource_missing", param=param, status=404
    )
