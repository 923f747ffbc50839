"""Creating payments and opening the provider's checkout, idempotently."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from gateways.base import (
    CheckoutRequest,
    GatewayConfigError,
    GatewayUnavailable,
)
from gateways.registry import get_gateway

from .. import clock
from ..exceptions import (
    GatewayNotConfigured,
    IdempotencyConflict,
    ProviderUnavailable,
    RequestInProgress,
)
from ..models import EventKind, IdempotencyRecord, Payment, Plan
from ..states import PaymentStatus
from .checks import first_check_at
from .transitions import (
    Actor,
    Change,
    Entry,
    money_text,
    payments_change,
    timeline_entry,
)

API_ACTOR = Actor("api")


def payment_create(
    *,
    plan: Plan,
    gateway_code: str,
    email: str,
    site_url: str,
    crypto_currency: str = "",
    actor: Actor = API_ACTOR,
) -> Payment:
    """Create a payment for a plan and open the provider's checkout.

    The price comes from the plan, never from the client. When the provider
    fails, the payment is kept as FAILED with the reason and
    ProviderUnavailable is raised (carrying the payment). Raise
    GatewayNotConfigured when the gateway has no credentials.
    """
    try:
        gateway = get_gateway(gateway_code)
    except GatewayConfigError as exc:
        raise GatewayNotConfigured(str(exc)) from exc
    payment = _payment_row(plan, gateway, gateway_code, email, crypto_currency, actor)
    try:
        session = gateway.create_checkout(
            _checkout_request(payment, plan, site_url.rstrip("/"), gateway_code)
        )
    except (GatewayUnavailable, GatewayConfigError) as exc:
        reason = f"{gateway.display_name} unavailable: {exc}"
        failed = Change(
            status=PaymentStatus.FAILED,
            updates={"failure_reason": reason},
            message=reason,
            entries=(Entry(EventKind.GATEWAY_ERROR, reason),),
        )
        done = payments_change(decisions={payment.pk: lambda _p: failed}, actor=actor)
        raise ProviderUnavailable(reason, payment=done[payment.pk].payment) from exc
    opened = _opened(gateway, session, payment, crypto_currency)
    done = payments_change(decisions={payment.pk: lambda _p: opened}, actor=actor)
    return done[payment.pk].payment


def _opened(gateway, session, payment: Payment, crypto_currency: str) -> Change:
    """Record what the provider's checkout session told us."""
    return Change(
        updates={
            "payment_url": session.payment_url,
            "gateway_transaction_id": session.transaction_id,
            "gateway_session_id": session.session_id,
            "gateway_data": dict(session.data),
            "crypto_address": session.crypto_address,
            "crypto_amount": session.crypto_amount,
            "crypto_currency": session.crypto_currency or crypto_currency,
            "expiry_datetime": clock.from_provider(session.expires_at)
            or payment.expiry_datetime,
        },
        entries=(
            Entry(
                EventKind.CHECKOUT,
                f"checkout opened at {gateway.display_name}",
                {
                    "transaction_id": session.transaction_id,
                    "provider": dict(session.raw),
                },
            ),
        ),
    )


def _payment_row(plan, gateway, gateway_code, email, crypto_currency, actor) -> Payment:
    """Create the PENDING payment and its CREATED event."""
    now = clock.now()
    with transaction.atomic():
        payment = Payment.objects.create(
            plan=plan,
            email=email,
            amount=plan.price,
            currency=plan.currency,
            payment_gateway=gateway_code,
            crypto_currency=crypto_currency,
            expiry_datetime=now + timedelta(minutes=settings.PAYMENT_EXPIRY_MINUTES),
            next_check_at=first_check_at(now),
        )
        message = (
            f"{plan.name} for {money_text(plan.price, plan.currency)} "
            f"via {gateway.display_name}"
        )
        timeline_entry(payment, Entry(EventKind.CREATED, message), actor).save()
    return payment


def _checkout_request(payment: Payment, plan: Plan, site: str, code: str):
    return_url = f"{site}/checkout/return/{payment.ref_id}/"
    return CheckoutRequest(
        ref_id=payment.ref_id,
        amount=payment.amount,
        currency=payment.currency,
        email=payment.email,
        description=f"Magic eSIM {plan.name}",
        return_url=return_url,
        cancel_url=f"{return_url}?cancelled=1",
        notify_url=f"{site}/api/webhooks/{code}/",
        site_url=site,
        crypto_currency=payment.crypto_currency,
    )


def request_fingerprint(data: Mapping[str, Any]) -> str:
    """Hash the meaningful fields of a create request."""
    canonical = json.dumps(dict(sorted(data.items())), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class StoredAnswer:
    """The final answer given to the first request with an Idempotency-Key, as sent."""

    status: int
    body: str


def idempotency_begin(
    *, key: str, fingerprint: str
) -> IdempotencyRecord | StoredAnswer:
    """Claim an Idempotency-Key, or return the answer stored for it.

    Raise IdempotencyConflict when the key was used with other parameters,
    RequestInProgress while the first request with it has not finished.
    """
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(key=key, fingerprint=fingerprint)
    except IntegrityError:
        record = IdempotencyRecord.objects.get(key=key)
    if record.fingerprint != fingerprint:
        raise IdempotencyConflict(
            "Idempotency-Key was already used with different parameters"
        )
    if record.response_status is None:
        raise RequestInProgress("a request with this Idempotency-Key is in progress")
    return StoredAnswer(record.response_status, record.response_body)


def idempotency_finish(
    *,
    record: IdempotencyRecord,
    answer: StoredAnswer,
    final: bool,
    payment: Payment | None,
) -> None:
    """Keep a final answer for replays; a retryable one frees the key instead.

    The caller that made the answer says whether it is `final` (a retry with
    the same key must get it again) or retryable (the same key may try again,
    e.g. after a provider outage): the status code is never read here.
    """
    if not final:
        record.delete()
        return
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        response_status=answer.status, response_body=answer.body, payment=payment
    )


def idempotency_abandon(*, record: IdempotencyRecord) -> None:
    """Free a claimed key whose request failed before it had an answer."""
    record.delete()
