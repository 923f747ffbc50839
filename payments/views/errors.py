"""Domain errors and webhook intakes to HTTP answers: the one place codes are chosen."""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.views import defaults
from django.views.csrf import csrf_failure as django_csrf_failure

from ..exceptions import PaymentError, PaymentErrorCode
from ..services import Intake, WebhookOutcome


@dataclass(frozen=True)
class ErrorAnswer:
    """How a domain error is answered over HTTP."""

    status: int
    # Shown instead of the error's own words ("" shows those): anonymous
    # clients read it, so it never names a setting.
    message: str = ""
    # The same request may succeed later: an Idempotency-Key is freed, not
    # bound to this answer.
    retryable: bool = False


Code = PaymentErrorCode
ERRORS: dict[PaymentErrorCode, ErrorAnswer] = {
    Code.IDEMPOTENCY_CONFLICT: ErrorAnswer(422),
    Code.REQUEST_IN_PROGRESS: ErrorAnswer(409, retryable=True),
    Code.PROVIDER_UNAVAILABLE: ErrorAnswer(
        503,
        "the payment provider is unavailable, please try again later",
        retryable=True,
    ),
    Code.PROVIDER_TIMEOUT: ErrorAnswer(
        503,
        "the payment provider did not answer in time, please try again later",
        retryable=True,
    ),
    Code.GATEWAY_NOT_CONFIGURED: ErrorAnswer(
        503, "payment method unavailable", retryable=True
    ),
    Code.REFUND_NOT_ALLOWED: ErrorAnswer(400),
    Code.ILLEGAL_TRANSITION: ErrorAnswer(409),
    Code.WEBHOOK_NOT_ACCEPTED: ErrorAnswer(400),
    Code.INVALID_FILTER: ErrorAnswer(400),
    Code.APPROVAL_NOT_ALLOWED: ErrorAnswer(403),
    Code.REPAIR_NOT_ALLOWED: ErrorAnswer(403),
}
INTAKES = {
    Intake.REJECTED: 403,
    Intake.UNKNOWN_GATEWAY: 404,
    Intake.RETRY_LATER: 503,
    Intake.INVALID: 400,
    Intake.THROTTLED: 429,
}


def json_error(
    status: int,
    message: str,
    fields: dict[str, list[str]] | None = None,
    extra: dict | None = None,
) -> JsonResponse:
    """Return the project's error shape: {"error": ..., "fields": {...}}.

    A message that names a setting (MPGS_API_BASE_URL, ...) is for operators:
    the client reads "payment method unavailable" instead.
    """
    fields = {
        name: [_public(text) for text in texts]
        for name, texts in (fields or {}).items()
    }
    body = {"error": _public(message), "fields": fields, **(extra or {})}
    return JsonResponse(body, status=status)


# An upper-case, underscore-joined word: the shape of every setting name.
SETTING_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def _public(message: str) -> str:
    if SETTING_NAME.search(str(message)):
        return "payment method unavailable"
    return message


def error_answer(exc: PaymentError) -> ErrorAnswer:
    """Look up how a domain error is answered, by its code."""
    return ERRORS[exc.code]


def error_message(exc: PaymentError) -> str:
    """Return what a client may read about a domain error (no setting names)."""
    return _public(error_answer(exc).message or str(exc))


def error_response(exc: PaymentError) -> JsonResponse:
    """Answer a domain error with its status code and a message safe to show."""
    fields = {}
    if exc.code == Code.IDEMPOTENCY_CONFLICT:
        fields = {"Idempotency-Key": ["reused with a different request"]}
    payment = getattr(exc, "payment", None)
    extra = {"ref_id": payment.ref_id, "status": payment.status} if payment else {}
    return json_error(error_answer(exc).status, error_message(exc), fields, extra)


# What a client reads when Django itself refused a request under /api/.
PLAIN_MESSAGES = {
    400: "bad request",
    403: "forbidden",
    404: "no such API endpoint",
    405: "method not allowed",
    413: "request body is too large",
    429: "too many requests",
    500: "internal error: the request could not be completed",
    503: "service temporarily unavailable, please try again later",
}


def api_path(path: str) -> bool:
    """Tell whether a request path belongs to the JSON API."""
    return path == "/api" or path.startswith("/api/")


def plain_message(status: int) -> str:
    """Return the generic message for an HTTP error status."""
    return PLAIN_MESSAGES.get(status) or (
        "request failed" if status < 500 else PLAIN_MESSAGES[500]
    )


def outage_exceptions() -> tuple[type[BaseException], ...]:
    """Return the exceptions that mean the database or the cache is down."""
    kinds: list[type[BaseException]] = [OperationalError, InterfaceError]
    try:
        from redis import exceptions as redis_errors
    except ImportError:  # pragma: no cover - redis is a runtime requirement
        return tuple(kinds)
    return (*kinds, redis_errors.ConnectionError, redis_errors.TimeoutError)


def outage_response() -> JsonResponse:
    """Answer a request that met a database or cache outage: 503, Retry-After."""
    response = json_error(503, PLAIN_MESSAGES[503])
    response["Retry-After"] = str(settings.OUTAGE_RETRY_AFTER_SECONDS)
    return response


def csrf_failure(request, reason: str = ""):
    """Answer a failed CSRF check: JSON under /api/, Django's page elsewhere."""
    if api_path(request.path):
        return json_error(403, "CSRF check failed: reload the page and try again")
    return django_csrf_failure(request, reason)


def page_not_found(request, exception=None):
    """handler404: JSON under /api/, the HTML page elsewhere."""
    if api_path(request.path):
        return json_error(404, plain_message(404))
    return defaults.page_not_found(request, exception)


def bad_request(request, exception=None):
    """handler400: JSON under /api/ (413 for an oversized body)."""
    if api_path(request.path):
        if isinstance(exception, RequestDataTooBig):
            return json_error(413, plain_message(413))
        return json_error(400, plain_message(400))
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    """handler403: JSON under /api/."""
    if api_path(request.path):
        return json_error(403, plain_message(403))
    return defaults.permission_denied(request, exception)


def server_error(request):
    """handler500: JSON under /api/ (503 when the database or cache is down)."""
    if not api_path(request.path):
        return defaults.server_error(request)
    exc = sys.exc_info()[1]
    if exc is not None and isinstance(exc, outage_exceptions()):
        return outage_response()
    return json_error(500, plain_message(500))


def api_errors(view):
    """Turn domain errors raised below a view into JSON answers."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except PaymentError as exc:
            return error_response(exc)

    return wrapper


def webhook_response(outcome: WebhookOutcome) -> HttpResponse:
    """Answer a provider: its expected reply once accepted, else a JSON error."""
    if outcome.intake in (Intake.ACCEPTED, Intake.UNMATCHED) and outcome.reply:
        # A verified notification about no payment here is acknowledged too:
        # it is stored for a person, and the provider stops retrying.
        reply = outcome.reply
        return HttpResponse(
            reply.body, status=reply.status, content_type=reply.content_type
        )
    response = json_error(INTAKES[outcome.intake], outcome.message)
    if outcome.retry_after:
        response["Retry-After"] = str(outcome.retry_after)
    return response
