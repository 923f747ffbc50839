"""Callbacks named in the UNFOLD settings."""

from django.conf import settings
from django.urls import reverse
from unfold.dataclasses import SearchResult

from payments import selectors


def environment_callback(request) -> list[str]:
    """Show which environment the admin is looking at (TEST MODE first)."""
    if settings.DEMO_PROVIDERS_URL:
        return ["TEST MODE · simulated providers", "danger"]
    if selectors.test_mode():
        return ["TEST MODE", "danger"]
    if settings.DEBUG:
        return ["Development", "warning"]
    return ["Production", "danger"]


def environment_title_prefix(request) -> str:
    """Prefix page titles with [TEST MODE] while the sandbox is offered."""
    simulated = bool(settings.DEMO_PROVIDERS_URL)
    return "[TEST MODE]" if simulated or selectors.test_mode() else ""


# Payments the Ctrl-K command palette lists for one search.
COMMAND_SEARCH_PAYMENTS = 10


def command_search(request, search_term: str) -> list[SearchResult]:
    """Find payments for unfold's command palette (Ctrl-K), as the list does.

    The payment list's search rules (`selectors.payment_search`: reference or
    gateway id in any case, e-mail start or domain), newest first, for users
    who may view payments; unfold caches the answer per user and term.
    """
    if not request.user.has_perm("payments.view_payment"):
        return []
    filters = selectors.PaymentFilters(search=search_term)
    found = (
        selectors.payment_list(filters=filters)
        .only("ref_id", "email", "amount", "currency", "status", "date_created")
        .order_by(*selectors.PAYMENT_LIST_ORDERING)[:COMMAND_SEARCH_PAYMENTS]
    )
    return [
        SearchResult(
            title=payment.ref_id,
            description=" · ".join(
                (
                    payment.email,
                    selectors.money_text(payment.amount, payment.currency),
                    payment.get_status_display(),
                )
            ),
            link=reverse("admin:payments_payment_change", args=[payment.pk]),
            icon="payments",
        )
        for payment in found
    ]
