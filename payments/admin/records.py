"""Read-only admins of what the services record: events, refunds, deliveries, runs."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.http import Http404, HttpRequest, HttpResponse
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from unfold.contrib.filters.admin import BooleanRadioFilter, ChoicesDropdownFilter
from unfold.decorators import action, display
from unfold.forms import BaseDialogForm
from unfold.paginator import InfinitePaginator

from .. import services, tasks
from ..exceptions import PaymentError
from ..models import (
    DeliveryOutcome,
    IdempotencyRecord,
    PaymentEvent,
    ReconciliationRun,
    Refund,
    WebhookDelivery,
)
from ..roles import RECONCILE_PERMISSION
from .common import (
    DELIVERY_OUTCOME_COLOURS,
    EVENT_KIND_COLOURS,
    REFUND_STATUS_COLOURS,
    BackofficeModelAdmin,
    DateRangeFilter,
    DeliveryGatewayFilter,
    ReadOnlyAdminMixin,
    back_to,
    find,
    has_perm,
    label,
    money,
    preformatted,
    pretty_json,
)
from .timeline import event_author, event_transition


class RecordAdmin(ReadOnlyAdminMixin, BackofficeModelAdmin):
    """A large, append-mostly table: no counts, no facets."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = InfinitePaginator
    list_per_page = 50
    list_filter_submit = True


@admin.register(PaymentEvent)
class PaymentEventAdmin(RecordAdmin):
    list_display = (
        "created_at",
        "payment",
        "kind_label",
        "transition",
        "who",
        "summary",
    )
    list_filter = (("kind", ChoicesDropdownFilter), ("created_at", DateRangeFilter))
    list_select_related = ("payment", "actor")
    search_fields = ("payment__ref_id__exact",)
    search_help_text = _("Exact payment reference.")
    # Newest first by primary key: created_at alone has no index.
    ordering = ("-id",)
    fields = (
        "payment",
        "kind",
        "from_status",
        "to_status",
        "actor",
        "source",
        "message",
        "data_display",
        "created_at",
    )
    readonly_fields = fields

    @display(description=_("kind"), ordering="kind", label=EVENT_KIND_COLOURS)
    def kind_label(self, obj: PaymentEvent):
        return obj.kind, obj.get_kind_display()

    @display(description=_("status"))
    def transition(self, obj: PaymentEvent) -> str:
        return event_transition(obj)

    @display(description=_("by"))
    def who(self, obj: PaymentEvent) -> str:
        return event_author(obj)

    @display(description=_("message"))
    def summary(self, obj: PaymentEvent) -> str:
        return truncatechars(obj.message, 120)

    @display(description=_("data"))
    def data_display(self, obj: PaymentEvent):
        return pretty_json(obj.data)


@admin.register(Refund)
class RefundAdmin(RecordAdmin):
    list_display = (
        "idempotency_id",
        "payment",
        "amount_display",
        "status_label",
        "source",
        "requested_by",
        "date_created",
        "date_completed",
    )
    list_filter = (
        ("status", ChoicesDropdownFilter),
        ("source", ChoicesDropdownFilter),
        ("date_created", DateRangeFilter),
    )
    list_select_related = ("payment", "requested_by")
    search_fields = (
        "idempotency_id__exact",
        "gateway_refund_id__exact",
        "payment__ref_id__exact",
    )
    search_help_text = _("Exact refund id, gateway refund id or payment reference.")
    fields = (
        "payment",
        "amount_display",
        "status_badge",
        "source",
        "idempotency_id",
        "gateway_refund_id",
        "reason",
        "failure_reason",
        "requested_by",
        "attempts",
        "date_created",
        "date_updated",
        "date_completed",
    )
    readonly_fields = fields

    @display(description=_("amount"), ordering="amount", formatting="price")
    def amount_display(self, obj: Refund) -> str:
        return money(obj.amount, obj.currency)

    @display(description=_("status"), ordering="status", label=REFUND_STATUS_COLOURS)
    def status_label(self, obj: Refund):
        return obj.status, obj.get_status_display()

    @display(description=_("status"))
    def status_badge(self, obj: Refund):
        return label(obj.status, obj.get_status_display(), REFUND_STATUS_COLOURS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(RecordAdmin):
    list_display = (
        "__str__",
        "gateway",
        "outcome_label",
        "signature_valid",
        "provider_event_id",
        "payment",
        "received_at",
        "processed_at",
    )
    list_filter = (
        DeliveryGatewayFilter,
        ("outcome", ChoicesDropdownFilter),
        ("signature_valid", BooleanRadioFilter),
        ("received_at", DateRangeFilter),
    )
    list_select_related = ("payment",)
    search_fields = ("provider_event_id__exact", "payment__ref_id__exact")
    search_help_text = _("Exact provider event id or payment reference.")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "gateway",
                    "outcome_badge",
                    "error",
                    "signature_valid",
                    "provider_event_id",
                    "payment",
                    "remote_addr",
                    "received_at",
                    "processed_at",
                )
            },
        ),
        # Headers were redacted when stored (signatures, authorization, cookies).
        (_("Request"), {"fields": ("headers_display", "body_display")}),
    )
    readonly_fields = flatten_fieldsets(fieldsets)
    actions_detail = ("reprocess",)

    @display(
        description=_("outcome"), ordering="outcome", label=DELIVERY_OUTCOME_COLOURS
    )
    def outcome_label(self, obj: WebhookDelivery):
        return obj.outcome, obj.get_outcome_display()

    @display(description=_("outcome"))
    def outcome_badge(self, obj: WebhookDelivery):
        return label(obj.outcome, obj.get_outcome_display(), DELIVERY_OUTCOME_COLOURS)

    @display(description=_("headers"))
    def headers_display(self, obj: WebhookDelivery):
        return pretty_json(obj.headers)

    @display(description=_("body"))
    def body_display(self, obj: WebhookDelivery):
        return preformatted(obj.body)

    def has_reprocess_permission(self, request: HttpRequest, object_id=None) -> bool:
        if not has_perm(request, "payments.reprocess_webhookdelivery"):
            return False
        if object_id is None:
            return True
        delivery = find(WebhookDelivery, object_id)
        return delivery is not None and bool(delivery.signature_valid)

    @action(
        description=_("Re-process"),
        icon="replay",
        permissions=["reprocess"],
        dialog={
            "title": _("Re-process this delivery"),
            "description": _(
                "Apply the stored, verified notification to its payment again. "
                "An event already applied is recorded as a duplicate."
            ),
            "form_submit_text": _("Re-process"),
        },
    )
    def reprocess(
        self, request: HttpRequest, form: BaseDialogForm, object_id
    ) -> HttpResponse:
        delivery = find(WebhookDelivery, object_id)
        if delivery is None:
            raise Http404("no such delivery")
        try:
            outcome = services.webhook_reprocess(delivery_id=delivery.pk)
        except PaymentError as exc:
            messages.error(request, _("Could not re-process: %s") % exc)
        else:
            result = outcome.delivery
            text = _("Re-processed: %s.") % result.get_outcome_display()
            if result.error:
                text = f"{text} {result.error}"
            if result.outcome in (DeliveryOutcome.APPLIED, DeliveryOutcome.DUPLICATE):
                messages.success(request, text)
            else:
                messages.warning(request, text)
        url = reverse("admin:payments_webhookdelivery_change", args=[object_id])
        return back_to(request, url)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(RecordAdmin):
    actions_list = ("run_now",)
    list_display = (
        "started_at",
        "trigger",
        "checked",
        "changed",
        "errors",
        "expired",
        "duration_ms",
        "finished_at",
    )
    list_filter = (("started_at", DateRangeFilter),)
    fields = (
        "started_at",
        "finished_at",
        "trigger",
        "checked",
        "changed",
        "errors",
        "expired",
        "duration_ms",
        "message",
    )
    readonly_fields = fields

    def has_run_now_permission(self, request: HttpRequest, object_id=None) -> bool:
        return has_perm(request, RECONCILE_PERMISSION)

    @action(
        description=_("Run now"),
        icon="play_arrow",
        permissions=["run_now"],
        dialog={
            "title": _("Reconcile now"),
            "description": _(
                "Queue one reconciliation cycle: due pending payments are asked "
                "about now, overdue ones expired. The run appears in this list."
            ),
            "form_submit_text": _("Run now"),
        },
    )
    def run_now(self, request: HttpRequest, form: BaseDialogForm) -> HttpResponse:
        run = tasks.enqueue_reconciliation(trigger=f"admin:{request.user.username}")
        messages.success(request, _("Reconciliation run #%s queued.") % run.pk)
        return back_to(request, reverse("admin:payments_reconciliationrun_changelist"))


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(RecordAdmin):
    list_display = ("key", "payment", "response_status", "created_at")
    list_select_related = ("payment",)
    list_filter = (("created_at", DateRangeFilter),)
    search_fields = ("key__exact",)
    search_help_text = _("Exact Idempotency-Key.")
    ordering = ("-id",)
    fields = (
        "key",
        "fingerprint",
        "payment",
        "response_status",
        "response_display",
        "created_at",
    )
    readonly_fields = fields

    @display(description=_("response body"))
    def response_display(self, obj: IdempotencyRecord):
        # Stored as the exact text sent (for byte-identical replays): parse it
        # once, or it would be shown as one JSON string inside another.
        try:
            return pretty_json(json.loads(obj.response_body))
        except ValueError:
            return preformatted(obj.response_body)
