"""Provider notifications: stored raw, verified, applied at most once.

The services say what happened to a delivery (`Intake`); the webhook view
turns that into the HTTP answer the provider gets. With `WEBHOOK_APPLY=queued`
a verified notification is only stored here (`webhook_enqueue`) and applied
later by `webhook_batches`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django_q.tasks import async_task

from gateways.base import (
    GatewayConfigError,
    GatewayError,
    StatusResult,
    WebhookEvent,
    WebhookRejected,
    WebhookReply,
)
from gateways.money import in_range
from gateways.registry import ADAPTERS, get_gateway

from .. import clock
from ..exceptions import GatewayNotConfigured, WebhookNotAccepted
from ..models import EventKind, Payment, WebhookDelivery
from ..selectors import payment_ref
from .status import report_change
from .transitions import Actor, Change, logger, payments_change

Outcome = WebhookDelivery.Outcome
# How much of a notification that failed verification (or names an
# unconfigured gateway) is kept, with its length and SHA-256: anyone can POST.
REJECTED_BODY_BYTES = 2048
# Set while a batch applier task is queued or running (see webhook_batches).
APPLY_KEY = "payments:webhooks:apply-queued"
APPLY_TASK = "payments.tasks.apply_webhooks"


class Intake(StrEnum):
    """What became of an inbound notification."""

    ACCEPTED = "accepted"  # stored and applied, or recognised as a duplicate
    REJECTED = "rejected"  # signature or merchant did not verify
    UNKNOWN_GATEWAY = "unknown_gateway"  # no such gateway, or not configured
    UNMATCHED = "unmatched"  # verified, but no payment has it: kept, acknowledged
    RETRY_LATER = "retry_later"  # the provider could not confirm it: ask again
    INVALID = "invalid"  # verified, but its content cannot be a real payment's
    THROTTLED = "throttled"  # failed verification past the per-client limit


@dataclass(frozen=True)
class WebhookOutcome:
    """The stored delivery, what became of it, and the provider's expected reply."""

    intake: Intake
    delivery: WebhookDelivery | None  # None: nothing was stored
    message: str = ""
    reply: WebhookReply | None = None
    # THROTTLED: seconds until the client's failures are counted afresh.
    retry_after: int = 0


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
    count_failure: Callable[[], int] | None = None,
) -> WebhookOutcome:
    """Verify a provider notification on its raw bytes, apply it once, store it.

    The delivery row is written with its outcome in the same transaction as
    the payment change it causes (one commit); a delivery that is rejected,
    unmatched, a duplicate or fails is stored on its own. One that fails
    verification keeps only its first REJECTED_BODY_BYTES (with its length
    and SHA-256), after `count_failure` counts it: a wait in seconds from
    that (the client is past its limit) stores nothing and answers THROTTLED.
    A delivery that verifies is never counted.
    """
    if gateway_code not in ADAPTERS:
        # Anyone can POST here: a slug that names no gateway stores nothing.
        return WebhookOutcome(Intake.UNKNOWN_GATEWAY, None, "no such gateway")
    delivery = WebhookDelivery(
        gateway=gateway_code,
        body=storable(body.decode("utf-8", "replace")),
        remote_addr=remote_addr,
    )
    try:
        gateway = get_gateway(gateway_code)
    except GatewayConfigError as exc:
        # A provider may be calling a gateway not configured here yet.
        delivery.headers = redact_headers(headers, ())
        return _rejected(
            delivery,
            body,
            f"gateway not configured: {exc}",
            count_failure,
            Intake.UNKNOWN_GATEWAY,
            "no such gateway",
        )
    delivery.headers = redact_headers(headers, gateway.secret_headers)
    try:
        event = gateway.parse_webhook(body, headers)
    except WebhookRejected as exc:
        delivery.signature_valid = False
        return _rejected(
            delivery, body, str(exc), count_failure, Intake.REJECTED, f"rejected: {exc}"
        )
    delivery.secret_used = event.secret_used
    problem = event_problem(event)
    if problem:
        delivery.signature_valid = True
        store_delivery(delivery, Outcome.REJECTED, error=f"invalid content: {problem}")
        logger.warning(
            "refused %s notification #%s: %s", gateway_code, delivery.pk, problem
        )
        return WebhookOutcome(Intake.INVALID, delivery, f"invalid content: {problem}")
    if settings.WEBHOOK_APPLY == "queued":
        reply = gateway.webhook_reply(event)
        return webhook_enqueue(delivery=delivery, event=event, reply=reply)
    return webhook_process(delivery=delivery, event=event)


def _rejected(
    delivery: WebhookDelivery,
    body: bytes,
    error: str,
    count_failure: Callable[[], int] | None,
    intake: Intake,
    message: str,
) -> WebhookOutcome:
    """Store the start of a delivery that failed verification, unless throttled.

    A genuine delivery refused for a misconfigured secret is recovered by the
    provider's own retries once the secret is fixed, not from this copy.
    """
    wait = count_failure() if count_failure is not None else 0
    if wait:
        logger.warning(
            "throttled %s notification from %s: too many failed verifications",
            delivery.gateway,
            delivery.remote_addr,
        )
        return WebhookOutcome(
            Intake.THROTTLED,
            None,
            f"too many failed verifications: try again in {wait} s",
            retry_after=wait,
        )
    delivery.body = storable(body[:REJECTED_BODY_BYTES].decode("utf-8", "replace"))
    delivery.body_length = len(body)
    delivery.body_sha256 = hashlib.sha256(body).hexdigest()
    store_delivery(delivery, Outcome.REJECTED, error=error)
    logger.warning(
        "rejected %s notification #%s: %s", delivery.gateway, delivery.pk, error
    )
    return WebhookOutcome(intake, delivery, message)


def webhooks_prune_rejected(*, older_than_days: int) -> int:
    """Delete deliveries that failed verification, received over N days ago.

    Verified deliveries (even refused for their content) are kept whole.
    Return how many were deleted.
    """
    cutoff = clock.now() - timedelta(days=older_than_days)
    deleted, _ = (
        WebhookDelivery.objects.filter(outcome=Outcome.REJECTED, received_at__lt=cutoff)
        .exclude(signature_valid=True)
        .delete()
    )
    return deleted


def webhook_enqueue(
    *, delivery: WebhookDelivery, event: WebhookEvent, reply
) -> WebhookOutcome:
    """Store a verified notification for the batch applier and acknowledge it.

    One INSERT and no other database round trip: even its payment is looked
    up by the task (an unknown one ends UNMATCHED there, after a 2xx).
    """
    delivery.signature_valid = True
    delivery.provider_event_id = storable(event.event_id)[:255] or None
    delivery.outcome = Outcome.RECEIVED
    # One INSERT committed on its own; inside a caller's transaction (tests) a
    # savepoint keeps a refused INSERT from breaking it.
    nested = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with nested:
            delivery.save()
    except IntegrityError:  # the unique event id: a re-send
        store_delivery(delivery, Outcome.DUPLICATE)
        return WebhookOutcome(Intake.ACCEPTED, delivery, reply=reply)
    webhooks_schedule_apply()
    return WebhookOutcome(Intake.ACCEPTED, delivery, reply=reply)


def webhooks_schedule_apply() -> None:
    """Queue the batch applier unless one is already queued."""
    if cache.add(APPLY_KEY, 1, timeout=30):
        async_task(APPLY_TASK, task_name="apply-webhooks")


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
    problem = event_problem(event)
    if problem:
        raise WebhookNotAccepted(f"invalid content: {problem}")
    return webhook_process(delivery=delivery, event=event)


def event_problem(event: WebhookEvent) -> str:
    """Say why a verified notification cannot be about a real payment, or "".

    A correct signature proves who sent it, not that its fields fit a
    database: NUL characters (PostgreSQL refuses them in text and JSON), lone
    surrogates (no driver encodes them) and amounts beyond what a payment can
    hold are refused before any lookup.
    """
    for name in ("event_id", "ref_id", "transaction_id", "currency", "message"):
        text = str(getattr(event, name) or "")
        if "\x00" in text:
            return f"{name} contains a NUL character"
        if not _is_unicode(text):
            # A JSON escape of a lone surrogate ("\\ud800"): no driver encodes it.
            return f"{name} is not valid Unicode (a lone surrogate)"
    if _has_nul(event.raw):
        return "the body contains a NUL character"
    if _any_text(event.raw, lambda text: not _is_unicode(text)):
        return "the body is not valid Unicode (a lone surrogate)"
    if event.amount is not None and not in_range(event.amount):
        return f"amount {event.amount} is out of range"
    return ""


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _any_text(value: object, test) -> bool:
    """Tell whether `test` holds for any string in a parsed body (keys included)."""
    if isinstance(value, str):
        return test(value)
    if isinstance(value, Mapping):
        return any(_any_text(k, test) or _any_text(v, test) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_any_text(v, test) for v in value)
    return False


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def webhook_process(
    *, delivery: WebhookDelivery, event: WebhookEvent
) -> WebhookOutcome:
    """Apply a verified notification to its payment, at most once per event id.

    `delivery` may be new (an inbound call) or stored (a re-process).
    """
    gateway = get_gateway(delivery.gateway)
    delivery.signature_valid = True
    accepted = WebhookOutcome(
        Intake.ACCEPTED, delivery, reply=gateway.webhook_reply(event)
    )
    if not (event.ref_id or event.transaction_id):
        if event.status is None and not event.confirm:
            # Verified, but about no payment of ours (e.g. a CoinPayments
            # deposit IPN): kept and acknowledged, so the provider stops.
            store_delivery(delivery, Outcome.IGNORED, error=event.message)
            return accepted
        return _unmatched(delivery, gateway, event)
    try:
        result = event_result(gateway, delivery, event)
        _apply_once(delivery, event, result)
    except Payment.DoesNotExist:
        return _unmatched(delivery, gateway, event)
    except GatewayError as exc:
        store_delivery(delivery, Outcome.ERROR, error=f"confirmation failed: {exc}")
        return WebhookOutcome(
            Intake.RETRY_LATER, delivery, "provider unavailable, retry later"
        )
    except IntegrityError:
        # This provider event was applied already (or concurrently): everything
        # above rolled back, so it counts once.
        store_delivery(delivery, Outcome.DUPLICATE)
    except Exception as exc:
        store_delivery(delivery, Outcome.ERROR, error=f"{type(exc).__name__}: {exc}")
        raise
    return accepted


def _unmatched(delivery: WebhookDelivery, gateway, event: WebhookEvent):
    """Keep a verified notification about no payment here, and acknowledge it.

    The provider would retry an error for days; the delivery stays visible
    (outcome UNMATCHED, counted in /metrics) for a person to look at.
    """
    store_delivery(
        delivery, Outcome.UNMATCHED, error="no payment matches this notification"
    )
    return WebhookOutcome(
        Intake.UNMATCHED,
        delivery,
        "unknown payment",
        reply=gateway.webhook_reply(event),
    )


def event_lookup(event: WebhookEvent) -> tuple[str, str]:
    """Return the payment field and value a notification names its payment by."""
    if event.ref_id:
        return "ref_id", event.ref_id
    return "gateway_transaction_id", event.transaction_id


def event_result(
    gateway, delivery: WebhookDelivery, event: WebhookEvent
) -> StatusResult:
    """Return what the notification reports, confirmed with the provider if asked."""
    if event.confirm:
        # A provider call follows: spend it only on an event not applied yet
        # (elsewhere the unique event id settles duplicates at the INSERT).
        code = delivery.gateway
        applied = WebhookDelivery.objects.filter(
            gateway=code, provider_event_id=event.event_id
        ).exclude(pk=delivery.pk)  # a stored delivery (queued, re-processed)
        if event.event_id and applied.exists():
            raise IntegrityError(f"event {event.event_id} was applied already")
        field, value = event_lookup(event)
        payment = Payment.objects.get(payment_gateway=code, **{field: value})
        result = gateway.fetch_status(payment_ref(payment))
        return replace(result, message=f"{event.message}; confirmed: {result.message}")
    return StatusResult(
        ref_id=event.ref_id,
        status=event.status,
        amount=event.amount,
        currency=event.currency,
        transaction_id=event.transaction_id,
        message=event.message,
        raw=event.raw,
        settling=event.settling,
        review=event.review,
    )


def _apply_once(delivery: WebhookDelivery, event: WebhookEvent, result) -> None:
    """Change the payment and store the delivery with its outcome: one transaction."""
    field, value = event_lookup(event)

    def record(done: dict) -> None:
        changed = done[value]
        delivery.payment = changed.payment
        delivery.provider_event_id = storable(event.event_id)[:255] or None
        store_delivery(delivery, event_outcome(changed, event))

    payments_change(
        decisions={value: event_decision(event, result)},
        actor=Actor(f"webhook:{delivery.gateway}"),
        key=field,
        scope={"payment_gateway": delivery.gateway},
        then=record,
    )


def event_decision(event: WebhookEvent, result: StatusResult):
    """Return what a verified notification does to its (locked) payment."""
    data = {"event_id": event.event_id}

    def decide(payment: Payment) -> Change:
        change = report_change(payment, result, kind=EventKind.WEBHOOK, data=data)
        mismatch = (
            event.transaction_id
            and payment.gateway_transaction_id
            and event.transaction_id != payment.gateway_transaction_id
        )
        if mismatch:
            review = "notification transaction id does not match the payment"
            return Change(entries=change.entries, data=data, review=review)
        return change

    return decide


def event_outcome(changed, event: WebhookEvent) -> str:
    """Tell what a notification's change amounted to, for its delivery."""
    if changed.flagged:
        return Outcome.REVIEW
    if changed.ignored or (event.status is None and not event.confirm):
        return Outcome.IGNORED
    return Outcome.APPLIED


def store_delivery(delivery: WebhookDelivery, outcome: str, *, error: str = "") -> None:
    """Save a delivery with its outcome (an INSERT, or an UPDATE when re-processed)."""
    delivery.outcome = outcome
    delivery.error = storable(error)
    delivery.processed_at = clock.now()
    if outcome in (Outcome.DUPLICATE, Outcome.UNMATCHED, Outcome.ERROR):
        delivery.provider_event_id = None  # only an applied event claims its id
    delivery.save()
