"""HyperPay COPYandPAY adapter (ACI's Open Payment Platform at oppwa.com)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from django.core.cache import caches

from ..base import (
    CheckoutRequest,
    CheckoutSession,
    Gateway,
    GatewayConfigError,
    GatewayUnavailable,
    PaymentRef,
    RefundRequest,
    RefundResult,
    RefundStatus,
    StatusResult,
    WebhookEvent,
    WebhookRejected,
    rotating_secrets,
    verify_with_secrets,
)
from ..http import GatewayHTTP, json_body
from ..money import to_provider
from .codes import CHECKOUT_CREATED, DUPLICATE, INVALID_PARAMETER, NOT_FOUND, Outcome
from .config import MADA, entity_problem, parse_brands
from .limits import RateLimiter
from .notifications import decrypt, webhook_key
from .reports import (
    CHARGEBACK,
    CHARGEBACK_REVERSAL,
    DEBIT,
    DONE,
    REFUND,
    REVERSAL,
    Transaction,
    notification_hint,
    outcome_of,
    paid_through,
    parse_transaction,
    read_transaction,
    refund_result,
    result_of,
    summarise,
)

# A checkout id "expires when a payment has been finalized successfully by
# user, but not later than 30 minutes". Source:
# https://developers.primeiropay.com/getting-started/hosted-checkout/copy-and-pay-1
CHECKOUT_MINUTES = 30
CHECKOUT_STATUS_PER_MINUTE = 9  # per checkout id (see limits.py)
QUERY_PER_MINUTE = 2  # per entity and kind of transaction report
# Transactions that tell about a payment of ours when a notification names them.
_PAYMENT_NEWS = frozenset({DEBIT, REVERSAL, CHARGEBACK, CHARGEBACK_REVERSAL})
# Key of the payment's gateway data listing its checkouts (CheckoutSession.data).
CHECKOUTS = "checkouts"


@dataclass(frozen=True)
class Widget:
    """One COPYandPAY widget of the pay page: its entity and the brands it shows."""

    key: str
    label: str
    entity_id: str
    brands: tuple[str, ...]


class HyperPayGateway(Gateway):
    """COPYandPAY: our page renders HyperPay's payment widget for a checkout.

    Quirks:
    - Every call carries a Bearer access token and an `entityId`; bodies are
      form-encoded; every answer has `result.code`, classified by the
      documented groups (codes.py). HTTP 401/403: token or entity refused.
    - Saudi mada cards need their own entity: with HYPERPAY_MADA_ENTITY_ID set,
      each payment gets two checkouts (cards, mada) and the pay page offers
      both. Whichever was paid, its entity is recorded (StatusResult.data) and
      every later report and refund uses it.
    - The payer's return carries `id` and `resourcePath`: neither is fetched.
      The status is read from the checkout ids stored at creation, and the
      answer's `merchantTransactionId` must be our ref_id.
    - A checkout lives 30 minutes at most; its status endpoint answers 9 times a
      minute. After that only the transaction reports know the payment
      (`/v1/query?merchantTransactionId=`, 2 a minute): a payment whose payer
      never came back still settles. Both budgets are kept here (limits.py).
    - A decline ends the payment (FAILED); a communication error (900.x00,
      000.400.030) leaves its outcome unknown: PENDING, never expired, flagged.
    - Waiting for a non-instant payment (800.400.5, 100.400.500) can last days:
      PENDING and never expired meanwhile.
    - Refunds (RF) and chargebacks (CB) are transactions of their own with their
      own ids; once paid, the payment's report with its linked transactions
      (`/v3/query/{id}?includeLinkedTransactions=true`) lists them.
    - No idempotency key exists: our refund id is the refund's
      `merchantTransactionId`, and a refund whose answer was lost is looked up
      by it before anything is sent again (a repeat is blocked as a duplicate).
    - Notifications are AES-256-GCM encrypted (notifications.py); the body is
      trusted once it decrypts, but a payment's news is confirmed with a status
      call, which also learns the entity it was paid through.
    """

    code = "hyperpay"
    display_name = "Card (HyperPay)"
    logo = "payments/logos/hyperpay.svg"
    supports_refunds = True
    batch_size = 1
    secret_headers = ("Authorization",)

    def __init__(self, settings: Mapping[str, Any]):
        super().__init__(settings)
        base_url = str(self.settings.get("api_base_url") or "").strip().rstrip("/")
        token = str(self.settings.get("access_token") or "").strip()
        entity_id = str(self.settings.get("entity_id") or "").strip()
        mada_entity_id = str(self.settings.get("mada_entity_id") or "").strip()
        for name, value in (
            ("HYPERPAY_API_BASE_URL", base_url),
            ("HYPERPAY_ACCESS_TOKEN", token),
            ("HYPERPAY_ENTITY_ID", entity_id),
        ):
            if not value:
                raise GatewayConfigError(f"{name} is not set")
        if not base_url.startswith(("https://", "http://")):
            raise GatewayConfigError(
                "HYPERPAY_API_BASE_URL must be an https:// URL, e.g. "
                "https://eu-test.oppwa.com"
            )
        problems = [entity_problem("HYPERPAY_ENTITY_ID", entity_id)]
        if mada_entity_id:
            problems.append(entity_problem("HYPERPAY_MADA_ENTITY_ID", mada_entity_id))
        payment_type = str(self.settings.get("payment_type") or DEBIT).strip().upper()
        if payment_type != DEBIT:
            problems.append(
                "HYPERPAY_PAYMENT_TYPE must be DB (debit): pre-authorisations are "
                "not captured by this back office"
            )
        # Budgets are shared by every process through the cache (limits.py).
        budget_cache = caches[str(self.settings.get("cache") or "default")]
        try:
            brands = parse_brands(self.settings.get("brands") or "")
            self._webhook_key = webhook_key(str(self.settings.get("webhook_key") or ""))
            self._webhook_key_previous = webhook_key(
                str(self.settings.get("webhook_key_previous") or "")
            )
            query_per_minute = int(
                self.settings.get("query_per_minute", QUERY_PER_MINUTE)
            )
            self._query_budget = RateLimiter(
                query_per_minute, name="hyperpay-query", cache=budget_cache
            )
        except ValueError as exc:
            problems.append(str(exc))
        if problems := [p for p in problems if p]:
            raise GatewayConfigError("; ".join(problems))
        self.base_url = base_url
        self.payment_type = payment_type
        self.widgets = [Widget("card", "Card", entity_id, brands)]
        if mada_entity_id:
            # mada has its own entity, hence its own checkout and widget.
            self.widgets[0] = Widget(
                "card", "Card", entity_id, tuple(b for b in brands if b != MADA)
            )
            self.widgets.append(Widget("mada", "mada", mada_entity_id, (MADA,)))
        self._auth = {"Authorization": f"Bearer {token}"}
        self._checkout_budget = RateLimiter(
            CHECKOUT_STATUS_PER_MINUTE, name="hyperpay-checkout", cache=budget_cache
        )
        self.http = GatewayHTTP(
            "hyperpay",
            **{
                key: self.settings[key]
                for key in ("connect_timeout", "read_timeout", "pool_size")
                if self.settings.get(key)
            },
        )

    # public API -------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """Prepare one checkout per widget (cards, and mada when configured)."""
        checkouts, answers = [], []
        for widget in self.widgets:
            checkout, data = self._prepare_checkout(request, widget)
            checkouts.append(checkout)
            answers.append(data)
        return CheckoutSession(
            payment_url=f"{request.site_url.rstrip('/')}/checkout/pay/{request.ref_id}/",
            session_id=checkouts[0]["checkout_id"],
            expires_at=datetime.now(UTC) + timedelta(minutes=CHECKOUT_MINUTES),
            data={CHECKOUTS: checkouts},
            raw={"checkouts": answers},
        )

    def pay_page(self, ref: PaymentRef) -> tuple[str, dict[str, Any]]:
        """Return our page that renders the COPYandPAY widget of each checkout."""
        # https://hyperpay.docs.oppwa.com/tutorials/integration-guide (step 2)
        widgets = [
            {
                "key": checkout["widget"],
                "label": checkout["label"],
                "brands": checkout["brands"],
                "script": f"{self.base_url}/v1/paymentWidgets.js?checkoutId="
                + quote(checkout["checkout_id"], safe=""),
            }
            for checkout in self._checkouts(ref)
        ]
        return "payments/pay_hyperpay.html", {"widgets": widgets}

    def pay_page_script_origins(self) -> tuple[str, ...]:
        """Return the origin of paymentWidgets.js, which the pay page loads."""
        parts = urlsplit(self.base_url)
        return (f"{parts.scheme}://{parts.netloc}",)

    def return_message(self, ref: PaymentRef, params: Mapping[str, str]) -> str:
        """Note which checkout the payer came back from (never fetched as given)."""
        given = params.get("id") or ""
        ours = {checkout["checkout_id"] for checkout in self._checkouts(ref)}
        if given in ours:
            return (
                f"returned from checkout {given}; confirming from the stored "
                "checkout ids (resourcePath not followed)"
            )
        return (
            "return without one of this payment's checkout ids; confirming from "
            "the stored checkout ids"
        )

    def fetch_status(self, ref: PaymentRef) -> StatusResult:
        """Read the payment from its checkouts, else from the transaction reports."""
        paid = paid_through(ref.data)
        if paid is not None:
            entity_id, payment_id = paid
            found = self._linked_report(entity_id, payment_id)
            return summarise(ref.ref_id, found, over=True, linked=True)
        checkouts = self._checkouts(ref)
        over = self._checkout_over(ref)
        found: list[Transaction] = []
        gone: list[str] = []
        if not over:
            for checkout in checkouts:
                answer = self._checkout_payment(checkout)
                if answer is None:
                    gone.append(checkout["entity_id"])
                else:
                    found.extend(answer)
        if over or gone:
            for entity_id in dict.fromkeys(gone or (c["entity_id"] for c in checkouts)):
                found.extend(self._reference_report(entity_id, ref.ref_id))
        over = over or len(gone) == len(checkouts)
        return summarise(ref.ref_id, found, over=over, linked=False)

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund part or all of the captured payment (RF), once.

        After a lost answer the caller runs `fetch_refund` first; a repeat of
        the same refund id is blocked by the platform and looked up here.
        """
        paid = paid_through(request.data) or self._find_capture(request)
        if paid is None:
            return RefundResult(
                request.refund_id,
                RefundStatus.FAILED,
                message=f"no captured payment at HyperPay for {request.ref_id}",
            )
        entity_id, payment_id = paid
        # https://hyperpay.docs.oppwa.com/reference/parameters (backoffice: RF)
        # https://docs.cardcorp.com/reference/refund-a-payment
        _, data = self._request(
            "POST",
            f"/v1/payments/{quote(payment_id, safe='')}",
            op="refund",
            form={
                "entityId": entity_id,
                "amount": to_provider(request.amount, request.currency),
                "currency": request.currency,
                "paymentType": REFUND,
                "merchantTransactionId": request.refund_id,
            },
        )
        code, description = result_of(data)
        if code == DUPLICATE:
            # Sent before: what the platform has under our refund id decides.
            found = self.fetch_refund(request)
            if found is not None:
                return found
            raise GatewayUnavailable(
                "hyperpay: refund blocked as a duplicate but not found"
            )
        return refund_result(request.refund_id, entity_id, data)

    def fetch_refund(self, request: RefundRequest) -> RefundResult | None:
        """Look a refund up by our refund id; None when HyperPay never saw it."""
        for entity_id in self._entities(request.data):
            refunds = [
                item
                for item in self._reference_report(entity_id, request.refund_id)
                if item.type == REFUND
            ]
            if refunds:
                return refund_result(request.refund_id, entity_id, refunds[0].raw)
        return None

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], *, verified: bool = False
    ) -> WebhookEvent:
        """Decrypt a notification (always: the body is ciphertext) and read it."""
        # https://hyperpay.docs.oppwa.com/tutorials/webhooks/integration-guide
        if self._webhook_key is None:
            raise WebhookRejected("HYPERPAY_WEBHOOK_KEY is not set")
        raw_body = body if isinstance(body, bytes) else str(body).encode()
        # A stored delivery is decrypted again too, with either key (one may
        # have been rotated since it arrived).
        keys = rotating_secrets(self._webhook_key, self._webhook_key_previous)
        used, envelope = verify_with_secrets(
            keys, lambda key: decrypt(raw_body, headers, key)
        )
        event = self._read_notification(envelope)
        return event if verified else replace(event, secret_used=used)

    def _read_notification(self, envelope: dict[str, Any]) -> WebhookEvent:
        """Read a decrypted notification."""
        kind = str(envelope.get("type") or "")
        payload = envelope.get("payload")
        if kind != "PAYMENT":
            return self._other_notification(kind, envelope)
        if not isinstance(payload, dict):
            raise WebhookRejected("HyperPay notification: PAYMENT without a payload")
        try:
            item = parse_transaction("", payload)
        except ValueError as exc:
            raise WebhookRejected(f"HyperPay notification: {exc}") from exc
        # One transaction may be notified in several states (pending, then
        # final): its id and result code together name one piece of news.
        event_id = f"{item.id}:{item.code}"
        message = f"notification: {item.type or 'transaction'} {item.id} {item.result}"
        if item.type not in _PAYMENT_NEWS:
            # Refunds carry our refund id, not a payment's: each is settled by
            # its own answer (or fetch_refund); kept and acknowledged.
            return WebhookEvent(event_id=event_id, message=message, raw=envelope)
        return WebhookEvent(
            event_id=event_id,
            ref_id=item.reference,
            status=notification_hint(item) if item.type == DEBIT else None,
            amount=item.amount,
            currency=item.currency,
            confirm=True,
            message=message,
            raw=envelope,
        )

    # private ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        op: str,
        idempotent: bool = False,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        response = self.http.request(
            method,
            f"{self.base_url}{path}",
            op=op,
            idempotent=idempotent,
            params=params,
            data=form,
            headers={**self._auth, "Accept": "application/json"},
            allow_redirects=False,
        )
        if response.status_code == 401:
            raise GatewayConfigError("HyperPay rejected the access token")
        if response.status_code == 403:
            raise GatewayConfigError(
                "HyperPay refused the entity for this access token"
            )
        data = json_body(response, "hyperpay")
        if not isinstance(data, dict) or not isinstance(data.get("result"), dict):
            raise GatewayUnavailable(
                f"hyperpay: {op}: unexpected answer (HTTP {response.status_code})"
            )
        return response.status_code, data

    def _prepare_checkout(
        self, request: CheckoutRequest, widget: Widget
    ) -> tuple[dict[str, str], dict[str, Any]]:
        # https://hyperpay.docs.oppwa.com/tutorials/integration-guide (step 1)
        form = {
            "entityId": widget.entity_id,
            "amount": to_provider(request.amount, request.currency),
            "currency": request.currency,
            "paymentType": self.payment_type,
            "merchantTransactionId": request.ref_id,
        }
        if request.email:
            form["customer.email"] = request.email
        _, data = self._request("POST", "/v1/checkouts", op="checkout", form=form)
        code, description = result_of(data)
        checkout_id = str(data.get("id") or "")
        if code != CHECKOUT_CREATED or not checkout_id:
            raise GatewayUnavailable(
                f"hyperpay: {widget.label} checkout refused: {code} {description}"
            )
        return {
            "widget": widget.key,
            "label": widget.label,
            "entity_id": widget.entity_id,
            "checkout_id": checkout_id,
            "brands": " ".join(widget.brands),
        }, data

    def _checkouts(self, ref: PaymentRef) -> list[dict[str, str]]:
        """Return the payment's checkouts as stored at creation."""
        stored = ref.data.get(CHECKOUTS)
        if isinstance(stored, list) and stored:
            return [dict(item) for item in stored if isinstance(item, dict)]
        widget = self.widgets[0]
        return [
            {
                "widget": widget.key,
                "label": widget.label,
                "entity_id": widget.entity_id,
                "checkout_id": ref.session_id,
                "brands": " ".join(widget.brands),
            }
        ]

    def _entities(self, data: Mapping[str, Any]) -> list[str]:
        """Return the entities a payment may live under, the one paid through first."""
        paid = paid_through(data)
        stored = data.get(CHECKOUTS) if isinstance(data.get(CHECKOUTS), list) else []
        candidates = [
            *([paid[0]] if paid else []),
            *(str(c.get("entity_id") or "") for c in stored if isinstance(c, dict)),
            *(widget.entity_id for widget in self.widgets),
        ]
        return [entity for entity in dict.fromkeys(candidates) if entity]

    @staticmethod
    def _checkout_over(ref: PaymentRef) -> bool:
        deadline = ref.expires_at
        if deadline is None and ref.created_at is not None:
            deadline = ref.created_at + timedelta(minutes=CHECKOUT_MINUTES)
        if deadline is not None and deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=UTC)
        return deadline is not None and datetime.now(UTC) >= deadline

    def _checkout_payment(
        self, checkout: Mapping[str, str]
    ) -> list[Transaction] | None:
        """Return the checkout's payment ([] before any), None once it is gone."""
        # https://hyperpay.docs.oppwa.com/tutorials/integration-guide (step 3)
        checkout_id, entity_id = checkout["checkout_id"], checkout["entity_id"]
        if not self._checkout_budget.acquire(checkout_id):
            raise GatewayUnavailable(
                f"hyperpay: status budget of checkout {checkout_id} spent "
                f"({CHECKOUT_STATUS_PER_MINUTE} a minute); try later",
                contacted=False,
            )
        http_status, data = self._request(
            "GET",
            f"/v1/checkouts/{quote(checkout_id, safe='')}/payment",
            op="status",
            idempotent=True,
            params={"entityId": entity_id},
        )
        if data.get("id") and data.get("paymentType"):
            return [read_transaction(entity_id, data)]
        code, description = result_of(data)
        if code == INVALID_PARAMETER or http_status == 404:
            return None  # expired: "no payment session found for the requested id"
        if outcome_of(code) == Outcome.PENDING:
            return []  # nothing submitted yet
        raise GatewayUnavailable(
            f"hyperpay: checkout status refused: {code} {description}"
        )

    def _reference_report(self, entity_id: str, reference: str) -> list[Transaction]:
        """Return the transactions made with a merchantTransactionId, newest first."""
        # https://hyperpay.docs.oppwa.com/tutorials/reporting/transaction
        self._spend_query(entity_id, "reference")
        _, data = self._request(
            "GET",
            "/v1/query",
            op="query",
            idempotent=True,
            params={"entityId": entity_id, "merchantTransactionId": reference},
        )
        return self._report(entity_id, data, missing_ok=True)

    def _linked_report(self, entity_id: str, payment_id: str) -> list[Transaction]:
        """Return a payment and the transactions linked to it (refunds, chargebacks)."""
        # https://hyperpay.docs.oppwa.com/tutorials/reporting/transaction
        # (Get transaction by id, includeLinkedTransactions)
        self._spend_query(entity_id, "id")
        _, data = self._request(
            "GET",
            f"/v3/query/{quote(payment_id, safe='')}",
            op="query-linked",
            idempotent=True,
            params={"entityId": entity_id, "includeLinkedTransactions": "true"},
        )
        return self._report(entity_id, data, missing_ok=False)

    def _spend_query(self, entity_id: str, kind: str) -> None:
        if not self._query_budget.acquire((entity_id, kind)):
            raise GatewayUnavailable(
                f"hyperpay: transaction report budget spent for this entity "
                f"({self._query_budget.per_minute} a minute); try later",
                contacted=False,
            )

    def _report(
        self, entity_id: str, data: Mapping[str, Any], *, missing_ok: bool
    ) -> list[Transaction]:
        payments = data.get("payments")
        if isinstance(payments, list):
            return [read_transaction(entity_id, item) for item in payments]
        if data.get("id") and data.get("paymentType"):
            return [read_transaction(entity_id, data)]
        code, description = result_of(data)
        if code == NOT_FOUND and missing_ok:
            return []
        raise GatewayUnavailable(f"hyperpay: report refused: {code} {description}")

    def _find_capture(self, request: RefundRequest) -> tuple[str, str] | None:
        """Find the captured payment of a reference in the reports (newest first)."""
        for entity_id in self._entities(request.data):
            for item in self._reference_report(entity_id, request.ref_id):
                if item.type == DEBIT and item.outcome in DONE:
                    return entity_id, item.id
        return None

    @staticmethod
    def _other_notification(kind: str, envelope: Mapping[str, Any]) -> WebhookEvent:
        """Acknowledge a notification about no payment (registration, risk, test)."""
        payload = envelope.get("payload")
        ident = payload.get("id") if isinstance(payload, dict) else None
        if ident:
            event_id = f"{kind}:{envelope.get('action') or ''}:{ident}"
        else:
            canonical = json.dumps(envelope, sort_keys=True, default=str).encode()
            event_id = f"{kind}:{hashlib.sha256(canonical).hexdigest()}"
        return WebhookEvent(
            event_id=event_id,
            message=f"{kind or 'untyped'} notification: not about a payment",
            raw=envelope,
        )
