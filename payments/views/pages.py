"""Customer pages: the checkout (and its form POST), our pay page, the result page."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.csp import csp_override, csp_report_only_override
from django.views.decorators.http import require_GET, require_safe

from .. import selectors, services
from ..exceptions import GatewayNotConfigured, PaymentError
from ..forms import PaymentCreateForm
from ..models import Payment
from .common import BadRequest, csrf_rejects, json_error, read_payload, site_url
from .errors import error_answer, error_message


def checkout_context(form: PaymentCreateForm | None = None) -> dict:
    gateways = selectors.checkout_gateways()
    return {
        "plans": selectors.sellable_plans(),
        "gateways": gateways,
        "form": form,
        "selected_gateway": (form.data.get("payment_gateway") if form else None)
        or next((g.code for g in gateways if g.configured), ""),
    }


FAVICON = "payments/favicon.svg"


@require_safe
def favicon(request):
    """Send browsers that ask for /favicon.ico to the icon among the static files.

    Pages name the icon in a <link rel="icon">; this answers the browsers and
    tools that ask the site's root anyway. Its static name may be hashed, so
    the redirect is temporary.
    """
    return HttpResponseRedirect(static(FAVICON))


@require_GET
def checkout(request):
    """Show plans and the gateways a customer can pay with now."""
    return render(request, "payments/checkout.html", checkout_context())


def checkout_submit(request):
    """Take the checkout page's own form POST: off to the provider, or the page again.

    What a browser without checkout.js sends to POST /api/payments/ (routed
    here by `api.payment_create`, which applies the method and rate limits).
    A form carries no Idempotency-Key: that is checkout.js's, over JSON.
    """
    try:
        data, _form_body = read_payload(request)
    except BadRequest as exc:
        return json_error(exc.http_status, str(exc), exc.fields)
    if csrf_rejects(request):
        return json_error(403, "CSRF check failed: reload the checkout page")
    form = PaymentCreateForm(data)
    if not form.is_valid():
        return _checkout_page(request, form, status=400)
    try:
        payment = services.payment_create(
            plan=form.cleaned_data["plan"],
            gateway_code=form.cleaned_data["payment_gateway"],
            email=form.cleaned_data["email"],
            crypto_currency=form.cleaned_data.get("crypto_currency") or "",
            site_url=site_url(request),
        )
    except PaymentError as exc:
        form.add_error(None, error_message(exc))
        return _checkout_page(request, form, status=error_answer(exc).status)
    return HttpResponseRedirect(payment.payment_url, status=303)


def _checkout_page(request, form: PaymentCreateForm, status: int):
    response = render(
        request, "payments/checkout.html", checkout_context(form), status=status
    )
    # The checkout page's own form POST gets the page back with its errors:
    # the one HTML answer under /api/ (ApiErrorMiddleware leaves it alone).
    response.renders_page = True
    return response


@require_GET
def pay_page(request, ref_id: str):
    """Open the provider's hosted page through its own script (MPGS)."""
    payment = get_object_or_404(Payment, ref_id=ref_id)
    return_url = reverse("payments:return", args=[payment.ref_id])
    if payment.status != Payment.Status.PENDING:
        return HttpResponseRedirect(return_url)
    try:
        page = selectors.pay_page(payment)
    except GatewayNotConfigured as exc:
        raise Http404("gateway not available") from exc
    if page is None:
        raise Http404("this gateway has no pay page")
    template, context = page
    render_page = allow_scripts_from(selectors.pay_page_script_origins(payment))(render)
    return render_page(
        request, template, {**context, "payment": payment, "return_url": return_url}
    )


# Directives a provider's own script may need on the page that loads it.
SCRIPT_DIRECTIVES = ("script-src", "connect-src", "frame-src", "style-src")


def allow_scripts_from(origins: tuple[str, ...]):
    """Decorate a view so that its page may run scripts from `origins` too.

    Django's per-view CSP override: only this page gets the provider's origin,
    every other page keeps SECURE_CSP as it is.
    """

    def widen(policy: dict) -> dict:
        if not policy or not origins:
            return policy
        widened = dict(policy)
        for directive in SCRIPT_DIRECTIVES:
            base = widened.get(directive) or widened.get("default-src") or []
            widened[directive] = [*base, *origins]
        return widened

    def decorator(view):
        enforced = csp_override(widen(settings.SECURE_CSP))(view)
        return csp_report_only_override(widen(settings.SECURE_CSP_REPORT_ONLY))(
            enforced
        )

    return decorator


@require_GET
def checkout_return(request, ref_id: str):
    """Confirm server-to-server where the payer landed, then show the result."""
    payment = services.payment_return(
        payment=get_object_or_404(Payment, ref_id=ref_id), params=request.GET
    )
    return render(
        request,
        "payments/result.html",
        {
            "payment": payment,
            "cancelled": "cancelled" in request.GET,
            "status_url": reverse("payments:status", args=[payment.ref_id]),
            "poll_seconds": max(settings.STATUS_REFRESH_SECONDS, 2),
        },
    )
