"""The JSON API: create a payment, read its status, trigger reconciliation."""

from __future__ import annotations

import hmac
import json

from django.conf import settings
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .. import selectors, services, tasks
from ..exceptions import GatewayUnavailable
from ..forms import PaymentCreateForm
from ..models import Payment
from .common import json_error, site_url
from .errors import api_errors, error_response
from .limits import rate_limited
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
@rate_limited("RATE_LIMIT_CREATE", scope="create")
@api_errors
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

    def create() -> JsonResponse:
        try:
            payment = services.payment_create(
                plan=form.cleaned_data["plan"],
                gateway_code=form.cleaned_data["payment_gateway"],
                email=form.cleaned_data["email"],
                crypto_currency=form.cleaned_data.get("crypto_currency") or "",
                site_url=site_url(request),
            )
        except GatewayUnavailable as exc:
            return error_response(exc)
        return JsonResponse(selectors.payment_public(payment), status=201)

    key = request.headers.get("Idempotency-Key", "").strip()
    if key:
        if len(key) > 255 or not (key.isascii() and key.isprintable()):
            return json_error(
                400,
                "invalid Idempotency-Key",
                {"Idempotency-Key": ["at most 255 printable ASCII characters"]},
            )
        response = _once(key, _fingerprint(form), create)
    else:
        response = create()
    if wants_json:
        return response
    body = json.loads(response.content)
    if response.status_code == 201:
        return HttpResponseRedirect(body["payment_url"], status=303)
    form.add_error(None, body["error"])
    return _checkout_page(request, form, status=response.status_code)


def _fingerprint(form: PaymentCreateForm) -> str:
    cleaned = form.cleaned_data
    return services.request_fingerprint(
        {k: str(v) for k, v in cleaned.items() if k != "plan"}
        | {"plan": cleaned["plan"].code}
    )


def _once(key: str, fingerprint: str, create) -> HttpResponse:
    """Answer a keyed create once; repeat the first answer byte for byte."""
    claim = services.idempotency_begin(key=key, fingerprint=fingerprint)
    if isinstance(claim, services.StoredAnswer):
        return HttpResponse(
            claim.body, status=claim.status, content_type="application/json"
        )
    try:
        response = create()
    except BaseException:
        services.idempotency_abandon(record=claim)
        raise
    body = response.content.decode()
    ref_id = json.loads(body).get("ref_id")
    services.idempotency_finish(
        record=claim,
        answer=services.StoredAnswer(response.status_code, body),
        payment=Payment.objects.filter(ref_id=ref_id).first() if ref_id else None,
    )
    return response


def _checkout_page(request, form, status: int):
    response = render(
        request, "payments/checkout.html", checkout_context(form), status=status
    )
    # The checkout page's own form POST gets the page back with its errors:
    # the one HTML answer under /api/ (ApiErrorMiddleware leaves it alone).
    response.renders_page = True
    return response


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
    """Queue a reconciliation run (staff session or bearer token)."""
    token = settings.RECONCILE_API_TOKEN
    auth = request.headers.get("Authorization", "")
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not (token and bearer and hmac.compare_digest(token.encode(), bearer.encode())):
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
