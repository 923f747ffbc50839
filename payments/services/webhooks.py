"""Provider notifications: stored raw, verified, applied at most once.

The services say what happened to a delivery (`Intake`); the webhook view
turns that into the HTTP answer the provider gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from django.db import IntegrityError, transaction
from django.utils import timezone

from gateways.base import (
    GatewayConfigError,
    GatewayError,
    StatusResult,
    WebhookEvent,
    WebhookRejected,
    WebhookReply,
)
from gateways.registry import get_gateway

from ..exceptions import GatewayNotConfigured, WebhookNotAccepted
from ..models import EventKind, Payment, WebhookDelivery
from .status import payment_apply_status, payment_ref
from .transitions import Actor, Change, logger, payment_change


class Intake(StrEnum):
    """What became of an inbound notification."""

    ACCEPTED = "accepted"  # stored and applied, or recognised as a duplicate
    REJECTED = "rejected"  # signature or merchant did not verify
    UNKNOWN_GATEWAY = "unknown_gateway"  # no such gateway, or not configured
    UNMATCHED = "unmatched"  # verified, but no payment has that reference
    RETRY_LATER = "retry_later"  # the provider could not confirm it: ask again


@dataclass(frozen=True)
class WebhookOutcome:
    """The stored delivery, what became of it, and the provider's expected reply."""

    intake: Intake
    delivery: WebhookDelivery
    message: str = ""
    reply: WebhookReply | None = None


def storable(text: str) -> str:
    """Make text storable in any database (PostgreSQL refuses NUL characters)."""
    return text.replace("\x00", "\ufffd")


def redact_headers(headers: Mapping[str, str], secret_headers: tuple[str, ...]) -> dict:
    """Keep headers for the audit trail, minus secrets and cookies."""
    secret = {h.lower() for h in secret_headers} | {"authorization", "cookie"}
    return {
        storable(k): "[redacted]"
        if k.lower() in secret or "secret" in k.lower()
        else storable(v)
        for k, v in headers.items()
    }


def webhook_ingest(
    *,
    gateway_code: str,
    body: bytes,
    headers: Mapping[str, str],
    remote_addr: str | None,
) -> WebhookOutcome:
    """Store a provider notification raw, verify it, then apply it once."""
    try:
        gateway = get_gateway(gateway_code)
    except GatewayConfigError as exc:
        delivery = WebhookDelivery.objects.create(
            gateway=gateway_code[:32],
            headers=redact_headers(headers, ()),
            body=storable(body.decode("utf-8", "replace")),
            remote_addr=remote_addr,
            outcome=WebhookDelivery.Outcome.REJECTED,
            error=f"gateway not configured: {exc}",
            processed_at=timezone.now(),
        )
        return WebhookOutcome(
            Intake.UNKNOWN_GATEWAY,
            delivery,
            f"gateway {gateway_code!r} is not configured",
        )
    delivery = WebhookDelivery.objects.create(
        gateway=gateway_code,
        headers=redact_headers(headers, gateway.secret_headers),
        body=storable(body.decode("utf-8", "replace")),
        remote_addr=remote_addr,
    )
    try:
        event = gateway.parse_webhook(body, headers)
    except WebhookRejected as exc:
        _finish(delivery, WebhookDelivery.Outcome.REJECTED, error=str(exc), valid=False)
        logger.warning(
            "rejected %s notification #%s: %s", gateway_code, delivery.pk, exc
        )
        return WebhookOutcome(Intake.REJECTED, delivery, f"rejected: {exc}")
    return webhook_process(delivery=delivery, event=event)


def sandbox_choose(*, token: str, choice: str) -> None:
    """Take the payer's choice on the sandbox's hosted page.

    Its signed notification goes through the same verification and ingestion
    path as any provider's, in-process: an HTTP call from the request back to
    this server would deadlock a single-worker server.
    """
    try:
        gateway = get_gateway("sandbox")
    except GatewayConfigError as exc:
        raise GatewayNotConfigured(str(exc)) from exc
    notification = gateway.choose(token, choice)
    if notification is not None:
        body, headers = notification
        webhook_ingest(
            gateway_code="sandbox", body=body, headers=headers, remote_addr="127.0.0.1"
        )


def webhook_reprocess(*, delivery_id: int) -> WebhookOutcome:
    """Apply a stored, verified delivery again (from the admin)."""
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    if not delivery.signature_valid:
        raise WebhookNotAccepted(
            "only deliveries with a valid signature can be re-processed"
        )
    try:
        gateway = get_gateway(delivery.gateway)
        event = gateway.parse_webhook(
            delivery.body.encode(), delivery.headers, verified=True
        )
    except GatewayConfigError as exc:
        raise GatewayNotConfigured(str(exc)) from exc
    except WebhookRejected as exc:
        raise WebhookNotAccepted(str(exc)) from exc
    return webhook_process(delivery=delivery, event=event)


def webhook_process(
    *, delivery: WebhookDelivery, event: WebhookEvent
) -> WebhookOutcome:
    """Apply a verified notification to its payment, at most once per event id."""
    gateway = get_gateway(delivery.gateway)
    reply = gateway.webhook_reply(event)
    Outcome = WebhookDelivery.Outcome
    delivery.signature_valid = True  # written with the outcome by _finish
    accepted = WebhookOutcome(Intake.ACCEPTED, delivery, reply=reply)
    if _already_applied(delivery, event.event_id):
        _finish(delivery, Outcome.DUPLICATE)
        return accepted
    payment = _find_payment(delivery.gateway, event)
    if payment is None:
        _finish(
            delivery, Outcome.UNMATCHED, error="no payment matches this notification"
        )
        return WebhookOutcome(Intake.UNMATCHED, delivery, "unknown payment")
    source = Actor(f"webhook:{delivery.gateway}")
    data = {"delivery": delivery.pk, "event_id": event.event_id}
    if (
        event.transaction_id
        and payment.gateway_transaction_id
        and event.transaction_id != payment.gateway_transaction_id
    ):
        mismatch = Change(
            review="notification transaction id does not match the payment", data=data
        )
        payment_change(payment_id=payment.pk, actor=source, decide=lambda _p: mismatch)
        _finish(delivery, Outcome.REVIEW, payment=payment, event_id=event.event_id)
        return accepted
    try:
        result = _event_result(gateway, payment, event)
    except GatewayError as exc:
        error = f"confirmation failed: {exc}"
        _finish(delivery, Outcome.ERROR, payment=payment, error=error)
        return WebhookOutcome(
            Intake.RETRY_LATER, delivery, "provider unavailable, retry later"
        )
    _apply_once(delivery, event, payment, result, source, data)
    return accepted


def _event_result(gateway, payment: Payment, event: WebhookEvent) -> StatusResult:
    """Return what the notification reports, confirmed with the provider if asked."""
    if event.confirm:
        result = gateway.fetch_status(payment_ref(payment))
        return replace(result, message=f"{event.message}; confirmed: {result.message}")
    return StatusResult(
        ref_id=payment.ref_id,
        status=event.status,
        amount=event.amount,
        currency=event.currency,
        transaction_id=event.transaction_id,
        message=event.message,
        raw=event.raw,
    )


def _apply_once(delivery, event, payment, result, source, data) -> None:
    """Apply the report and record the delivery's outcome in one transaction."""
    Outcome = WebhookDelivery.Outcome
    try:
        with transaction.atomic():
            applied = payment_apply_status(
                payment_id=payment.pk,
                result=result,
                actor=source,
                kind=EventKind.WEBHOOK,
                data=data,
            )
            if applied.flagged:
                outcome = Outcome.REVIEW
            elif applied.ignored or (event.status is None and not event.confirm):
                outcome = Outcome.IGNORED
            else:
                outcome = Outcome.APPLIED
            _finish(delivery, outcome, payment=payment, event_id=event.event_id)
    except IntegrityError:
        # The same provider event was applied concurrently: everything above
        # rolled back, so it counts once.
        _finish(delivery, Outcome.DUPLICATE, payment=payment)


def _already_applied(delivery: WebhookDelivery, event_id: str) -> bool:
    return bool(event_id) and (
        WebhookDelivery.objects.filter(
            gateway=delivery.gateway, provider_event_id=event_id
        )
        .exclude(pk=delivery.pk)
        .exists()
    )


def _find_payment(gateway_code: str, event: WebhookEvent) -> Payment | None:
    payments = Payment.objects.filter(payment_gateway=gateway_code)
    if event.ref_id:
        return payments.filter(ref_id=event.ref_id).first()
    if event.transaction_id:
        return payments.filter(gateway_transaction_id=event.transaction_id).first()
    return None


def _finish(
    delivery: WebhookDelivery,
    outcome: str,
    *,
    error: str = "",
    valid: bool | None = None,
    payment: Payment | None = None,
    event_id: str | None = None,
) -> None:
    delivery.outcome = outcome
    delivery.error = storable(error)
    delivery.processed_at = timezone.now()
    fields = ["outcome", "error", "processed_at", "signature_valid"]
    if valid is not None:
        delivery.signature_valid = valid
    if payment is not None:
        delivery.payment = payment
        fields.append("payment")
    if event_id:
        delivery.provider_event_id = storable(event_id)[:255]
        fields.append("provider_event_id")
    delivery.save(update_fields=fields)
