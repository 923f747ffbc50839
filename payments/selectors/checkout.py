"""Reads for the checkout: plans on sale, gateways offered, a payment's public view."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils.module_loading import import_string

from gateways.base import GatewayConfigError
from gateways.money import to_provider
from gateways.registry import (
    ADAPTERS,
    GatewayInfo,
    gateway_infos,
    get_gateway,
    offered_codes,
)

from ..exceptions import GatewayNotConfigured
from ..models import (
    Payment,
    Plan,
)


def money_text(amount: Decimal | None, currency: str) -> str:
    """Format an amount at its currency's precision, e.g. "10.00 USD"."""
    if amount is None:
        return "-"
    return f"{to_provider(amount, currency)} {currency}"


def payment_public(payment: Payment) -> dict[str, Any]:
    """Return what a customer may see of a payment (no e-mail, no internal ids)."""
    return {
        "ref_id": payment.ref_id,
        "status": payment.status,
        "amount": to_provider(payment.amount, payment.currency),
        "currency": payment.currency,
        "payment_gateway": payment.payment_gateway,
        "payment_url": payment.payment_url,
        "expiry_datetime": _iso(payment.expiry_datetime),
        "date_paid": _iso(payment.date_paid),
        # What the provider captured, and whether a person is checking the
        # payment (e.g. a short payment): nothing should be delivered then.
        "amount_paid": to_provider(payment.amount_paid, payment.currency),
        "under_review": payment.needs_review,
    }


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def checkout_gateways() -> list[GatewayInfo]:
    """Return the gateways a customer can pay with now (configured ones only)."""
    return [info for info in gateway_infos() if info.configured]


def test_mode() -> bool:
    """Say whether checkout offers a pretend gateway (no real money moves)."""
    return any(info.test_mode for info in checkout_gateways())


def gateway_choices() -> list[tuple[str, str]]:
    """Return (code, display name) of every known gateway, for filters."""
    return [(code, import_string(path).display_name) for code, path in ADAPTERS.items()]


UNAVAILABLE = "payment method unavailable"


def gateway_problem(code: str) -> str:
    """Say why a gateway cannot take a payment now, or "" when it can."""
    if code not in offered_codes():
        return f"unknown gateway {code!r}"
    try:
        get_gateway(code)
    except GatewayConfigError:
        # The cause names settings: it is for the operator, never the customer.
        return UNAVAILABLE
    return ""


def gateway_options(code: str) -> list[str] | None:
    """Return the choices a gateway asks for at checkout (coins), None if unusable."""
    try:
        return get_gateway(code).checkout_options()
    except GatewayConfigError:
        return None


def pay_page(payment: Payment) -> tuple[str, dict[str, Any]] | None:
    """Return the template and context of a gateway's own pay page, if it has one.

    Raise GatewayNotConfigured when the payment's gateway is not available.
    """
    from ..services import payment_ref

    try:
        gateway = get_gateway(payment.payment_gateway)
    except GatewayConfigError as exc:
        raise GatewayNotConfigured(str(exc)) from exc
    return gateway.pay_page(payment_ref(payment))


def pay_page_script_origins(payment: Payment) -> tuple[str, ...]:
    """Return the origins whose scripts a gateway's pay page loads (for its CSP)."""
    try:
        return get_gateway(payment.payment_gateway).pay_page_script_origins()
    except GatewayConfigError:
        return ()


def sandbox_charge(token: str) -> dict[str, Any] | None:
    """Return the sandbox's pretend charge for a hosted-page token, or None.

    Raise GatewayNotConfigured when the sandbox is not enabled.
    """
    try:
        return get_gateway("sandbox").charge(token)
    except GatewayConfigError as exc:
        raise GatewayNotConfigured(str(exc)) from exc


def sellable_plans() -> list[Plan]:
    """Return the active plans checkout can charge, in catalogue order."""
    return [plan for plan in Plan.objects.filter(active=True) if plan.sellable]
