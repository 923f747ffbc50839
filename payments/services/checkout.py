"""Creating payments and opening the provider's checkout, idempotently."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from gateways.base import (
    CheckoutRequest,
    GatewayConfigError,
    GatewayUnavailable,
)
from gateways.registry import get_gateway

from ..models import (
    EventKind,
    IdempotencyRecord,
    Payment,
    Plan,
)
from .core import (
    Actor,
    GatewayDown,
    S,
    _event,
    _lock,
    _money,
    _move,
)
from .status import (
    CHECK_BACKOFF,
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
            _move(locked, S.FAILED, actor, reason, also=["failure_reason"])
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
