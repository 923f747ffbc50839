"""Domain errors and webhook intakes to HTTP answers: the one place codes are chosen."""

from __future__ import annotations

import functools

from django.http import HttpResponse, JsonResponse

from .. import exceptions as errors
from ..services import Intake, WebhookOutcome

# Anonymous clients read these messages: they never name a setting.
ERRORS: dict[type[errors.PaymentError], tuple[int, str]] = {
    errors.IdempotencyConflict: (422, ""),
    errors.RequestInProgress: (409, ""),
    errors.GatewayUnavailable: (
        503,
        "the payment provider is unavailable, please try again later",
    ),
    errors.GatewayNotConfigured: (503, "this payment method is not available"),
    errors.RefundNotAllowed: (400, ""),
    errors.IllegalTransition: (409, ""),
    errors.WebhookNotAccepted: (400, ""),
}
INTAKES = {
    Intake.REJECTED: 403,
    Intake.UNKNOWN_GATEWAY: 404,
    Intake.UNMATCHED: 404,
    Intake.RETRY_LATER: 503,
    Intake.INVALID: 400,
}


def json_error(
    status: int,
    message: str,
    fields: dict[str, list[str]] | None = None,
    extra: dict | None = None,
) -> JsonResponse:
    """Return the project's error shape: {"error": ..., "fields": {...}}."""
    body = {"error": message, "fields": fields or {}, **(extra or {})}
    return JsonResponse(body, status=status)


def error_response(exc: errors.PaymentError) -> JsonResponse:
    """Answer a domain error with its status code and a message safe to show."""
    status, public = next(
        (answer for kind, answer in ERRORS.items() if isinstance(exc, kind)),
        (400, ""),
    )
    fields = {}
    if isinstance(exc, errors.IdempotencyConflict):
        fields = {"Idempotency-Key": ["reused with a different request"]}
    payment = getattr(exc, "payment", None)
    extra = {"ref_id": payment.ref_id, "status": payment.status} if payment else {}
    return json_error(status, public or str(exc), fields, extra)


def api_errors(view):
    """Turn domain errors raised below a view into JSON answers."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except errors.PaymentError as exc:
            return error_response(exc)

    return wrapper


def webhook_response(outcome: WebhookOutcome) -> HttpResponse:
    """Answer a provider: its expected reply once accepted, else a JSON error."""
    if outcome.intake == Intake.ACCEPTED:
        reply = outcome.reply
        return HttpResponse(
            reply.body, status=reply.status, content_type=reply.content_type
        )
    return json_error(INTAKES[outcome.intake], outcome.message)
