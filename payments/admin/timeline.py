"""A payment's refunds on its page, and how its timeline's events read."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from unfold.admin import TabularInline
from unfold.decorators import display

from ..models import PaymentEvent, Refund
from ..states import PaymentStatus
from .common import (
    REFUND_STATUS_COLOURS,
    ReadOnlyAdminMixin,
    label,
    money,
)


class RefundInline(ReadOnlyAdminMixin, TabularInline):
    model = Refund
    # The row title is the refund id, linked to the refund's page.
    fields = (
        "amount_display",
        "status_label",
        "source",
        "requested_by",
        "decided_by",
        "reason",
        "failure_reason",
        "date_created",
        "date_completed",
    )
    readonly_fields = fields
    ordering = ("date_created", "id")
    extra = 0
    show_change_link = True

    def get_queryset(self, request: HttpRequest):
        return (
            super().get_queryset(request).select_related("requested_by", "decided_by")
        )

    @display(description=_("amount"))
    def amount_display(self, obj: Refund) -> str:
        return money(obj.amount, obj.currency)

    @display(description=_("status"))
    def status_label(self, obj: Refund):
        return label(obj.status, obj.get_status_display(), REFUND_STATUS_COLOURS)


def status_text(status: str) -> str:
    """Return a status's label ("Partially refunded"), or the value if unknown."""
    if status in PaymentStatus.values:
        return str(PaymentStatus(status).label)
    return status or "?"


def event_transition(event: PaymentEvent) -> str:
    """Show a status change as "From → To", in the statuses' labels."""
    if event.from_status or event.to_status:
        return f"{status_text(event.from_status)} → {status_text(event.to_status)}"
    return ""


def event_author(event: PaymentEvent) -> str:
    """Name the staff user behind an event, else its system source."""
    if event.actor_id:
        return f"{event.actor.get_username()} ({event.source})"
    return event.source
