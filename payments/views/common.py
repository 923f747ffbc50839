"""Helpers shared by the public views."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import JsonResponse

from gateways.money import to_provider


def json_error(
    status: int, message: str, fields: dict[str, list[str]] | None = None
) -> JsonResponse:
    """Return the project's error shape: {"error": ..., "fields": {...}}."""
    return JsonResponse({"error": message, "fields": fields or {}}, status=status)


def site_url(request) -> str:
    """Return the public base URL: SITE_URL, else the request's own."""
    return settings.SITE_URL or request.build_absolute_uri("/").rstrip("/")


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def payment_public(payment) -> dict[str, Any]:
    """Serialise what a customer may see of a payment (no e-mail, no ids)."""
    return {
        "ref_id": payment.ref_id,
        "status": payment.status,
        "amount": to_provider(payment.amount, payment.currency),
        "currency": payment.currency,
        "payment_gateway": payment.payment_gateway,
        "payment_url": payment.payment_url,
        "expiry_datetime": _iso(payment.expiry_datetime),
        "date_paid": _iso(payment.date_paid),
    }


def _iso(value) -> str | None:
    return value.isoformat() if value else None
