"""A payment's timeline and refunds, shown read-only on the payment page."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from unfold.admin import TabularInline
from unfold.decorators import display

from ..models import PaymentEvent, Refund
from .common import (
    EVENT_KIND_COLOURS,
    REFUND_STATUS_COLOURS,
    ReadOnlyAdminMixin,
    label,
    money,
)


class PaymentEventInline(ReadOnlyAdminMixin, TabularInline):
    model = PaymentEvent
    verbose_name = _("timeline event")
    verbose_name_plural = _("timeline")
    fields = ("created_at", "kind_label", "transition", "who", "message")
    readonly_fields = fields
    ordering = ("created_at", "id")
    extra = 0
    per_page = 100
    show_title = False  # the title would repeat the row as "<payment id> <kind>"

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("actor")

    @display(description=_("kind"))
    def kind_label(self, obj: PaymentEvent):
        return label(obj.kind, obj.get_kind_display(), EVENT_KIND_COLOURS)

    @display(description=_("status"))
    def transition(self, obj: PaymentEvent) -> str:
        return event_transition(obj)

    @display(description=_("by"))
    def who(self, obj: PaymentEvent) -> str:
        return event_author(obj)


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


def event_transition(event: PaymentEvent) -> str:
    """Show a status change as "FROM → TO"."""
    if event.from_status or event.to_status:
        return f"{event.from_status or '?'} → {event.to_status or '?'}"
    return ""


def event_author(event: PaymentEvent) -> str:
    """Name the staff user behind an event, else its system source."""
    if event.actor_id:
        return f"{event.actor.get_username()} ({event.source})"
    return event.source
