"""Mastercard Payment Gateway Services (MPGS) Hosted Checkout adapter."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

from requests.auth import HTTPBasicAuth

from .base import (
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
    constant_time_equal,
    header,
    rotating_secrets,
    verify_with_secrets,
)
from .http import GatewayHTTP, json_body
from .money import in_range, parse_amount, precision_problem, to_provider

SECRET_HEADER = "X-Notification-Secret"
ID_HEADER = "X-Notification-Id"
MIN_API_VERSION = 63  # first version with INITIATE_CHECKOUT
DESCRIPTION_MAX = 127
_APPROVED = frozenset({"APPROVED", "APPROVED_AUTO", "APPROVED_PENDING_SETTLEMENT"})
_PAID_TYPES = frozenset({"PAYMENT", "CAPTURE"})
# Attempts whose failure the payer may follow with another card in the session.
_ATTEMPT_TYPES = frozenset({"PAYMENT", "AUTHORIZATION", "CAPTURE"})
# order.status -> (canonical status, note for the timeline): every value of the
# Retrieve Order enumeration (API v100), none it never sends. Source:
# https://ap-gateway.mastercard.com/api/documentation/apiDocumentation/rest-json/version/100/operation/Order%3a%20%20Retrieve%20Order.html
_ORDER_STATUS = {
    "CAPTURED": (Status.COMPLETED, ""),
    "PARTIALLY_CAPTURED": (Status.COMPLETED, "partially captured: check the amount"),
    "DISPUTED": (Status.COMPLETED, "disputed by the payer"),
    "CHARGEBACK_PROCESSED": (Status.COMPLETED, "chargeback processed"),
    "AUTHORIZED": (Status.PENDING, "authorized, not captured"),
    "REFUNDED": (Status.REFUNDED, ""),
    "EXCESSIVELY_REFUNDED": (Status.REFUNDED, "refunded in excess"),
    "PARTIALLY_REFUNDED": (Status.PARTIALLY_REFUNDED, ""),
    "REFUND_REQUESTED": (Status.COMPLETED, "refund requested, not yet executed"),
    "FAILED": (Status.FAILED, ""),
    "AUTHENTICATION_UNSUCCESSFUL": (Status.FAILED, "3-D Secure failed"),
    # A VOID of the order's last transaction: after capture (same day) the
    # money is no longer taken, before it the authorisation is released.
    "CANCELLED": (Status.VOIDED, "voided"),
    "AUTHENTICATED": (Status.PENDING, "payer authenticated, not paid yet"),
    "AUTHENTICATION_INITIATED": (Status.PENDING, "3-D Secure in progress"),
    "AUTHENTICATION_NOT_NEEDED": (Status.PENDING, "not paid yet"),
    "INITIATED": (Status.PENDING, "not paid yet"),
    "VERIFIED": (Status.PENDING, "card verified, not paid"),
    "DISBURSED": (Status.PENDING, "a disbursement (money to the payer), not a payment"),
    "FUNDING": (Status.PENDING, "a merchant funding order, not a payment"),
}
# Order statuses a person must look at, whatever the payment's status.
_REVIEW_STATUSES = frozenset(
    {"DISPUTED", "CHARGEBACK_PROCESSED", "DISBURSED", "FUNDING"}
)
# A declined attempt in a live session leaves the order open for another card:
# "if the initial transaction for an order fails, you can submit another
# initial transaction for this order" (API v15+), and Hosted Checkout offers the
# payer retries in the same checkout. Sources:
# https://eu-gateway.mastercard.com/api/documentation/integrationGuidelines/supportedFeatures/ordersAndTransactions.html
# https://developer.mastercard.com/mastercard-gateway/documentation/build/hosted-checkout/customizing-the-checkout/customizing-redirect-and-retry-behavior/
_RETRYABLE_FAILURES = frozenset({"FAILED", "AUTHENTICATION_UNSUCCESSFUL"})
# error.cause values that say the request was refused and nothing was done;
# SERVER_BUSY / SERVER_FAILED may be resubmitted ("the bank transaction will
# not be repeated"), so their outcome is unknown. Source:
# https://developer.mastercard.com/mastercard-gateway/documentation/testing/trans-error/
_REFUSED_CAUSES = frozenset({"INVALID_REQUEST", "REQUEST_REJECTED"})


class MPGSGateway(Gateway):
    """Hosted Checkout: our page opens MPGS's payment page with checkout.min.js.

    Quirks:
    - INITIATE_CHECKOUT needs API v63+; from v67 `Checkout.configure()` accepts
      only the session, so every option travels in the session request.
    - There is no payment URL to redirect to: /checkout/pay/<ref_id>/ loads the
      acquirer host's checkout.min.js with the session id.
    - The return carries `resultIndicator`; a match with `successIndicator`
      proves nothing on its own. Retrieve Order decides.
    - No order exists until the payer attempts a payment: "no order" means
      nothing was paid yet, and EXPIRED once the session window has passed.
    - A failed attempt leaves the order open (API v15+): the payer may retry in
      the same session (Hosted Checkout offers up to three retries). Until the
      session ends a decline is reported as PENDING with the attempt in
      `declined`; only after it does the order's FAILED become FAILED.
    - DISPUTED, CHARGEBACK_PROCESSED and `chargeback.amount` > 0 are not
      refunds: the payment keeps its status and is flagged for review; the
      charged-back amount (the captured total when CHARGEBACK_PROCESSED names
      none) can no longer be refunded.
    - AUTHORIZED holds the payer's funds without capturing them: still
      PENDING, but "settling" (never expired) and flagged at once.
    - CANCELLED is a VOID: of a capture (same day), the money is no longer
      taken (VOIDED); of an authorisation, nothing was (FAILED domain-side).
    - The order's REFUND transactions carry the transaction id they were
      made with: ours is our refund id, a portal refund has its own.
    - Success is HTTP 201 even when the acquirer declines: read `result` and
      `response.gatewayCode`. Faults are 4xx with `result: ERROR`.
    - Amounts arrive as JSON numbers; floats are parsed through their repr.
    - `order.description` takes at most 127 characters; longer ones are cut.
    - Notifications carry a static shared secret, not a signature: a hint that
      the domain confirms with Retrieve Order.
    - No idempotency header exists: the refund id is the MPGS transaction id,
      so a repeated PUT names the same operation.
    """

    code = "mpgs"
    display_name = "Card (Mastercard Gateway)"
    logo = "payments/logos/mpgs.svg"
    supports_refunds = True
    batch_size = 1
    secret_headers = (SECRET_HEADER, "Authorization")

    def __init__(self, settings: Mapping[str, Any]):
        super().__init__(settings)
        base_url = str(self.settings.get("api_base_url") or "").strip().rstrip("/")
        merchant_id = str(self.settings.get("merchant_id") or "").strip()
        password = str(self.settings.get("api_password") or "")
        for name, value in (
            ("MPGS_API_BASE_URL", base_url),
            ("MPGS_MERCHANT_ID", merchant_id),
            ("MPGS_API_PASSWORD", password),
        ):
            if not value:
                raise GatewayConfigError(f"{name} is not set")
        if not base_url.startswith(("https://", "http://")):
            raise GatewayConfigError("MPGS_API_BASE_URL must be an https:// URL")
        try:
            self.api_version = int(self.settings.get("api_version") or 100)
            self.session_minutes = int(self.settings.get("session_minutes") or 60)
        except (TypeError, ValueError) as exc:
            raise GatewayConfigError(
                "MPGS_API_VERSION and MPGS_SESSION_MINUTES must be whole numbers"
            ) from exc
        if self.api_version < MIN_API_VERSION:
            raise GatewayConfigError(
                f"MPGS_API_VERSION {self.api_version} is too old: INITIATE_CHECKOUT "
                f"needs {MIN_API_VERSION} or later"
            )
        self.merchant_name = str(self.settings.get("merchant_name") or merchant_id)
        self.base = (
            f"{base_url}/api/rest/version/{self.api_version}"
            f"/merchant/{_segment(merchant_id)}"
        )
        self.checkout_url = str(
            self.settings.get("checkout_url")
            or f"{base_url}/static/checkout/checkout.min.js"
        )
        self._auth = HTTPBasicAuth(f"merchant.{merchant_id}", password)
        self._webhook_secret = str(self.settings.get("webhook_secret") or "")
        self._webhook_secret_previous = str(
            self.settings.get("webhook_secret_previous") or ""
        )
        self.http = GatewayHTTP(
            "mpgs",
            **{
                key: self.settings[key]
                for key in ("connect_timeout", "read_timeout", "pool_size")
                if self.settings.get(key)
            },
        )

    # public API -------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """Open a Hosted Checkout session for the payer to pay on MPGS's page."""
        # https://ap-gateway.mastercard.com/api/documentation/integrationGuidelines/hostedCheckout/establishingAsession.html
        order = {
            "id": request.ref_id,
            "amount": to_provider(request.amount, request.currency),
            "currency": request.currency,
            "description": request.description[:DESCRIPTION_MAX],
            "reference": request.ref_id,
            "notificationUrl": request.notify_url,
        }
        payload: dict[str, Any] = {
            "apiOperation": "INITIATE_CHECKOUT",
            "interaction": {
                "operation": "PURCHASE",
                "returnUrl": request.return_url,
                "cancelUrl": request.cancel_url,
                "merchant": {"name": self.merchant_name},
                "displayControl": {
                    "billingAddress": "HIDE",
                    "shipping": "HIDE",
                    "customerEmail": "HIDE",
                },
            },
            "order": order,
        }
        if request.email:
            payload["customer"] = {"email": request.email}
        _, data = self._request("POST", "/session", op="create", body=payload)
        if data.get("result") == "ERROR":
            raise GatewayUnavailable(f"mpgs: checkout refused: {_explain(data)}")
        session = _dict(data.get("session"))
        if data.get("result") != "SUCCESS" or not session.get("id"):
            raise GatewayUnavailable(
                f"mpgs: no checkout session (result {data.get('result')!r})"
            )
        return CheckoutSession(
            payment_url=f"{request.site_url.rstrip('/')}/checkout/pay/{request.ref_id}/",
            session_id=str(session["id"]),
            expires_at=datetime.now(UTC) + timedelta(minutes=self.session_minutes),
            data={
                "success_indicator": str(data.get("successIndicator") or ""),
                "session_version": str(session.get("version") or ""),
            },
            raw=data,
        )

    def pay_page(self, ref: PaymentRef) -> tuple[str, dict[str, Any]]:
        """Return our page that opens the hosted payment page with Checkout JS."""
        return "payments/pay_mpgs.html", {
            "checkout_js": self.checkout_url,
            "session_id": ref.session_id,
        }

    def pay_page_script_origins(self) -> tuple[str, ...]:
        """Return the origin of checkout.min.js, which the pay page loads."""
        parts = urlsplit(self.checkout_url)
        return (f"{parts.scheme}://{parts.netloc}",) if parts.netloc else ()

    def return_message(self, ref: PaymentRef, params: Mapping[str, str]) -> str:
        """Compare resultIndicator with the stored successIndicator (a note only)."""
        expected = str(ref.data.get("success_indicator") or "")
        given = params.get("resultIndicator")
        if expected and constant_time_equal(expected, given):
            return "resultIndicator matches successIndicator"
        return (
            "resultIndicator missing/does not match (payer may have closed the "
            "page); confirming with Retrieve Order"
        )

    def fetch_status(self, ref: PaymentRef) -> StatusResult:
        """Retrieve the order and map it to a canonical status."""
        # https://ap-gateway.mastercard.com/api/documentation/apiDocumentation/rest-json/version/100/operation/Order%3a%20%20Retrieve%20Order.html
        http_status, data = self._request(
            "GET", f"/order/{_segment(ref.ref_id)}", op="status", idempotent=True
        )
        if data.get("result") == "ERROR":
            if _is_missing(http_status, data, "order"):
                return self._not_started(ref)
            raise GatewayUnavailable(f"mpgs: order lookup refused: {_explain(data)}")
        return self._parse(ref, data)

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund captured funds, using our refund id as the MPGS transaction id.

        Made once: after a transport fault the caller runs `fetch_refund`.
        """
        # https://ap-gateway.mastercard.com/api/documentation/apiDocumentation/rest-json/version/64/operation/Transaction%3A%20%20Refund.html
        payload = {
            "apiOperation": "REFUND",
            "transaction": {
                "amount": to_provider(request.amount, request.currency),
                "currency": request.currency,
                "reference": request.refund_id,
            },
        }
        _, data = self._request(
            "PUT", _transaction_path(request), op="refund", body=payload
        )
        if data.get("result") == "ERROR":
            cause, explanation, _ = _error_fields(data)
            if cause in _REFUSED_CAUSES and not _is_clash(explanation):
                # Definitely not done: FAILED now, the held amount is released.
                return RefundResult(
                    request.refund_id,
                    RefundStatus.FAILED,
                    message=f"refund refused: {_explain(data)}",
                    raw=data,
                )
            # A clash with an earlier attempt, or a busy server: outcome unknown.
            raise GatewayUnavailable(f"mpgs: refund not confirmed: {_explain(data)}")
        return self._parse_refund(request.refund_id, data)

    def fetch_refund(self, request: RefundRequest) -> RefundResult | None:
        """Retrieve the refund transaction; None when MPGS never saw it."""
        # https://ap-gateway.mastercard.com/api/documentation/apiDocumentation/rest-json/version/100/operation/Transaction%3a%20%20Retrieve%20Transaction.html
        http_status, data = self._request(
            "GET", _transaction_path(request), op="refund-status", idempotent=True
        )
        if data.get("result") == "ERROR":
            if _is_missing(http_status, data, "transaction", "order"):
                return None
            raise GatewayUnavailable(f"mpgs: refund lookup refused: {_explain(data)}")
        return self._parse_refund(request.refund_id, data)

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], *, verified: bool = False
    ) -> WebhookEvent:
        """Check the shared secret, then read the notification as a hint."""
        # https://test-gateway.mastercard.com/api/documentation/integrationGuidelines/supportedFeatures/pickAdditionalFunctionality/webhookNotifications.html
        used = self._verify(headers) if not verified else ""
        raw_body = body if isinstance(body, bytes) else str(body).encode()
        try:
            data = json.loads(raw_body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise WebhookRejected("malformed MPGS notification: not JSON") from exc
        order = _dict(data.get("order")) if isinstance(data, dict) else {}
        if not order.get("id"):
            raise WebhookRejected("malformed MPGS notification: no order.id")
        transaction = _dict(data.get("transaction"))
        order_status = str(order.get("status") or "")
        try:
            # A hint: an absurd (signed) amount is left to the intake's checks.
            amount, captured, refunded = _amounts(order, checked=False)
        except ValueError as exc:
            raise WebhookRejected("malformed MPGS notification: bad amount") from exc
        status = self._status_from(order_status, captured, refunded)[0]
        txn_type = str(transaction.get("type") or "")
        paid = txn_type in _PAID_TYPES and data.get("result") == "SUCCESS"
        return WebhookEvent(
            event_id=header(headers, ID_HEADER).strip()
            or hashlib.sha256(raw_body).hexdigest(),
            ref_id=str(order["id"]),
            transaction_id=str(transaction.get("id") or "") if paid else "",
            status=status if order_status else None,
            amount=amount,
            currency=str(order.get("currency") or ""),
            confirm=True,
            message=(
                f"notification: order {order_status or 'without status'}, "
                f"transaction {txn_type or 'unknown'}"
            ),
            raw=data,
            secret_used=used,
        )

    # private ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        op: str,
        idempotent: bool = False,
        body: Mapping[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        response = self.http.request(
            method,
            f"{self.base}{path}",
            op=op,
            idempotent=idempotent,
            auth=self._auth,
            json=body,
            headers={"Accept": "application/json"},
            allow_redirects=False,
        )
        if response.status_code == 401:
            raise GatewayConfigError("MPGS rejected the credentials")
        data = json_body(response, "mpgs")
        if not isinstance(data, dict):
            raise GatewayUnavailable(
                f"mpgs: {op}: unexpected answer (HTTP {response.status_code})"
            )
        if response.status_code >= 300 and data.get("result") != "ERROR":
            raise GatewayUnavailable(
                f"mpgs: {op}: HTTP {response.status_code} without an error body"
            )
        return response.status_code, data

    def _verify(self, headers: Mapping[str, str]) -> str:
        """Check the shared secret; return which one matched (current, previous)."""
        if not self._webhook_secret:
            raise WebhookRejected("MPGS_WEBHOOK_SECRET is not set")
        given = header(headers, SECRET_HEADER)
        if not given:
            raise WebhookRejected(f"missing {SECRET_HEADER} header")

        def check(secret: str) -> None:
            if not constant_time_equal(secret, given):
                raise WebhookRejected(f"{SECRET_HEADER} does not match")

        secrets = rotating_secrets(self._webhook_secret, self._webhook_secret_previous)
        return verify_with_secrets(secrets, check)[0]

    def _session_over(self, ref: PaymentRef) -> bool:
        """Tell whether the payer's checkout session has ended."""
        deadline = ref.expires_at
        if deadline is None and ref.created_at is not None:
            deadline = ref.created_at + timedelta(minutes=self.session_minutes)
        if deadline is not None and deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=UTC)
        return deadline is not None and datetime.now(UTC) >= deadline

    def _not_started(self, ref: PaymentRef) -> StatusResult:
        if self._session_over(ref):
            return StatusResult(
                ref.ref_id, Status.EXPIRED, message="no order at MPGS; session expired"
            )
        return StatusResult(
            ref.ref_id, Status.PENDING, message="no order at MPGS yet: nothing paid"
        )

    def _parse(self, ref: PaymentRef, order: Mapping[str, Any]) -> StatusResult:
        if str(order.get("id") or ref.ref_id) != ref.ref_id:
            raise GatewayUnavailable("mpgs: answer is about another order")
        try:
            amount, captured, refunded = _amounts(order)
        except ValueError as exc:
            raise GatewayUnavailable("mpgs: unreadable amount in order") from exc
        order_status = str(order.get("status") or "")
        status, note = self._status_from(order_status, captured, refunded)
        currency = str(order.get("currency") or "")
        attempts = [_dict(item) for item in order.get("transaction") or []]
        paid = [
            str(_dict(item.get("transaction")).get("id") or "")
            for item in attempts
            if item.get("result") == "SUCCESS"
            and _dict(item.get("transaction")).get("type") in _PAID_TYPES
        ]
        declined = tuple(
            str(_dict(item.get("transaction")).get("id") or "")
            for item in attempts
            if item.get("result") == "FAILURE"
            and _dict(item.get("transaction")).get("type") in _ATTEMPT_TYPES
        )
        parts = [f"order {order_status or 'without status'}", note]
        if captured > 0 or refunded > 0:
            parts.append(f"captured {captured} {currency}, refunded {refunded}")
        if status == Status.FAILED and attempts:
            code = _dict(attempts[-1].get("response")).get("gatewayCode")
            parts.append(f"last attempt {code}" if code else "")
        if order_status in _RETRYABLE_FAILURES and not self._session_over(ref):
            # The payer may still pay with another card in this session.
            status = Status.PENDING
            parts.append("the payer may try again until the session ends")
        review = _review(order, order_status, currency)
        authorized = order_status == "AUTHORIZED"
        if authorized:
            review = "authorised, not captured: capture or void at the provider"
        return StatusResult(
            ref_id=ref.ref_id,
            status=status,
            amount=captured if captured > 0 else amount,
            currency=currency,
            transaction_id=paid[0] if paid else "",
            amount_refunded=refunded,
            message="; ".join(filter(None, parts)),
            raw=order,
            review=review,
            declined=tuple(filter(None, declined)),
            settling=authorized,
            refunds=_refunds(attempts),
            amount_charged_back=_charged_back(order, order_status, captured),
        )

    def _parse_refund(self, refund_id: str, data: Mapping[str, Any]) -> RefundResult:
        transaction = _dict(data.get("transaction"))
        result = str(data.get("result") or "")
        code = str(_dict(data.get("response")).get("gatewayCode") or "")
        gateway_id = str(transaction.get("id") or refund_id)
        if result == "SUCCESS" and code in _APPROVED:
            status, message = RefundStatus.SUCCEEDED, f"refund approved ({code})"
        elif result == "FAILURE":
            status, message = RefundStatus.FAILED, f"refund declined ({code or result})"
        else:
            status = RefundStatus.PENDING
            message = f"refund {result or 'without result'} ({code or 'no code'})"
        return RefundResult(
            refund_id, status, gateway_refund_id=gateway_id, message=message, raw=data
        )

    @staticmethod
    def _status_from(
        order_status: str, captured: Decimal, refunded: Decimal
    ) -> tuple[str, str]:
        status, note = _ORDER_STATUS.get(
            order_status, (Status.PENDING, "unrecognised order status")
        )
        # The totals are the truth about refunds, whatever `status` says.
        if refunded > 0 and captured > 0:
            status = (
                Status.REFUNDED if refunded >= captured else Status.PARTIALLY_REFUNDED
            )
        return status, note


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _segment(value: str) -> str:
    return quote(value, safe="")


def _transaction_path(request: RefundRequest) -> str:
    return (
        f"/order/{_segment(request.ref_id)}/transaction/{_segment(request.refund_id)}"
    )


def _amounts(
    order: Mapping[str, Any], *, checked: bool = True
) -> tuple[Decimal | None, Decimal, Decimal]:
    """Return (amount, captured, refunded) of an order; ValueError on garbage.

    `checked` also refuses amounts too large to be a payment's.
    """
    amount = order.get("amount")
    values = (
        None if amount is None else parse_amount(amount),
        parse_amount(order.get("totalCapturedAmount") or 0),
        parse_amount(order.get("totalRefundedAmount") or 0),
    )
    if checked and not all(in_range(v) for v in values if v is not None):
        raise ValueError("amount out of range")
    return values


def _refunds(attempts: list[dict[str, Any]]) -> tuple[ProviderRefund, ...]:
    """List the order's REFUND transactions with their outcome."""
    refunds = []
    for item in attempts:
        transaction = _dict(item.get("transaction"))
        if transaction.get("type") != "REFUND":
            continue
        try:
            amount = parse_amount(transaction.get("amount") or 0)
        except ValueError:
            continue
        result = item.get("result")
        status = {"SUCCESS": RefundStatus.SUCCEEDED, "FAILURE": RefundStatus.FAILED}
        refunds.append(
            ProviderRefund(
                gateway_refund_id=str(transaction.get("id") or ""),
                amount=amount,
                status=status.get(str(result), RefundStatus.PENDING),
            )
        )
    return tuple(refunds)


def _charged_back(
    order: Mapping[str, Any], order_status: str, captured: Decimal
) -> Decimal | None:
    """Return what the payer's bank took back, or None when nothing says."""
    chargeback = _dict(order.get("chargeback"))
    if "amount" in chargeback:
        try:
            amount = parse_amount(chargeback["amount"])
        except ValueError:
            amount = None
        if amount is not None and in_range(amount) and amount >= 0:
            return amount
    if order_status == "CHARGEBACK_PROCESSED":
        return captured  # named without an amount: assume all of it
    return None


def _review(order: Mapping[str, Any], order_status: str, currency: str) -> str:
    """Say what about an order needs a person (dispute, chargeback), or ""."""
    chargeback = _dict(order.get("chargeback"))
    try:
        amount = parse_amount(chargeback["amount"]) if "amount" in chargeback else None
    except ValueError:
        amount = None
    if amount is not None and not in_range(amount):
        return f"MPGS: chargeback with an unreadable amount (order {order_status})"
    if amount is not None and amount > 0:
        charged = str(chargeback.get("currency") or currency)
        charged_back = f"{_money(amount, charged)} {charged}"
        return f"MPGS: chargeback of {charged_back} (order {order_status})"
    if order_status in _REVIEW_STATUSES:
        note = _ORDER_STATUS[order_status][1]
        try:
            captured = parse_amount(order.get("totalCapturedAmount") or 0)
        except ValueError:
            captured = Decimal(0)
        paid = (
            f" ({_money(captured, currency)} {currency} captured)" if captured else ""
        )
        return f"MPGS: order {order_status}: {note}{paid}"
    return ""


def _money(amount: Decimal, currency: str) -> str:
    """Format an amount at its currency's places, unless that would round it."""
    fits = not precision_problem(amount, currency)
    return to_provider(amount, currency) if fits else format(amount, "f")


def _error_fields(data: Mapping[str, Any]) -> tuple[str, str, str]:
    error = _dict(data.get("error"))
    return (
        str(error.get("cause") or ""),
        str(error.get("explanation") or ""),
        str(error.get("field") or ""),
    )


def _explain(data: Mapping[str, Any]) -> str:
    cause, explanation, _ = _error_fields(data)
    return ": ".join(filter(None, (cause, explanation))) or "no explanation"


def _is_clash(explanation: str) -> bool:
    """Tell whether a refusal is about our transaction id being taken already."""
    text = explanation.lower()
    return "duplicate" in text or any(
        f"already {word}" in text for word in ("exist", "in use", "been used", "used")
    )


def _is_missing(http_status: int, data: Mapping[str, Any], *kinds: str) -> bool:
    """Tell whether an ERROR answer says the order or transaction does not exist."""
    cause, explanation, field = _error_fields(data)
    if http_status not in (400, 404) or cause != "INVALID_REQUEST":
        return False
    text = explanation.lower()
    for kind in kinds:
        if field.lower() in (f"{kind}id", f"{kind}.id"):
            return True
        if kind in text and any(
            marker in text
            for marker in (f"no {kind}", "not exist", "not found", "unable to find")
        ):
            return True
    return False
