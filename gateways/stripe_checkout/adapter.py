"""The Stripe Checkout adapter: sessions, status, refunds and webhooks."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import stripe

from .. import money
from ..base import (
    CheckoutRequest,
    CheckoutSession,
    Gateway,
    GatewayConfigError,
    GatewayUnavailable,
    PaymentRef,
    ProviderRefund,
    RefundRequest,
    RefundResult,
    RefundStatus,
    Status,
    StatusResult,
    WebhookEvent,
    WebhookRejected,
    header,
    rotating_secrets,
    verify_with_secrets,
)
from ..http import GatewayHTTP
from .objects import (
    REFUND_STATUS,
    as_dict,
    charged_back,
    dispute_review,
    event_note,
    failure_note,
    listed,
    metadata_of,
    object_id,
    positive,
    read_minor,
    ref_of,
    refund_result,
    scrub,
    timestamp,
    to_stripe_minor,
)
from .transport import StripeTransport, operation, quiet_library_logs

NAME = "stripe"
DEFAULT_API_BASE = "https://api.stripe.com"
SIGNATURE_HEADER = "Stripe-Signature"
# Stripe's own bounds for `expires_at`: 30 minutes to 24 hours after creation.
# https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-expires_at
MIN_SESSION_MINUTES, MAX_SESSION_MINUTES = 30, 24 * 60
# The events this adapter acts on; every one is confirmed by reading the
# session again (`confirm=True`). Others are verified, stored and ignored.
# https://docs.stripe.com/api/events/types
_SESSION_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)
_CHARGE_EVENTS = frozenset({"charge.refunded", "charge.refund.updated"})
_DISPUTE_EVENTS = frozenset(
    {
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
    }
)
_T = TypeVar("_T")


class _Refused(Exception):
    """Stripe refused a request (HTTP 400/402/404): a definite answer, not a fault."""

    def __init__(self, code: str, message: str, status: int | None):
        super().__init__(f"{code or 'refused'}: {message}")
        self.code = code
        self.http_status = status


class StripeGateway(Gateway):
    """Stripe Checkout: the payer pays on Stripe's hosted page (`session.url`).

    Quirks:
    - The library makes the HTTP calls; its transport here is GatewayHTTP, so
      timeouts, the customer-facing time budget, pooling and log redaction
      are those of every gateway. Library retries are off: GETs are retried
      by GatewayHTTP, POSTs carry an Idempotency-Key and are made once.
    - A session has no PaymentIntent until the payer submits the form
      (API 2022-08-01 and later): the checkout's transaction id is the
      session id; once a report names the PaymentIntent, it becomes the
      payment's transaction id (charge and dispute events name only that).
    - A declined card keeps the session open for another attempt; only when
      the session has ended does the decline make the payment FAILED.
    - `payment_status=unpaid` on a `complete` session is a delayed method
      (bank debit) still processing: pending and settling (never expired)
      until `checkout.session.async_payment_succeeded` / `_failed`.
    - `payment_status` stays `paid` after refunds: the charges' refunds
      decide PARTIALLY_REFUNDED / REFUNDED. Refunds made here carry our
      refund id in their metadata and as the Idempotency-Key.
    - A dispute is not a refund: the payment keeps its status and is flagged;
      a lost dispute is the amount charged back.
    - Amounts are integers in Stripe's minor unit, which differs from ISO
      4217 for ISK and MGA (see `objects.STRIPE_PLACES`).
    - Webhooks are signed (`Stripe-Signature`, HMAC-SHA256 over
      "<t>.<raw body>", 300 s tolerance) and verified by the library; every
      event that concerns money is confirmed by reading the session again.
    """

    code = "stripe"
    display_name = "Card (Stripe)"
    logo = "payments/logos/stripe.svg"
    supports_refunds = True
    batch_size = 1
    secret_headers = (SIGNATURE_HEADER, "Authorization")

    def __init__(self, settings: Mapping[str, Any]):
        super().__init__(settings)
        secret_key = str(self.settings.get("secret_key") or "").strip()
        if not secret_key:
            raise GatewayConfigError("STRIPE_SECRET_KEY is not set")
        if secret_key.startswith("pk_"):
            raise GatewayConfigError(
                "STRIPE_SECRET_KEY holds a publishable key (pk_…): use the secret "
                "key (sk_…) or a restricted key (rk_…)"
            )
        self.api_base = _api_base(str(self.settings.get("api_base") or ""))
        self._webhook_secret = str(self.settings.get("webhook_secret") or "").strip()
        self._webhook_secret_previous = str(
            self.settings.get("webhook_secret_previous") or ""
        ).strip()
        try:
            self.session_minutes = int(self.settings.get("session_minutes") or 60)
            self.http = GatewayHTTP(
                NAME,
                connect_timeout=float(self.settings.get("connect_timeout") or 5),
                read_timeout=float(self.settings.get("read_timeout") or 20),
                pool_size=int(self.settings.get("pool_size") or 16),
            )
        except (TypeError, ValueError) as exc:
            raise GatewayConfigError(
                "STRIPE_SESSION_MINUTES, timeouts and pool size must be numbers"
            ) from exc
        if not MIN_SESSION_MINUTES <= self.session_minutes <= MAX_SESSION_MINUTES:
            raise GatewayConfigError(
                f"STRIPE_SESSION_MINUTES must be between {MIN_SESSION_MINUTES} and "
                f"{MAX_SESSION_MINUTES} (Stripe's bounds for expires_at)"
            )
        quiet_library_logs()
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": self.api_base},
            http_client=StripeTransport(self.http),
            max_network_retries=0,
        )

    # public API -------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """Create a Checkout Session and return Stripe's hosted page for it."""
        currency = request.currency.upper()
        try:
            unit_amount = to_stripe_minor(request.amount, currency)
        except ValueError as exc:
            raise GatewayConfigError(f"Stripe cannot charge this price: {exc}") from exc
        # A minute inside Stripe's bounds at either end, for clock differences.
        seconds = min(
            max(self.session_minutes * 60, MIN_SESSION_MINUTES * 60 + 60),
            MAX_SESSION_MINUTES * 60 - 60,
        )
        expires_at = datetime.now(UTC) + timedelta(seconds=seconds)
        metadata = {"ref_id": request.ref_id}
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": unit_amount,
                        "product_data": {"name": request.description[:250]},
                    },
                }
            ],
            "client_reference_id": request.ref_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": _with_query(
                request.return_url, "session_id={CHECKOUT_SESSION_ID}"
            ),
            "cancel_url": request.cancel_url,
            "expires_at": int(expires_at.timestamp()),
        }
        if request.email:
            params["customer_email"] = request.email
        # https://docs.stripe.com/api/checkout/sessions/create
        try:
            session = self._call(
                "create",
                lambda: self.client.v1.checkout.sessions.create(
                    params=params, options={"idempotency_key": request.ref_id}
                ),
            )
        except _Refused as exc:
            raise GatewayUnavailable(f"stripe: checkout refused: {exc}") from exc
        url = str(session.get("url") or "")
        session_id = str(session.get("id") or "")
        if not session_id or not url.startswith(("https://", "http://")):
            raise GatewayUnavailable("stripe: the session has no id or url")
        if len(url) > 1000 or len(session_id) > 128:
            raise GatewayUnavailable("stripe: the session id or url is too long")
        return CheckoutSession(
            payment_url=url,
            transaction_id=object_id(session.get("payment_intent")) or session_id,
            session_id=session_id,
            expires_at=timestamp(session.get("expires_at")) or expires_at,
            raw=scrub(session),
        )

    def return_message(self, ref: PaymentRef, params: Mapping[str, str]) -> str:
        """Compare the returned session_id with ours (a note only)."""
        given = str(params.get("session_id") or "")
        if ref.session_id and given == ref.session_id:
            return "session_id matches the checkout session"
        return "session_id missing or not ours; confirming with the session"

    def fetch_status(self, ref: PaymentRef) -> StatusResult:
        """Retrieve the session, its PaymentIntent and charges; map them."""
        if not ref.session_id:
            return self._without_session(ref)
        # https://docs.stripe.com/api/checkout/sessions/retrieve
        try:
            session = self._call(
                "status",
                lambda: self.client.v1.checkout.sessions.retrieve(
                    ref.session_id, params={"expand": ["payment_intent"]}
                ),
            )
        except _Refused as exc:
            if exc.code != "resource_missing":
                raise GatewayUnavailable(
                    f"stripe: session lookup refused: {exc}"
                ) from exc
            return self._unknown_session(ref)
        if str(session.get("id") or "") != ref.session_id or ref_of(session) not in (
            "",
            ref.ref_id,
        ):
            raise GatewayUnavailable("stripe: answer is about another session")
        # Expanded as asked; a bare id still names the PaymentIntent.
        named = session.get("payment_intent")
        intent_id = object_id(named)
        intent = named if isinstance(named, dict) else {"id": intent_id}
        charges = self._charges(intent_id)
        return self._parse(ref, session, intent if intent_id else {}, charges)

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund part or all of the PaymentIntent, keyed by our refund id.

        Made once: after a transport fault the caller runs `fetch_refund`.
        """
        currency = request.currency.upper()
        try:
            amount = to_stripe_minor(request.amount, currency)
        except ValueError as exc:
            return RefundResult(
                request.refund_id,
                RefundStatus.FAILED,
                message=f"Stripe cannot refund this amount: {exc}",
            )
        intent_id = self._intent_id(request)
        if not intent_id:
            return RefundResult(
                request.refund_id,
                RefundStatus.FAILED,
                message="no PaymentIntent at Stripe for this payment: nothing paid",
            )
        params = {
            "payment_intent": intent_id,
            "amount": amount,
            "metadata": {
                "refund_id": request.refund_id,
                "ref_id": request.ref_id,
                **({"reason": request.reason[:500]} if request.reason else {}),
            },
        }
        # https://docs.stripe.com/api/refunds/create
        try:
            refund = self._call(
                "refund",
                lambda: self.client.v1.refunds.create(
                    params=params, options={"idempotency_key": request.refund_id}
                ),
            )
        except _Refused as exc:
            # Stripe refused it (amount too large, charge disputed…): not done.
            return RefundResult(
                request.refund_id,
                RefundStatus.FAILED,
                message=f"refund refused: {exc}",
                raw={"error": {"code": exc.code, "http_status": exc.http_status}},
            )
        return refund_result(request.refund_id, refund)

    def fetch_refund(self, request: RefundRequest) -> RefundResult | None:
        """Find our refund among the PaymentIntent's; None when Stripe never saw it."""
        intent_id = self._intent_id(request)
        if not intent_id:
            return None
        for refund in self._refunds(intent_id):
            if metadata_of(refund).get("refund_id") == request.refund_id:
                return refund_result(request.refund_id, refund)
        return None

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], *, verified: bool = False
    ) -> WebhookEvent:
        """Verify the signature on the raw body, then read the event as a hint."""
        # https://docs.stripe.com/webhooks#verify-official-libraries
        raw = body if isinstance(body, bytes) else str(body).encode()
        used = self._verify(raw, headers) if not verified else ""
        return replace(self._read_event(raw), secret_used=used)

    def _read_event(self, raw: bytes) -> WebhookEvent:
        """Read a verified event as a hint."""
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise WebhookRejected("malformed Stripe event: not JSON") from exc
        data = as_dict(event.get("data")) if isinstance(event, dict) else {}
        obj = as_dict(data.get("object"))
        event_id = str(event.get("id") or "") if isinstance(event, dict) else ""
        kind = str(event.get("type") or "") if isinstance(event, dict) else ""
        if not event_id or not kind or not obj:
            raise WebhookRejected("malformed Stripe event: no id, type or object")
        message = f"event {kind}"
        if kind in _SESSION_EVENTS:
            payment_status = str(obj.get("payment_status") or "")
            return WebhookEvent(
                event_id=event_id,
                ref_id=ref_of(obj),
                confirm=True,
                message=f"{message} (payment_status {payment_status or 'none'})",
                raw=event,
            )
        if kind in _CHARGE_EVENTS | _DISPUTE_EVENTS:
            ref_id = ref_of(obj)
            return WebhookEvent(
                event_id=event_id,
                ref_id=ref_id,
                # Dispute objects carry no metadata of ours: the PaymentIntent
                # names the payment (stored once a report named it).
                transaction_id="" if ref_id else object_id(obj.get("payment_intent")),
                confirm=True,
                message=event_note(kind, obj),
                raw=event,
            )
        return WebhookEvent(
            event_id=event_id, message=f"{message}: not acted on", raw=event
        )

    # private ------------------------------------------------------------------------

    def _call(self, op: str, send: Callable[[], _T]) -> dict[str, Any]:
        """Make one library call; translate its errors; return a plain dict."""
        token = operation.set(op)
        try:
            answer = send()
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise GatewayConfigError(
                f"Stripe rejected the secret key (HTTP {exc.http_status})"
            ) from exc
        except stripe.IdempotencyError as exc:
            # Same key, other parameters: what the first request did is unknown.
            raise GatewayUnavailable(f"stripe: {op}: idempotency conflict") from exc
        except (stripe.InvalidRequestError, stripe.CardError) as exc:
            error = exc.error
            raise _Refused(
                str(getattr(error, "code", None) or exc.code or ""),
                str(getattr(error, "message", None) or exc.user_message or ""),
                exc.http_status,
            ) from exc
        except stripe.StripeError as exc:
            # 409, 5xx without a JSON error, an unreadable body: retryable.
            status = exc.http_status or "no status"
            raise GatewayUnavailable(
                f"stripe: {op}: {type(exc).__name__} (HTTP {status})"
            ) from exc
        except UnicodeDecodeError as exc:
            # The library decodes every body as UTF-8 before parsing it.
            raise GatewayUnavailable(f"stripe: {op}: unreadable answer") from exc
        finally:
            operation.reset(token)
        data = answer.to_dict() if hasattr(answer, "to_dict") else answer
        if not isinstance(data, dict):
            raise GatewayUnavailable(f"stripe: {op}: unexpected answer")
        return data

    def _charges(self, intent_id: str) -> list[dict[str, Any]]:
        """List a PaymentIntent's charges (every attempt), oldest first."""
        if not intent_id:
            return []
        # https://docs.stripe.com/api/charges/list
        answer = self._listing(
            "charges",
            lambda: self.client.v1.charges.list(
                params={"payment_intent": intent_id, "limit": 100}
            ),
        )
        return listed(answer, "charge")

    def _refunds(self, intent_id: str) -> list[dict[str, Any]]:
        """List a PaymentIntent's refunds, whoever made them."""
        # https://docs.stripe.com/api/refunds/list
        try:
            answer = self._call(
                "refunds",
                lambda: self.client.v1.refunds.list(
                    params={"payment_intent": intent_id, "limit": 100}
                ),
            )
        except _Refused as exc:
            if exc.code == "resource_missing":
                return []  # no such PaymentIntent: no refund of it either
            raise GatewayUnavailable(f"stripe: refunds lookup refused: {exc}") from exc
        return listed(answer, "refund")

    def _disputes(self, intent_id: str) -> list[dict[str, Any]]:
        """List a PaymentIntent's disputes."""
        # https://docs.stripe.com/api/disputes/list
        answer = self._listing(
            "disputes",
            lambda: self.client.v1.disputes.list(
                params={"payment_intent": intent_id, "limit": 100}
            ),
        )
        return listed(answer, "dispute")

    def _listing(self, op: str, send: Callable[[], _T]) -> dict[str, Any]:
        """Make a list call whose refusal can only be a fault (ours is a known id)."""
        try:
            return self._call(op, send)
        except _Refused as exc:
            raise GatewayUnavailable(f"stripe: {op} lookup refused: {exc}") from exc

    def _intent_id(self, request: RefundRequest) -> str:
        """Return the PaymentIntent of a refund's payment (from its session if need be)."""
        known = request.transaction_id
        if known.startswith("pi_"):
            return known
        if not known.startswith("cs_"):
            return ""
        try:
            session = self._call(
                "status", lambda: self.client.v1.checkout.sessions.retrieve(known)
            )
        except _Refused as exc:
            if exc.code == "resource_missing":
                return ""
            raise GatewayUnavailable(f"stripe: session lookup refused: {exc}") from exc
        return object_id(session.get("payment_intent"))

    def _verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        """Check the signature; return which secret made it (current, previous)."""
        if not self._webhook_secret:
            raise WebhookRejected("STRIPE_WEBHOOK_SECRET is not set")
        signature = header(headers, SIGNATURE_HEADER)
        if not signature:
            raise WebhookRejected(f"missing {SIGNATURE_HEADER} header")

        def check(secret: str) -> None:
            try:
                stripe.WebhookSignature.verify_header(
                    body, signature, secret, tolerance=stripe.Webhook.DEFAULT_TOLERANCE
                )
            except stripe.SignatureVerificationError as exc:
                # The library's own words (no secret in them): mismatch, old.
                raise WebhookRejected(
                    f"{SIGNATURE_HEADER}: {exc.user_message}"
                ) from exc
            except UnicodeDecodeError as exc:
                raise WebhookRejected("malformed Stripe event: not UTF-8") from exc

        secrets = rotating_secrets(self._webhook_secret, self._webhook_secret_previous)
        return verify_with_secrets(secrets, check)[0]

    def _deadline_passed(self, ref: PaymentRef) -> bool:
        deadline = ref.expires_at
        if deadline is None and ref.created_at is not None:
            deadline = ref.created_at + timedelta(minutes=self.session_minutes)
        if deadline is not None and deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=UTC)
        return deadline is not None and datetime.now(UTC) >= deadline

    def _without_session(self, ref: PaymentRef) -> StatusResult:
        # No session was ever opened: nothing can have been paid.
        status = Status.EXPIRED if self._deadline_passed(ref) else Status.PENDING
        return StatusResult(ref.ref_id, status, message="no Stripe checkout session")

    def _unknown_session(self, ref: PaymentRef) -> StatusResult:
        # Another account or mode (test/live) than the one that created it, or
        # a session id that never existed: an outage until the deadline.
        if not self._deadline_passed(ref):
            raise GatewayUnavailable("stripe: no such checkout session (yet)")
        return StatusResult(
            ref.ref_id,
            Status.FAILED,
            message=f"Stripe does not know checkout session {ref.session_id}",
        )

    def _parse(
        self,
        ref: PaymentRef,
        session: Mapping[str, Any],
        intent: Mapping[str, Any],
        charges: list[dict[str, Any]],
    ) -> StatusResult:
        succeeded = [c for c in charges if c.get("status") == "succeeded"]
        currency = str(
            (succeeded[-1].get("currency") if succeeded else "")
            or session.get("currency")
            or intent.get("currency")
            or ref.currency
        ).upper()
        try:
            captured = sum(
                (read_minor(c.get("amount_captured"), currency) for c in succeeded),
                Decimal(0),
            )
            if captured == 0 and session.get("payment_status") == "paid":
                # Paid without a charge listed (another payment method object).
                captured = read_minor(
                    intent.get("amount_received") or session.get("amount_total"),
                    currency,
                )
        except ValueError as exc:
            raise GatewayUnavailable("stripe: unreadable amount in the answer") from exc
        declined = tuple(
            str(c.get("id") or "") for c in charges if c.get("status") == "failed"
        )
        intent_id = str(intent.get("id") or "")
        failure = failure_note(charges, intent)
        status, message, settling = self._status_from(
            ref, session, intent, captured, failure
        )
        refunds, refunded = (), Decimal(0)
        if captured > 0 and any(positive(c.get("amount_refunded")) for c in charges):
            refunds, refunded = self._provider_refunds(intent_id, currency)
        if captured > 0 and refunded > 0:
            status = (
                Status.REFUNDED if refunded >= captured else Status.PARTIALLY_REFUNDED
            )
        disputes = (
            self._disputes(intent_id) if any(c.get("disputed") for c in charges) else []
        )
        review = ""
        if intent.get("status") == "requires_capture":
            review = "Stripe: authorised, not captured: capture or cancel the payment"
        parts = [message]
        if captured > 0:
            parts.append(f"captured {money.to_provider(captured, currency)} {currency}")
        if refunded > 0:
            parts.append(f"refunded {money.to_provider(refunded, currency)}")
        return StatusResult(
            ref_id=ref.ref_id,
            status=status,
            amount=captured if captured > 0 else None,
            currency=currency,
            transaction_id=intent_id,
            amount_refunded=refunded if captured > 0 else None,
            message="; ".join(filter(None, parts)),
            raw=scrub(
                {
                    "session": session,
                    "charges": charges,
                    **({"disputes": disputes} if disputes else {}),
                }
            ),
            settling=settling,
            refunds=refunds if captured > 0 else None,
            amount_charged_back=charged_back(disputes, currency),
            review="\n".join(filter(None, [review, dispute_review(disputes)])),
            declined=tuple(filter(None, declined)),
        )

    def _status_from(
        self,
        ref: PaymentRef,
        session: Mapping[str, Any],
        intent: Mapping[str, Any],
        captured: Decimal,
        failure: str,
    ) -> tuple[str, str, bool]:
        """Return (status, note, settling) before refunds are counted."""
        state = str(session.get("status") or "")
        paying = str(session.get("payment_status") or "")
        intent_state = str(intent.get("status") or "")
        note = f"session {state or 'without status'}, payment {paying or 'unknown'}"
        if captured > 0:
            return Status.COMPLETED, note, False
        if intent_state == "requires_capture":
            return Status.PENDING, f"{note}: authorised, not captured", True
        if intent_state == "processing" or (
            state == "complete"
            and intent_state not in ("requires_payment_method", "canceled")
        ):
            return Status.PENDING, f"{note}: processing, settles later", True
        if state == "complete":
            # A delayed method that failed: the session cannot be paid again.
            return Status.FAILED, f"{note}: payment failed{failure}", False
        if state == "expired":
            if failure:
                return Status.FAILED, f"{note}: declined{failure}", False
            return Status.EXPIRED, note, False
        if state == "open" and failure and self._deadline_passed(ref):
            return Status.FAILED, f"{note}: declined{failure}", False
        if state == "open":
            return Status.PENDING, note, False
        return Status.PENDING, f"{note}: unrecognised session status", False

    def _provider_refunds(
        self, intent_id: str, currency: str
    ) -> tuple[tuple[ProviderRefund, ...], Decimal]:
        """List the refunds (ours by our id) and the succeeded total."""
        found = []
        total = Decimal(0)
        for refund in self._refunds(intent_id):
            try:
                amount = read_minor(refund.get("amount"), currency)
            except ValueError as exc:
                raise GatewayUnavailable("stripe: unreadable refund amount") from exc
            status = REFUND_STATUS.get(str(refund.get("status")), RefundStatus.PENDING)
            ours = str(metadata_of(refund).get("refund_id") or "")
            found.append(
                ProviderRefund(ours or str(refund.get("id") or ""), amount, status)
            )
            if status == RefundStatus.SUCCEEDED:
                total += amount
        return tuple(found), total


def _api_base(value: str) -> str:
    """Check STRIPE_API_BASE: https, or plain http to a loopback fake only."""
    base = value.strip().rstrip("/") or DEFAULT_API_BASE
    parts = urlsplit(base)
    if parts.scheme == "https" and parts.hostname:
        return base
    if parts.scheme == "http" and parts.hostname:
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if loopback:
            return base
    raise GatewayConfigError(
        "STRIPE_API_BASE must be an https:// URL (plain http only to loopback)"
    )


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"
