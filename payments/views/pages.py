"""Customer pages: the checkout, our provider pay page and the result page."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from gateways.base import GatewayConfigError
from gateways.registry import gateway_infos, get_gateway

from .. import services
from ..forms import PaymentCreateForm
from ..models import EventKind, Payment, Plan


def checkout_context(form: PaymentCreateForm | None = None) -> dict:
    gateways = gateway_infos()
    return {
        "plans": Plan.objects.filter(active=True),
        "gateways": gateways,
        "form": form,
        "selected_gateway": (form.data.get("payment_gateway") if form else None)
        or next((g.code for g in gateways if g.configured), ""),
    }


@require_GET
def checkout(request):
    """Show plans and gateways; unconfigured gateways are shown disabled."""
    return render(request, "payments/checkout.html", checkout_context())


@require_GET
def pay_page(request, ref_id: str):
    """Open the provider's hosted page through its own script (MPGS)."""
    payment = get_object_or_404(Payment, ref_id=ref_id)
    return_url = reverse("payments:return", args=[payment.ref_id])
    if payment.status != Payment.Status.PENDING:
        return HttpResponseRedirect(return_url)
    try:
        page = get_gateway(payment.payment_gateway).pay_page(
            services.payment_ref(payment)
        )
    except GatewayConfigError as exc:
        raise Http404("gateway not available") from exc
    if page is None:
        raise Http404("this gateway has no pay page")
    template, context = page
    return render(
        request, template, {**context, "payment": payment, "return_url": return_url}
    )


@require_GET
def checkout_return(request, ref_id: str):
    """Confirm server-to-server where the payer landed, then show the result."""
    payment = get_object_or_404(Payment, ref_id=ref_id)
    if payment.status == Payment.Status.PENDING and services.payment_claim_refresh(
        payment=payment, min_age_seconds=2
    ):
        try:
            gateway = get_gateway(payment.payment_gateway)
            note = gateway.return_message(services.payment_ref(payment), request.GET)
        except GatewayConfigError:
            note = ""
        services.payment_refresh(
            payment=payment,
            actor=services.Actor("return"),
            kind=EventKind.RETURN,
            data={"note": note, "cancelled": "cancelled" in request.GET},
        )
        payment.refresh_from_db()
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
