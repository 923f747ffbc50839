"""Provider notifications: stored raw, verified, applied at most once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from django.db import IntegrityError, transaction
from django.utils import timezone

from gateways.base import (
    GatewayConfigError,
    GatewayError,
    StatusResult,
    WebhookEvent,
    WebhookRejected,
)
from gateways.registry import get_gateway

from ..models import (
    EventKind,
    Payment,
    WebhookDelivery,
)
from .core import (
    Actor,
    _flag,
    _lock,
    logger,
)
from .status import (
    payment_apply_status,
    payment_ref,
)


@dataclass(frozen=True)
class WebhookOutcome:
    http_status: int
    body: str
    content_type: str
    delivery: WebhookDelivery


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
        return _reply(delivery, 404, f"gateway {gateway_code!r} is not configured")
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
        return _reply(delivery, 403, f"rejected: {exc}")
    return webhook_process(delivery=delivery, event=event)


def webhook_reprocess(*, delivery_id: int) -> WebhookOutcome:
    """Apply a stored, verified delivery again (from the admin)."""
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    if not delivery.signature_valid:
        raise WebhookRejected(
            "only deliveries with a valid signature can be re-processed"
        )
    gateway = get_gateway(delivery.gateway)
    event = gateway.parse_webhook(
        delivery.body.encode(), delivery.headers, verified=True
    )
    return webhook_process(delivery=delivery, event=event)


def webhook_process(
    *, delivery: WebhookDelivery, event: WebhookEvent
) -> WebhookOutcome:
    """Apply a verified notification to its payment, at most once per event id."""
    gateway = get_gateway(delivery.gateway)
    reply = gateway.webhook_reply(event)
    Outcome = WebhookDelivery.Outcome
    delivery.signature_valid = True  # written with the outcome by _finish
    if _already_applied(delivery, event.event_id):
        _finish(delivery, Outcome.DUPLICATE)
        return _reply(delivery, reply.status, reply.body, reply.content_type)
    payment = _find_payment(delivery.gateway, event)
    if payment is None:
        _finish(
            delivery, Outcome.UNMATCHED, error="no payment matches this notification"
        )
        return _reply(delivery, 404, "unknown payment")
    source = Actor(f"webhook:{delivery.gateway}")
    data = {"delivery": delivery.pk, "event_id": event.event_id}
    if (
        event.transaction_id
        and payment.gateway_transaction_id
        and event.transaction_id != payment.gateway_transaction_id
    ):
        with transaction.atomic():
            locked = _lock(payment.pk)
            _flag(
                locked,
                "notification transaction id does not match the payment",
                source,
                data,
            )
        _finish(delivery, Outcome.REVIEW, payment=payment, event_id=event.event_id)
        return _reply(delivery, reply.status, reply.body, reply.content_type)
    if event.confirm:
        try:
            result = gateway.fetch_status(payment_ref(payment))
        except GatewayError as exc:
            _finish(
                delivery,
                Outcome.ERROR,
                payment=payment,
                error=f"confirmation failed: {exc}",
            )
            return _reply(delivery, 503, "provider unavailable, retry later")
        result = replace(
            result, message=f"{event.message}; confirmed: {result.message}"
        )
    else:
        result = StatusResult(
            ref_id=payment.ref_id,
            status=event.status,
            amount=event.amount,
            currency=event.currency,
            transaction_id=event.transaction_id,
            message=event.message,
            raw=event.raw,
        )
    try:
        with transaction.atomic():
            applied = payment_apply_status(
                payment_id=payment.pk,
                result=result,
                actor=source,
                kind=EventKind.WEBHOOK,
                data=data,
            )
            outcome = (
                Outcome.REVIEW
                if applied.flagged
                else Outcome.IGNORED
                if applied.ignored or event.status is None and not event.confirm
                else Outcome.APPLIED
            )
            _finish(delivery, outcome, payment=payment, event_id=event.event_id)
    except IntegrityError:
        # The same provider event was applied concurrently: everything above
        # rolled back, so it counts once.
        _finish(delivery, Outcome.DUPLICATE, payment=payment)
    return _reply(delivery, reply.status, reply.body, reply.content_type)


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


def _reply(
    delivery, status: int, body: str, content_type: str = "text/plain"
) -> WebhookOutcome:
    return WebhookOutcome(status, body, content_type, delivery)
