"""A built-in provider for demos and tests: no credentials, no internet."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.cache import caches

from .base import (
    CheckoutRequest,
    CheckoutSession,
    Gateway,
    GatewayConfigError,
    GatewayUnavailable,
    PaymentRef,
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
from .money import parse_amount, to_provider

SIGNATURE_HEADER = "X-Sandbox-Signature"
TOLERANCE_SECONDS = 300
# Cache key of the installation's secret when SANDBOX_WEBHOOK_SECRET is empty.
SECRET_CACHE_KEY = "sandbox-webhook-secret"
_OUTCOMES = {"paid": Status.COMPLETED, "declined": Status.FAILED}


class SandboxGateway(Gateway):
    """Pretend provider whose hosted page is served by this app.

    Its "provider side" (what the payer clicked) lives in the Django cache, so
    web workers and job workers share it. Notifications are JSON signed like
    Stripe's: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    `fail` ("create", "status", "refund" or "all") makes calls raise
    GatewayUnavailable, to rehearse a provider outage.

    The signing secret is SANDBOX_WEBHOOK_SECRET or, when that is empty, a
    random one made on first use and kept in the shared cache, so that every
    process of one installation agrees on it and nobody else can know it. It is
    read on every use: a process never holds a secret the others replaced.
    """

    code = "sandbox"
    display_name = "Sandbox (test card)"
    logo = "payments/logos/sandbox.svg"
    supports_refunds = True
    batch_size = 50
    secret_headers = (SIGNATURE_HEADER,)
    test_mode = True

    def __init__(self, settings: Mapping[str, Any]):
        super().__init__(settings)
        if not self.settings.get("enabled"):
            raise GatewayConfigError(
                "the sandbox is off: set DEBUG or SANDBOX_ENABLED to offer it"
            )
        self._configured_secret = str(self.settings.get("secret") or "")
        self._previous_secret = str(self.settings.get("secret_previous") or "")
        self.fail = set(filter(None, str(self.settings.get("fail", "")).split(",")))
        self.session_minutes = int(self.settings.get("session_minutes", 30))
        self.cache = caches[self.settings.get("cache", "default")]

    @property
    def secret(self) -> str:
        """Return the key that signs and verifies notifications."""
        if self._configured_secret:
            return self._configured_secret
        secret = self.cache.get(SECRET_CACHE_KEY)
        if not secret:
            # add() is atomic: when two processes race, both read the winner's.
            self.cache.add(SECRET_CACHE_KEY, secrets.token_hex(32), timeout=None)
            secret = self.cache.get(SECRET_CACHE_KEY)
        if not secret:
            raise GatewayUnavailable("sandbox: the cache did not keep its secret")
        return secret

    # public API -------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """Open a hosted-page session at /sandbox/pay/<token>/."""
        self._maybe_fail("create")
        token = secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        charge = {
            "ref_id": request.ref_id,
            "amount": to_provider(request.amount, request.currency),
            "currency": request.currency,
            "email": request.email,
            "description": request.description,
            "return_url": request.return_url,
            "state": "open",
            "refunded": "0",
            "refunds": {},
            "created": now.isoformat(),
        }
        self._save(token, charge)
        return CheckoutSession(
            payment_url=f"{request.site_url.rstrip('/')}/sandbox/pay/{token}/",
            transaction_id=f"SBX-{token}",
            session_id=token,
            expires_at=now + timedelta(minutes=self.session_minutes),
            raw={"token": token, **charge},
        )

    def fetch_status(self, ref: PaymentRef) -> StatusResult:
        """Read the payer's choice from the sandbox ledger."""
        self._maybe_fail("status")
        charge = self.charge(ref.session_id)
        if charge is None:
            return StatusResult(
                ref.ref_id, Status.PENDING, message="no sandbox session"
            )
        status = _OUTCOMES.get(charge["state"], Status.PENDING)
        refunded = Decimal(charge["refunded"])
        if status == Status.COMPLETED and refunded > 0:
            full = refunded >= Decimal(charge["amount"])
            status = Status.REFUNDED if full else Status.PARTIALLY_REFUNDED
        return StatusResult(
            ref_id=ref.ref_id,
            status=status,
            amount=Decimal(charge["amount"]),
            currency=charge["currency"],
            transaction_id=f"SBX-{ref.session_id}",
            amount_refunded=refunded,
            message=f"sandbox session {charge['state']}",
            raw=charge,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund against the ledger, idempotently on refund_id."""
        self._maybe_fail("refund")
        token = request.transaction_id.removeprefix("SBX-")
        charge = self.charge(token)
        if charge is None or charge["state"] != "paid":
            return RefundResult(
                request.refund_id, RefundStatus.FAILED, message="not paid"
            )
        if request.refund_id in charge["refunds"]:
            return self._refund_result(request.refund_id, charge)
        refunded = Decimal(charge["refunded"]) + request.amount
        if refunded > Decimal(charge["amount"]):
            return RefundResult(
                request.refund_id,
                RefundStatus.FAILED,
                message="exceeds captured amount",
            )
        charge["refunded"] = str(refunded)
        charge["refunds"][request.refund_id] = str(request.amount)
        self._save(token, charge)
        return self._refund_result(request.refund_id, charge)

    def fetch_refund(self, request: RefundRequest) -> RefundResult | None:
        """Look a refund up by our id."""
        self._maybe_fail("refund")
        charge = self.charge(request.transaction_id.removeprefix("SBX-"))
        if charge is None or request.refund_id not in charge["refunds"]:
            return None
        return self._refund_result(request.refund_id, charge)

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], *, verified: bool = False
    ) -> WebhookEvent:
        """Verify the signature header, then read the JSON body."""
        used = ""
        if not verified:
            used = self._verify(body, header(headers, SIGNATURE_HEADER))
        try:
            data = json.loads(body)
            status = _OUTCOMES.get(data["status"])
            return WebhookEvent(
                event_id=str(data["event_id"]),
                ref_id=str(data["ref_id"]),
                transaction_id=f"SBX-{data['token']}",
                status=status,
                amount=parse_amount(data["amount"]),
                currency=str(data["currency"]),
                message=f"payer chose {data['status']}",
                raw=data,
                secret_used=used,
            )
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise WebhookRejected(f"malformed sandbox notification: {exc}") from exc

    # sandbox-only helpers (used by its hosted page) -------------------------------

    def charge(self, token: str) -> dict[str, Any] | None:
        """Return the ledger entry of a hosted-page session."""
        if not token:
            return None
        return self.cache.get(self._key(token))

    def choose(self, token: str, choice: str) -> tuple[bytes, dict[str, str]] | None:
        """Record the payer's button and return the signed notification, if any."""
        charge = self.charge(token)
        if charge is None:
            raise LookupError("unknown or expired sandbox session")
        if charge["state"] == "open":
            charge["state"] = choice
            self._save(token, charge)
        # Only the first button counts; later clicks re-send the current state.
        if charge["state"] not in _OUTCOMES:
            return None
        return self.notification(token, charge, charge["state"])

    def notification(
        self, token: str, charge: Mapping[str, Any], choice: str
    ) -> tuple[bytes, dict[str, str]]:
        """Build a signed notification body and headers."""
        body = json.dumps(
            {
                "event_id": uuid.uuid4().hex,
                "ref_id": charge["ref_id"],
                "token": token,
                "status": choice,
                "amount": charge["amount"],
                "currency": charge["currency"],
            },
            sort_keys=True,
        ).encode()
        return body, {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body),
        }

    # private ------------------------------------------------------------------------

    def _verify(self, body: bytes, signature: str) -> str:
        """Check the signature; return which secret made it (current, previous)."""
        if not signature:
            raise WebhookRejected(f"missing {SIGNATURE_HEADER} header")
        parts = dict(item.split("=", 1) for item in signature.split(",") if "=" in item)
        try:
            stamp = int(parts.get("t", ""))
        except ValueError as exc:
            raise WebhookRejected("malformed signature header") from exc

        def check(secret: str) -> None:
            expected = sign(secret, body, stamp).split("v1=", 1)[1]
            if not constant_time_equal(expected, parts.get("v1")):
                raise WebhookRejected("signature does not match")

        secrets = rotating_secrets(self.secret, self._previous_secret)
        used = verify_with_secrets(secrets, check)[0]
        if abs(time.time() - stamp) > TOLERANCE_SECONDS:
            raise WebhookRejected("signature timestamp outside tolerance")
        return used

    def _refund_result(self, refund_id: str, charge: Mapping[str, Any]) -> RefundResult:
        return RefundResult(
            refund_id,
            RefundStatus.SUCCEEDED,
            gateway_refund_id=f"SBXR-{refund_id}",
            raw={"refunded": charge["refunded"]},
        )

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.fail or "all" in self.fail:
            raise GatewayUnavailable(f"sandbox: forced {operation} failure")

    def _save(self, token: str, charge: Mapping[str, Any]) -> None:
        self.cache.set(self._key(token), dict(charge), timeout=60 * 60 * 24 * 30)

    @staticmethod
    def _key(token: str) -> str:
        digest = hashlib.sha256(token.encode()).hexdigest()[:32]
        return f"sandbox-charge:{digest}"


def sign(secret: str, body: bytes, stamp: int | None = None) -> str:
    """Return the signature header value for a body."""
    stamp = int(time.time()) if stamp is None else stamp
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return f"t={stamp},v1={mac.hexdigest()}"
