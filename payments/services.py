"""Business logic: every write to payments, refunds and deliveries happens here.

The one rule that matters most: `_move` is the only code that assigns a
payment's status, and it runs only on a row locked by `_lock` inside a
transaction, after checking the transition table.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from gateways.base import (
    CheckoutRequest,
    GatewayConfigError,
    GatewayError,
    GatewayUnavailable,
    NotSupported,
    PaymentRef,
    RefundRequest,
    RefundResult,
    StatusResult,
    WebhookEvent,
    WebhookRejected,
)
from gateways.base import RefundStatus as GatewayRefundStatus
from gateways.money import quantize, to_provider
from gateways.registry import get_gateway

from .models import (
    EventKind,
    IdempotencyRecord,
    Payment,
    PaymentEvent,
    Plan,
    Refund,
    RefundStatus,
    WebhookDelivery,
)
from .states import LATE_COMPLETION, PAID_STATUSES, PaymentStatus, can_transition

logger = logging.getLogger("payments")
S = PaymentStatus
ZERO = Decimal("0")
# Wait before the n-th consecutive check of a pending payment (then the last).
CHECK_BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=2),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=6),
)
SECRET_MARKERS = (
    "secret",
    "password",
    "hmac",
    "signature",
    "authorization",
    "private",
    "indicator",
)


class IllegalTransition(Exception):
    """The transition table forbids this move."""


class RefundNotAllowed(Exception):
    """A refund was asked for that cannot be made (amount, status, provider)."""


class GatewayDown(Exception):
    """The provider failed while a payment was being created."""

    def __init__(self, payment: Payment, reason: str):
        super().__init__(reason)
        self.payment = payment
        self.reason = reason


@dataclass(frozen=True)
class Actor:
    """Who causes a change: a staff user, or a named system source."""

    source: str = "system"
    user: Any = None


SYSTEM = Actor()


# --- the guarded state machine ------------------------------------------------------


def _money(amount: Decimal, currency: str) -> str:
    return f"{to_provider(amount, currency)} {currency}"


def _lock(payment_id: int) -> Payment:
    return Payment.objects.select_for_update().get(pk=payment_id)


def _event(
    payment: Payment,
    kind: str,
    actor: Actor,
    message: str = "",
    data: Mapping[str, Any] | None = None,
    *,
    from_status: str = "",
    to_status: str = "",
) -> PaymentEvent:
    return PaymentEvent.objects.create(
        payment=payment,
        kind=kind,
        actor=actor.user,
        source=actor.source,
        message=message[:2000],
        data=redact(data or {}),
        from_status=from_status,
        to_status=to_status,
    )


def _move(
    payment: Payment,
    to_status: str,
    actor: Actor,
    message: str = "",
    data: Mapping[str, Any] | None = None,
    also: list[str] | None = None,
) -> PaymentEvent:
    """Change the status of a payment locked by the caller; the only writer.

    `also` names other fields the caller changed, saved in the same UPDATE
    (the list is emptied once they are written).
    """
    from_status = payment.status
    if not can_transition(from_status, to_status):
        raise IllegalTransition(f"{from_status} -> {to_status} is not allowed")
    payment.status = to_status
    fields = ["status", "date_updated", *(also or [])]
    if also:
        also.clear()
    if to_status in PAID_STATUSES and payment.date_paid is None:
        payment.date_paid = timezone.now()
        fields.append("date_paid")
    if to_status != S.PENDING:
        payment.next_check_at = None
        fields.append("next_check_at")
    payment.save(update_fields=list(dict.fromkeys(fields)))
    return _event(
        payment,
        EventKind.STATUS_CHANGE,
        actor,
        message,
        data,
        from_status=from_status,
        to_status=to_status,
    )


def payment_transition(
    *,
    payment_id: int,
    to_status: str,
    actor: Actor = SYSTEM,
    message: str = "",
    data: Mapping[str, Any] | None = None,
    updates: Mapping[str, Any] | None = None,
) -> Payment:
    """Move a payment to a new status under a row lock, with one event."""
    with transaction.atomic():
        payment = _lock(payment_id)
        for field, value in (updates or {}).items():
            setattr(payment, field, value)
        if updates:
            payment.save(update_fields=[*updates, "date_updated"])
        _move(payment, to_status, actor, message, data)
    return payment


def _flag(payment: Payment, reason: str, actor: Actor, data=None) -> bool:
    """Flag a locked payment for review once per distinct reason."""
    if payment.needs_review and reason in payment.review_reason:
        return False
    payment.needs_review = True
    payment.review_reason = "\n".join(filter(None, [payment.review_reason, reason]))
    payment.save(update_fields=["needs_review", "review_reason", "date_updated"])
    _event(payment, EventKind.REVIEW_FLAGGED, actor, reason, data)
    return True


# --- applying what a provider says ---------------------------------------------------


@dataclass(frozen=True)
class Applied:
    payment: Payment
    changed: bool
    flagged: bool
    ignored: bool


def _amount_problem(payment: Payment, result: StatusResult) -> str:
    if result.currency and result.currency.upper() != payment.currency.upper():
        return (
            f"currency mismatch: provider reported {result.currency}, "
            f"payment is in {payment.currency}"
        )
    if result.amount is None:
        return "provider reported success without an amount"
    paid = quantize(result.amount, payment.currency)
    due = quantize(payment.amount, payment.currency)
    if paid < due:
        return f"underpaid: provider reported {paid} of {due} {payment.currency}"
    return ""


def payment_apply_status(
    *,
    payment_id: int,
    result: StatusResult,
    actor: Actor,
    kind: str = EventKind.REFRESH,
    data: Mapping[str, Any] | None = None,
    checked_at=None,
) -> Applied:
    """Apply a provider's report to a payment, never moving it backwards.

    COMPLETED needs the reported amount and currency to cover the payment; a
    mismatch leaves the status alone and flags the payment for review. A
    report that contradicts a later state is kept as an ignored event.
    `kind` WEBHOOK and RETURN always leave an event; a refresh only when
    something happened. `checked_at` also records the provider check (and
    the next one's back-off) in the same UPDATE.
    """
    with transaction.atomic():
        payment = _lock(payment_id)
        current, reported = payment.status, result.status
        event_data = {**(data or {}), "provider": dict(result.raw)}
        changed = flagged = ignored = False
        dirty: list[str] = []
        if checked_at is not None:
            payment.last_checked_at = checked_at
            payment.check_attempts += 1
            payment.next_check_at = (
                checked_at + _next_check(payment.check_attempts)
                if current == S.PENDING
                else None
            )
            dirty += ["last_checked_at", "check_attempts", "next_check_at"]
        if kind != EventKind.REFRESH:
            _event(
                payment,
                kind,
                actor,
                result.message or f"reported {reported}",
                event_data,
            )

        if (
            reported is None
            or reported == current
            and reported not in (S.PARTIALLY_REFUNDED,)
        ):
            pass
        elif reported == S.COMPLETED and current in (S.PENDING, *LATE_COMPLETION):
            problem = _amount_problem(payment, result)
            if problem:
                flagged = _flag(payment, problem, actor, event_data)
            else:
                payment.amount_paid = result.amount
                payment.failure_reason = ""
                dirty += ["amount_paid", "failure_reason"]
                _move(payment, S.COMPLETED, actor, result.message, event_data, dirty)
                changed = True
                if current in LATE_COMPLETION:
                    flagged = _flag(
                        payment,
                        f"late payment: provider reported success after {current}",
                        actor,
                    )
        elif reported in (S.FAILED, S.EXPIRED) and current == S.PENDING:
            payment.failure_reason = result.message or reported.lower()
            dirty.append("failure_reason")
            _move(payment, reported, actor, result.message, event_data, dirty)
            changed = True
        elif reported in (S.PARTIALLY_REFUNDED, S.REFUNDED) and current in (
            S.COMPLETED,
            S.PARTIALLY_REFUNDED,
        ):
            changed, flagged = _apply_provider_refunds(
                payment, result, actor, event_data
            )
        elif reported == S.COMPLETED and current in PAID_STATUSES:
            pass  # already paid; refunds are applied by their own reports
        else:
            ignored = True
            _event(
                payment,
                EventKind.IGNORED_TRANSITION,
                actor,
                f"ignored: provider reported {reported} while payment is {current}",
                event_data,
                from_status=current,
                to_status=reported,
            )
            if reported in (S.PARTIALLY_REFUNDED, S.REFUNDED):
                flagged = _flag(
                    payment,
                    f"provider reports {reported} but payment is {current}",
                    actor,
                )
        if dirty:
            payment.save(update_fields=[*dirty, "date_updated"])
    return Applied(payment, changed, flagged, ignored)


def _apply_provider_refunds(
    payment: Payment, result: StatusResult, actor: Actor, data
) -> tuple[bool, bool]:
    """Take refunds made at the provider (e.g. its portal) into account."""
    reported = result.amount_refunded
    if reported is None:
        reported = payment.amount_paid if result.status == S.REFUNDED else ZERO
    flagged = False
    if reported > payment.amount_paid:
        flagged = _flag(
            payment,
            f"provider reports {_money(reported, payment.currency)} refunded of "
            f"{_money(payment.amount_paid, payment.currency)} paid",
            actor,
        )
        reported = payment.amount_paid
    if reported <= payment.amount_refunded:
        return False, flagged
    payment.amount_refunded = reported
    payment.save(update_fields=["amount_refunded"])
    target = S.REFUNDED if reported >= payment.amount_paid else S.PARTIALLY_REFUNDED
    _move(
        payment,
        target,
        actor,
        f"provider reports {_money(reported, payment.currency)} refunded",
        data,
    )
    return True, flagged


# --- creating payments -----------------------------------------------------------------


def payment_ref(payment: Payment) -> PaymentRef:
    """Describe a payment to its gateway."""
    return PaymentRef(
        ref_id=payment.ref_id,
        transaction_id=payment.gateway_transaction_id,
        session_id=payment.gateway_session_id,
        amount=payment.amount,
        currency=payment.currency,
        created_at=payment.date_created,
        expires_at=payment.expiry_datetime,
        data={
            **payment.gateway_data,
            "crypto_amount": str(payment.crypto_amount or ""),
            "crypto_currency": payment.crypto_currency,
        },
    )


def payment_create(
    *,
    plan: Plan,
    gateway_code: str,
    email: str,
    site_url: str,
    crypto_currency: str = "",
    actor: Actor = Actor("api"),
) -> Payment:
    """Create a payment for a plan and open the provider's checkout.

    The price comes from the plan, never from the client. When the provider
    fails, the payment is kept as FAILED with the reason and GatewayDown is
    raised.
    """
    gateway = get_gateway(gateway_code)
    now = timezone.now()
    with transaction.atomic():
        payment = Payment.objects.create(
            plan=plan,
            email=email,
            amount=plan.price,
            currency=plan.currency,
            payment_gateway=gateway_code,
            crypto_currency=crypto_currency,
            expiry_datetime=now + timedelta(minutes=settings.PAYMENT_EXPIRY_MINUTES),
            next_check_at=now + CHECK_BACKOFF[0],
        )
        _event(
            payment,
            EventKind.CREATED,
            actor,
            f"{plan.name} for {_money(plan.price, plan.currency)} "
            f"via {gateway.display_name}",
        )
    site = site_url.rstrip("/")
    return_url = f"{site}/checkout/return/{payment.ref_id}/"
    request = CheckoutRequest(
        ref_id=payment.ref_id,
        amount=payment.amount,
        currency=payment.currency,
        email=email,
        description=f"Magic eSIM {plan.name}",
        return_url=return_url,
        cancel_url=f"{return_url}?cancelled=1",
        notify_url=f"{site}/api/webhooks/{gateway_code}/",
        site_url=site,
        crypto_currency=crypto_currency,
    )
    try:
        session = gateway.create_checkout(request)
    except (GatewayUnavailable, GatewayConfigError) as exc:
        reason = f"{gateway.display_name} unavailable: {exc}"
        with transaction.atomic():
            locked = _lock(payment.pk)
            _event(locked, EventKind.GATEWAY_ERROR, actor, reason)
            locked.failure_reason = reason
            locked.save(update_fields=["failure_reason"])
            _move(locked, S.FAILED, actor, reason)
        raise GatewayDown(locked, reason) from exc
    with transaction.atomic():
        payment = _lock(payment.pk)
        payment.payment_url = session.payment_url
        payment.gateway_transaction_id = session.transaction_id
        payment.gateway_session_id = session.session_id
        payment.gateway_data = dict(session.data)
        payment.crypto_address = session.crypto_address
        payment.crypto_amount = session.crypto_amount
        payment.crypto_currency = session.crypto_currency or crypto_currency
        if session.expires_at:
            payment.expiry_datetime = session.expires_at
        payment.save()
        _event(
            payment,
            EventKind.CHECKOUT,
            actor,
            f"checkout opened at {gateway.display_name}",
            {"transaction_id": session.transaction_id, "provider": dict(session.raw)},
        )
    return payment


def request_fingerprint(data: Mapping[str, Any]) -> str:
    """Hash the meaningful fields of a create request."""
    canonical = json.dumps(dict(sorted(data.items())), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent_response(
    *, key: str, fingerprint: str, produce: Callable[[], tuple[int, dict]]
) -> tuple[int, dict]:
    """Answer a keyed request once; repeat the stored answer for the same key."""
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(key=key, fingerprint=fingerprint)
    except IntegrityError:
        record = IdempotencyRecord.objects.get(key=key)
        if record.fingerprint != fingerprint:
            return 422, {
                "error": "Idempotency-Key was already used with different parameters",
                "fields": {"Idempotency-Key": ["reused with a different request"]},
            }
        if record.response_status is None:
            return 409, {"error": "a request with this Idempotency-Key is in progress"}
        return record.response_status, json.loads(record.response_body)
    try:
        status, body = produce()
    except BaseException:
        record.delete()
        raise
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        response_status=status,
        response_body=json.dumps(body),
        payment=Payment.objects.filter(ref_id=body.get("ref_id")).first(),
    )
    return status, body


# --- refreshing from the provider ---------------------------------------------------------


def _next_check(attempts: int) -> timedelta:
    return CHECK_BACKOFF[min(attempts, len(CHECK_BACKOFF) - 1)]


def payment_refresh(
    *,
    payment: Payment,
    actor: Actor = Actor("refresh"),
    kind: str = EventKind.REFRESH,
    data: Mapping[str, Any] | None = None,
) -> Applied | None:
    """Ask the provider for a payment's status and apply it.

    Return None when the provider could not be asked; the fault is recorded
    as an event for staff-initiated refreshes and the next check is backed off.
    """
    now = timezone.now()
    try:
        result = get_gateway(payment.payment_gateway).fetch_status(payment_ref(payment))
    except GatewayError as exc:
        _record_failed_check(payment.pk, now)
        if actor.user is not None or kind != EventKind.REFRESH:
            with transaction.atomic():
                _event(_lock(payment.pk), EventKind.GATEWAY_ERROR, actor, str(exc))
        logger.warning("refresh of %s failed: %s", payment.ref_id, exc)
        return None
    return payment_apply_result(
        payment_id=payment.pk, result=result, actor=actor, kind=kind, data=data, now=now
    )


def payment_apply_result(
    *,
    payment_id: int,
    result: StatusResult,
    actor: Actor,
    kind: str = EventKind.REFRESH,
    data: Mapping[str, Any] | None = None,
    now=None,
) -> Applied:
    """Apply a fetched status and note when the payment was last checked."""
    return payment_apply_status(
        payment_id=payment_id,
        result=result,
        actor=actor,
        kind=kind,
        data=data,
        checked_at=now or timezone.now(),
    )


def _record_failed_check(payment_id: int, now) -> None:
    # No lock: the status itself is never touched here.
    payment = Payment.objects.only("check_attempts", "status").get(pk=payment_id)
    attempts = payment.check_attempts + 1
    Payment.objects.filter(pk=payment_id).update(
        last_checked_at=now,
        check_attempts=F("check_attempts") + 1,
        next_check_at=now + _next_check(attempts)
        if payment.status == S.PENDING
        else None,
    )


def payment_claim_refresh(*, payment: Payment, min_age_seconds: int) -> bool:
    """Claim the right to refresh a payment now; False if checked too recently.

    A conditional UPDATE makes the throttle hold across workers: of several
    concurrent status requests only one reaches the provider.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=min_age_seconds)
    claimed = (
        Payment.objects.filter(pk=payment.pk)
        .filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lt=cutoff))
        .update(last_checked_at=now)
    )
    return claimed == 1


def payment_expire_overdue(*, now=None, limit: int = 500) -> int:
    """Expire pending payments past their expiry, after one last provider check."""
    now = now or timezone.now()
    overdue = list(
        Payment.objects.filter(status=S.PENDING, expiry_datetime__lt=now).order_by(
            "expiry_datetime"
        )[:limit]
    )
    expired = 0
    for payment in overdue:
        applied = payment_refresh(payment=payment, actor=Actor("expiry"))
        if applied is None or applied.payment.status != S.PENDING:
            continue  # provider unreachable: keep it pending, try again later
        with transaction.atomic():
            locked = _lock(payment.pk)
            if locked.status == S.PENDING:
                locked.failure_reason = "payment window ended without payment"
                locked.save(update_fields=["failure_reason"])
                _move(locked, S.EXPIRED, Actor("expiry"), locked.failure_reason)
                expired += 1
    return expired


# --- webhooks -----------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookOutcome:
    http_status: int
    body: str
    content_type: str
    delivery: WebhookDelivery


def redact(data: Any) -> Any:
    """Replace values under secret-looking keys, recursively."""
    if isinstance(data, Mapping):
        return {
            str(k): "[redacted]"
            if any(marker in str(k).lower() for marker in SECRET_MARKERS)
            else redact(v)
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return [redact(v) for v in data]
    if isinstance(data, Decimal):
        return str(data)
    return data


def redact_headers(headers: Mapping[str, str], secret_headers: tuple[str, ...]) -> dict:
    """Keep headers for the audit trail, minus secrets and cookies."""
    secret = {h.lower() for h in secret_headers} | {"authorization", "cookie"}
    return {
        k: "[redacted]" if k.lower() in secret or "secret" in k.lower() else v
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
            body=body.decode("utf-8", "replace"),
            remote_addr=remote_addr,
            outcome=WebhookDelivery.Outcome.REJECTED,
            error=f"gateway not configured: {exc}",
            processed_at=timezone.now(),
        )
        return _reply(delivery, 404, f"gateway {gateway_code!r} is not configured")
    delivery = WebhookDelivery.objects.create(
        gateway=gateway_code,
        headers=redact_headers(headers, gateway.secret_headers),
        body=body.decode("utf-8", "replace"),
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
    WebhookDelivery.objects.filter(pk=delivery.pk).update(signature_valid=True)
    delivery.signature_valid = True
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
    delivery.error = error
    delivery.processed_at = timezone.now()
    fields = ["outcome", "error", "processed_at"]
    if valid is not None:
        delivery.signature_valid = valid
        fields.append("signature_valid")
    if payment is not None:
        delivery.payment = payment
        fields.append("payment")
    if event_id:
        delivery.provider_event_id = event_id
        fields.append("provider_event_id")
    delivery.save(update_fields=fields)


def _reply(
    delivery, status: int, body: str, content_type: str = "text/plain"
) -> WebhookOutcome:
    return WebhookOutcome(status, body, content_type, delivery)


# --- refunds -----------------------------------------------------------------------------


def refundable_amount(payment: Payment) -> Decimal:
    """Return paid minus refunded minus refunds still pending."""
    totals = payment.refunds.aggregate(
        done=Sum(
            "amount", filter=Q(status__in=[RefundStatus.SUCCEEDED, RefundStatus.MANUAL])
        ),
        pending=Sum("amount", filter=Q(status=RefundStatus.PENDING)),
    )
    refunded = max(payment.amount_refunded, totals["done"] or ZERO)
    return payment.amount_paid - refunded - (totals["pending"] or ZERO)


def refund_request(
    *,
    payment_id: int,
    amount: Decimal,
    actor: Actor,
    reason: str = "",
    manual: bool = False,
) -> Refund:
    """Refund part or all of a paid payment; over-refunding is impossible.

    The balance check and the PENDING refund row are written under the
    payment's row lock, so two operators cannot both pass the check. The
    provider call happens after that commit, keyed by our refund id.
    `manual` records money returned outside the provider (e.g. crypto).
    """
    with transaction.atomic():
        payment = _lock(payment_id)
        if payment.status not in (S.COMPLETED, S.PARTIALLY_REFUNDED):
            raise RefundNotAllowed(
                f"a {payment.get_status_display().lower()} payment cannot be refunded"
            )
        amount = quantize(Decimal(amount), payment.currency)
        available = refundable_amount(payment)
        if amount <= 0:
            raise RefundNotAllowed("the refund amount must be positive")
        if amount > available:
            raise RefundNotAllowed(
                f"at most {_money(available, payment.currency)} can be refunded"
            )
        gateway = get_gateway(payment.payment_gateway)
        if not manual and not gateway.supports_refunds:
            raise RefundNotAllowed(
                f"{gateway.display_name} has no refund API: record a manual refund"
            )
        refund = Refund.objects.create(
            payment=payment,
            amount=amount,
            currency=payment.currency,
            reason=reason,
            requested_by=actor.user,
            status=RefundStatus.MANUAL if manual else RefundStatus.PENDING,
            date_completed=timezone.now() if manual else None,
        )
        _event(
            payment,
            EventKind.REFUND_REQUESTED,
            actor,
            f"{'manual ' if manual else ''}refund of {_money(amount, payment.currency)}"
            + (f": {reason}" if reason else ""),
            {"refund": refund.idempotency_id},
        )
        if manual:
            _book_refund(payment, refund, actor)
            return refund
    return refund_submit(refund_id=refund.pk, actor=actor)


def refund_submit(*, refund_id: int, actor: Actor = SYSTEM) -> Refund:
    """Send a pending refund to the provider, safely after a lost answer.

    A refund that was sent before is looked up first, so a retry after a
    timeout never refunds twice.
    """
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    payment = refund.payment
    request = RefundRequest(
        ref_id=payment.ref_id,
        refund_id=refund.idempotency_id,
        amount=refund.amount,
        currency=refund.currency,
        transaction_id=payment.gateway_transaction_id,
        reason=refund.reason,
    )
    try:
        gateway = get_gateway(payment.payment_gateway)
        result = gateway.fetch_refund(request) if refund.attempts else None
        if result is None:
            Refund.objects.filter(pk=refund.pk).update(attempts=F("attempts") + 1)
            result = gateway.refund(request)
    except NotSupported as exc:
        result = RefundResult(
            refund.idempotency_id, GatewayRefundStatus.FAILED, message=str(exc)
        )
    except GatewayError as exc:
        with transaction.atomic():
            _event(
                _lock(payment.pk),
                EventKind.GATEWAY_ERROR,
                actor,
                f"refund {refund.idempotency_id} not confirmed: {exc}; will retry",
            )
        refund.refresh_from_db()
        return refund
    return refund_finish(refund_id=refund.pk, result=result, actor=actor)


def refund_finish(
    *, refund_id: int, result: RefundResult, actor: Actor = SYSTEM
) -> Refund:
    """Record a provider's refund answer once."""
    with transaction.atomic():
        refund = Refund.objects.select_related("payment").get(pk=refund_id)
        payment = _lock(refund.payment_id)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if (
            refund.status != RefundStatus.PENDING
            or result.status == GatewayRefundStatus.PENDING
        ):
            return refund
        now = timezone.now()
        if result.status == GatewayRefundStatus.SUCCEEDED:
            Refund.objects.filter(pk=refund.pk).update(
                status=RefundStatus.SUCCEEDED,
                gateway_refund_id=result.gateway_refund_id,
                date_completed=now,
            )
            refund.refresh_from_db()
            _event(
                payment,
                EventKind.REFUND_SUCCEEDED,
                actor,
                f"refund of {_money(refund.amount, refund.currency)} succeeded",
                {"refund": refund.idempotency_id, "provider": dict(result.raw)},
            )
            _book_refund(payment, refund, actor)
        else:
            Refund.objects.filter(pk=refund.pk).update(
                status=RefundStatus.FAILED,
                failure_reason=result.message,
                date_completed=now,
            )
            refund.refresh_from_db()
            _event(
                payment,
                EventKind.REFUND_FAILED,
                actor,
                f"refund of {_money(refund.amount, refund.currency)} failed: {result.message}",
                {"refund": refund.idempotency_id, "provider": dict(result.raw)},
            )
    return refund


def _book_refund(payment: Payment, refund: Refund, actor: Actor) -> None:
    """Add a finished refund to a locked payment's totals and status."""
    done = (
        payment.refunds.filter(
            status__in=[RefundStatus.SUCCEEDED, RefundStatus.MANUAL]
        ).aggregate(total=Sum("amount"))["total"]
        or ZERO
    )
    refunded = min(max(payment.amount_refunded, done), payment.amount_paid)
    if refunded == payment.amount_refunded:
        return  # the provider's own report already counted it
    payment.amount_refunded = refunded
    payment.save(update_fields=["amount_refunded", "date_updated"])
    target = S.REFUNDED if refunded >= payment.amount_paid else S.PARTIALLY_REFUNDED
    _move(
        payment,
        target,
        actor,
        f"{_money(refunded, payment.currency)} refunded in total",
        {"refund": refund.idempotency_id},
    )


# --- staff actions ------------------------------------------------------------------------


def payment_add_note(*, payment_id: int, actor: Actor, message: str) -> PaymentEvent:
    """Add a staff note to the timeline."""
    with transaction.atomic():
        return _event(_lock(payment_id), EventKind.NOTE, actor, message)


def payment_resolve_review(*, payment_id: int, actor: Actor, message: str) -> Payment:
    """Clear a payment's review flag, recording who and why."""
    with transaction.atomic():
        payment = _lock(payment_id)
        if not payment.needs_review:
            return payment
        payment.needs_review = False
        payment.save(update_fields=["needs_review", "date_updated"])
        _event(
            payment,
            EventKind.REVIEW_RESOLVED,
            actor,
            message,
            {"review_reason": payment.review_reason},
        )
    return payment
