"""The JSON API: create a payment, read its status, trigger reconciliation."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpResponseRedirect, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from gateways.base import constant_time_equal

from .. import services, tasks
from ..forms import PaymentCreateForm
from ..models import Payment
from .common import json_error, payment_public, site_url
from .pages import checkout_context

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class BadRequest(Exception):
    def __init__(self, status: int, message: str, fields=None):
        super().__init__(message)
        self.http_status = status
        self.fields = fields or {}


def _read_payload(request) -> tuple[dict, bool]:
    """Return (fields, is_form) from a JSON or form body, or raise BadRequest."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.API_MAX_BODY_BYTES:
        raise BadRequest(
            413, f"request body is over {settings.API_MAX_BODY_BYTES} bytes"
        )
    content_type = request.content_type or ""
    if not request.body.strip():
        raise BadRequest(400, "empty request body: send a JSON object or a form")
    if content_type in FORM_TYPES:
        if len(request.body) > settings.API_MAX_BODY_BYTES:
            raise BadRequest(413, "request body is too large")
        return {k: request.POST.get(k) for k in request.POST}, True
    if content_type != "application/json":
        raise BadRequest(
            400,
            "unsupported content type: send application/json or a form",
            {"Content-Type": [f"{content_type or 'missing'} is not accepted"]},
        )
    body = request.body
    if len(body) > settings.API_MAX_BODY_BYTES:
        raise BadRequest(413, "request body is too large")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(400, "request body must be a JSON object")
    return data, False


def _csrf_rejects(request) -> bool:
    middleware = CsrfViewMiddleware(lambda r: None)
    return middleware.process_view(request, None, (), {}) is not None


def _wants_json(request, is_form: bool) -> bool:
    return not is_form or "application/json" in request.headers.get("Accept", "")


@csrf_exempt
@require_POST
def payment_create(request):
    """Create a payment; JSON for API clients, a redirect for the checkout form."""
    try:
        data, is_form = _read_payload(request)
    except BadRequest as exc:
        return json_error(exc.http_status, str(exc), exc.fields)
    # The checkout page posts a form with Django's CSRF token; JSON clients are
    # anonymous API callers with no cookie to ride on.
    if is_form and _csrf_rejects(request):
        return json_error(403, "CSRF check failed: reload the checkout page")
    wants_json = _wants_json(request, is_form)
    form = PaymentCreateForm(data)
    if not form.is_valid():
        if not wants_json:
            return _checkout_page(request, form, status=400)
        return json_error(400, "invalid request", form.error_dict())

    def produce() -> tuple[int, dict]:
        try:
            payment = services.payment_create(
                plan=form.cleaned_data["plan"],
                gateway_code=form.cleaned_data["payment_gateway"],
                email=form.cleaned_data["email"],
                crypto_currency=form.cleaned_data.get("crypto_currency") or "",
                site_url=site_url(request),
            )
        except services.GatewayDown as exc:
            return 503, {
                "error": "the payment provider is unavailable, please try again later",
                "fields": {},
                "ref_id": exc.payment.ref_id,
                "status": exc.payment.status,
            }
        return 201, payment_public(payment)

    key = request.headers.get("Idempotency-Key", "").strip()
    if key:
        if len(key) > 255 or not (key.isascii() and key.isprintable()):
            return json_error(
                400,
                "invalid Idempotency-Key",
                {"Idempotency-Key": ["at most 255 printable ASCII characters"]},
            )
        fingerprint = services.request_fingerprint(
            {k: str(v) for k, v in form.cleaned_data.items() if k != "plan"}
            | {"plan": form.cleaned_data["plan"].code}
        )
        status, body = services.idempotent_response(
            key=key, fingerprint=fingerprint, produce=produce
        )
    else:
        status, body = produce()
    if wants_json:
        return JsonResponse(body, status=status)
    if status == 201:
        return HttpResponseRedirect(body["payment_url"], status=303)
    form.add_error(None, body["error"])
    return _checkout_page(request, form, status=status)


def _checkout_page(request, form, status: int):
    return render(
        request, "payments/checkout.html", checkout_context(form), status=status
    )


@require_GET
def payment_status(request, ref_id: str):
    """Return a payment's public status, refreshing it from the provider."""
    payment = Payment.objects.filter(ref_id=ref_id).first()
    if payment is None:
        return json_error(404, "unknown payment reference")
    if payment.status == Payment.Status.PENDING and services.payment_claim_refresh(
        payment=payment, min_age_seconds=settings.STATUS_REFRESH_SECONDS
    ):
        services.payment_refresh(payment=payment, actor=services.Actor("status-api"))
        payment.refresh_from_db()
    return JsonResponse(payment_public(payment))


@csrf_exempt
@require_POST
def update_pending(request):
    """Queue a reconciliation run (staff session or bearer token)."""
    token = settings.RECONCILE_API_TOKEN
    auth = request.headers.get("Authorization", "")
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not (token and bearer and constant_time_equal(token, bearer)):
        if not (request.user.is_authenticated and request.user.is_staff):
            status = 403 if request.user.is_authenticated else 401
            return json_error(status, "staff login or a valid bearer token is required")
        # A staff session is a cookie: it must carry the CSRF token too.
        if _csrf_rejects(request):
            return json_error(403, "CSRF check failed")
    run = tasks.enqueue_reconciliation(trigger="api")
    return JsonResponse({"run_id": run.pk, "status": "queued"}, status=202)


@csrf_exempt
def not_found(request):
    """Answer unknown API paths and malformed references in JSON."""
    if request.path.startswith("/api/payments/status/"):
        return json_error(404, "unknown payment reference")
    return json_error(404, "no such API endpoint")
