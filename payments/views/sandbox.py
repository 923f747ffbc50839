"""The sandbox provider's hosted page, served by this app."""

from __future__ import annotations

from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from .. import selectors, services
from ..exceptions import GatewayNotConfigured

CHOICES = {"pay": "paid", "decline": "declined", "abandon": "abandoned"}


@require_http_methods(["GET", "POST"])
def sandbox_pay(request, token: str):
    """Show Pay / Decline / Abandon; a choice sends a signed notification.

    The notification goes through the same verification and ingestion path as
    any provider's, in-process: an HTTP call from this request back to this
    server would deadlock a single-worker server.
    """
    try:
        charge = selectors.sandbox_charge(token)
    except GatewayNotConfigured as exc:
        raise Http404("the sandbox is not enabled") from exc
    if charge is None:
        raise Http404("unknown or expired sandbox session")
    if request.method == "GET":
        return render(
            request, "payments/sandbox_pay.html", {"charge": charge, "token": token}
        )
    choice = CHOICES.get(request.POST.get("choice", ""))
    if choice is None:
        return render(
            request,
            "payments/sandbox_pay.html",
            {
                "charge": charge,
                "token": token,
                "error": "choose Pay, Decline or Abandon",
            },
            status=400,
        )
    services.sandbox_choose(token=token, choice=choice)
    target = charge["return_url"]
    if choice == "abandoned":
        target += "?cancelled=1"
    return HttpResponseRedirect(target, status=303)
