"""The JSON API: create a payment, read its status, trigger reconciliation.

`POST /api/payments/` is shared with the checkout page's own form: a form
POST that does not ask for JSON is that page's (`pages.checkout_submit`, which
answers with the page); everything else is the JSON API's. Neither reads the
other's answer: both call `services.payment_create` and render its outcome.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .. import selectors, services, tasks
from ..exceptions import PaymentError
from ..forms import PaymentCreateForm
from ..models import Payment
from ..roles import RECONCILE_PERMISSION
from .common import (
    BadRequest,
    csrf_rejects,
    is_form,
    json_error,
    read_payload,
    site_url,
    wants_json,
)
from .errors import api_errors, error_answer, error_response
from .limits import rate_limited
from .pages import checkout_submit


@csrf_exempt
@require_POST
@rate_limited("RATE_LIMIT_CREATE", scope="create")
def payment_create(request):
    """Create a payment: JSON for API clients, the page for the checkout's own form.

    A form body that names an `Idempotency-Key` comes from an API client (a
    browser's form cannot send the header): it gets the JSON API, which
    honours the key, as DESIGN.md's contract says.
    """
    api_client = wants_json(request) or bool(request.headers.get("Idempotency-Key"))
    if is_form(request) and not api_client:
        return checkout_submit(request)
    return payment_create_json(request)


@api_errors
def payment_create_json(request):
    """Create a payment for an API client (or checkout.js); answer JSON."""
    try:
        data, form_body = read_payload(request)
    except BadRequest as exc:
        return json_error(exc.http_status, str(exc), exc.fields)
    # A form body is the checkout page's (checkout.js), with Django's CSRF
    # token; JSON clients are anonymous API callers with no cookie to ride on.
    if form_body and csrf_rejects(request):
        return json_error(403, "CSRF check failed: reload the checkout page")
    form = PaymentCreateForm(data)
    if not form.is_valid():
        return json_error(400, "invalid request", form.error_dict())
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return _create(request, form).response
    if len(key) > 255 or not (key.isascii() and key.isprintable()):
        return json_error(
            400,
            "invalid Idempotency-Key",
            {"Idempotency-Key": ["at most 255 printable ASCII characters"]},
        )
    return _once(key, _fingerprint(form), lambda: _create(request, form))


@dataclass(frozen=True)
class Answer:
    """A create's JSON answer, whether it is final, and the payment it made."""

    response: JsonResponse
    # A final answer is replayed to every request with the same key; a
    # retryable one (the provider down) frees the key.
    final: bool
    payment: Payment | None = None


def _create(request, form: PaymentCreateForm) -> Answer:
    try:
        payment = services.payment_create(
            plan=form.cleaned_data["plan"],
            gateway_code=form.cleaned_data["payment_gateway"],
            email=form.cleaned_data["email"],
            crypto_currency=form.cleaned_data.get("crypto_currency") or "",
            site_url=site_url(request),
        )
    except PaymentError as exc:
        return Answer(error_response(exc), final=not error_answer(exc).retryable)
    public = selectors.payment_public(payment)
    return Answer(JsonResponse(public, status=201), final=True, payment=payment)


def _fingerprint(form: PaymentCreateForm) -> str:
    cleaned = form.cleaned_data
    return services.request_fingerprint(
        {k: str(v) for k, v in cleaned.items() if k != "plan"}
        | {"plan": cleaned["plan"].code}
    )


def _once(key: str, fingerprint: str, create) -> HttpResponse:
    """Answer a keyed create once; repeat its final answer byte for byte."""
    claim = services.idempotency_begin(key=key, fingerprint=fingerprint)
    if isinstance(claim, services.StoredAnswer):
        return HttpResponse(
            claim.body, status=claim.status, content_type="application/json"
        )
    try:
        answer = create()
    except BaseException:
        services.idempotency_abandon(record=claim)
        raise
    response = answer.response
    services.idempotency_finish(
        record=claim,
        answer=services.StoredAnswer(response.status_code, response.content.decode()),
        final=answer.final,
        payment=answer.payment,
    )
    return response


# Exempt from CSRF so that a POST meets require_GET's 405, not a CSRF 403: the
# view changes nothing a customer's cookie could be abused for.
@csrf_exempt
@require_GET
@rate_limited("RATE_LIMIT_STATUS", scope="status")
def payment_status(request, ref_id: str):
    """Return a payment's public status, refreshing it from the provider."""
    payment = Payment.objects.filter(ref_id=ref_id).first()
    if payment is None:
        return json_error(404, "unknown payment reference")
    payment = services.payment_refresh_for_customer(payment=payment)
    return JsonResponse(selectors.payment_public(payment))


@csrf_exempt
@require_POST
def update_pending(request):
    """Queue a reconciliation run (the bearer token, or a session that may Run now).

    A session needs what the admin's Run now needs (`RECONCILE_PERMISSION`):
    staff who may not start a run there may not start one here either.
    """
    token = settings.RECONCILE_API_TOKEN
    auth = request.headers.get("Authorization", "")
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not (token and bearer and hmac.compare_digest(token.encode(), bearer.encode())):
        user = request.user
        if not user.is_authenticated:
            return json_error(401, "staff login or a valid bearer token is required")
        if not (user.is_active and user.is_staff):
            return json_error(403, "staff login or a valid bearer token is required")
        if not user.has_perm(RECONCILE_PERMISSION):
            return json_error(
                403, "your role may not start a reconciliation run (as Run now)"
            )
        # A staff session is a cookie: it must carry the CSRF token too.
        if csrf_rejects(request):
            return json_error(403, "CSRF check failed")
    run = tasks.enqueue_reconciliation(trigger="api")
    return JsonResponse({"run_id": run.pk, "status": "queued"}, status=202)


@csrf_exempt
def not_found(request):
    """Answer unknown API paths and malformed references in JSON."""
    if request.path.startswith("/api/payments/status/"):
        return json_error(404, "unknown payment reference")
    return json_error(404, "no such API endpoint")
