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

from audit import log as audit
from audit import log as audit_log

from .. import selectors, services, tasks
from ..exceptions import PaymentError
from ..models import (
    DeliveryOutcome,
    IdempotencyRecord,
    PaymentEvent,
    ReconciliationRun,
    Refund,
    RefundStatus,
    WebhookDelivery,
)
from ..roles import RECONCILE_PERMISSION
from .common import (
    DELIVERY_OUTCOME_COLOURS,
    EVENT_KIND_COLOURS,
    REFUND_STATUS_COLOURS,
    BackofficeModelAdmin,
    CountedChangeList,
    CountedPaginator,
    DateRangeFilter,
    DeliveryGatewayFilter,
    ReadOnlyAdminMixin,
    admin_actor,
    back_to,
    find,
    has_perm,
    label,
    money,
    nowrap,
    preformatted,
    pretty_json,
    truncated,
    when,
)
from .forms import RefundDecisionForm
from .timeline import event_author, event_transition


class RecordAdmin(ReadOnlyAdminMixin, BackofficeModelAdmin):
    """A large, append-mostly table: a bounded count, no facets."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CountedPaginator
    list_per_page = 50
    list_filter_submit = True

    def get_changelist(self, request: HttpRequest, **kwargs):
        return CountedChangeList


@admin.register(PaymentEvent)
class PaymentEventAdmin(RecordAdmin):
    list_display = (
        "created",
        "payment_ref",
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

    @display(description=_("time"), ordering="id")
    def created(self, obj: PaymentEvent):
        return when(obj.created_at)

    @display(description=_("payment"), ordering="payment__ref_id")
    def payment_ref(self, obj: PaymentEvent):
        return truncated(obj.payment.ref_id)

    @display(description=_("kind"), ordering="kind")
    def kind_label(self, obj: PaymentEvent):
        return label(obj.kind, obj.get_kind_display(), EVENT_KIND_COLOURS)

    @display(description=_("status"))
    def transition(self, obj: PaymentEvent):
        return nowrap(event_transition(obj))

    @display(description=_("by"))
    def who(self, obj: PaymentEvent):
        return truncated(event_author(obj), "max-w-40")

    @display(description=_("message"))
    def summary(self, obj: PaymentEvent):
        return truncated(truncatechars(obj.message, 300), "payments-clip-wide")

    @display(description=_("data"))
    def data_display(self, obj: PaymentEvent):
        return pretty_json(obj.data)


APPROVE_PERMISSION = "payments.approve_refund"


@admin.register(Refund)
class RefundAdmin(RecordAdmin):
    list_display = (
        "refund_id",
        "payment_ref",
        "amount_display",
        "status_label",
        "source_display",
        "requester",
        "created",
        "completed",
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
    # Refunds awaiting approval, above the list, for those who may approve.
    list_before_template = "admin/payments/refund/awaiting_approval.html"
    fields = (
        "payment",
        "amount_display",
        "status_badge",
        "source",
        "manual",
        "idempotency_id",
        "gateway_refund_id",
        "reason",
        "failure_reason",
        "requested_by",
        "decided_by",
        "decided_at",
        "decision_reason",
        "attempts",
        "date_created",
        "date_updated",
        "date_completed",
    )
    readonly_fields = fields
    actions_detail = ("approve", "reject")

    def changelist_view(self, request: HttpRequest, extra_context=None):
        """List refunds; tell an approver how many wait for a decision."""
        extra = dict(extra_context or {})
        if has_perm(request, APPROVE_PERMISSION):
            count, _recent = selectors.refunds_awaiting_approval(limit=0)
            extra["awaiting_approval"] = {
                "count": count,
                "url": "?status__exact=" + RefundStatus.AWAITING_APPROVAL,
            }
        return super().changelist_view(request, extra)

    @display(description=_("refund"), ordering="idempotency_id")
    def refund_id(self, obj: Refund):
        return truncated(obj.idempotency_id, "payments-clip-narrow")

    @display(description=_("payment"), ordering="payment__ref_id")
    def payment_ref(self, obj: Refund):
        return truncated(obj.payment.ref_id)

    @display(description=_("amount"), ordering="amount", formatting="price")
    def amount_display(self, obj: Refund):
        return nowrap(money(obj.amount, obj.currency))

    @display(description=_("status"), ordering="status")
    def status_label(self, obj: Refund):
        return label(obj.status, obj.get_status_display(), REFUND_STATUS_COLOURS)

    @display(description=_("source"), ordering="source")
    def source_display(self, obj: Refund):
        return truncated(obj.get_source_display(), "max-w-40")

    @display(description=_("by"))
    def requester(self, obj: Refund):
        return truncated(obj.requested_by.get_username() if obj.requested_by else "-")

    @display(description=_("created"), ordering="date_created")
    def created(self, obj: Refund):
        return when(obj.date_created)

    @display(description=_("completed"), ordering="date_completed")
    def completed(self, obj: Refund):
        return when(obj.date_completed)

    @display(description=_("status"))
    def status_badge(self, obj: Refund):
        return label(obj.status, obj.get_status_display(), REFUND_STATUS_COLOURS)

    # four eyes: approve or reject, never one's own request -------------------------

    def _may_decide(self, request: HttpRequest, object_id) -> bool:
        if not has_perm(request, APPROVE_PERMISSION):
            return False
        if object_id is None:
            return True
        refund = find(Refund, object_id)
        return refund is not None and services.may_decide_refund(request.user, refund)

    def has_approve_permission(self, request: HttpRequest, object_id=None) -> bool:
        return self._may_decide(request, object_id)

    def has_reject_permission(self, request: HttpRequest, object_id=None) -> bool:
        return self._may_decide(request, object_id)

    @action(
        description=_("Approve"),
        icon="verified",
        permissions=["approve"],
        dialog={
            "title": _("Approve this refund"),
            "description": _(
                "The refund is sent to the provider (or recorded, for a manual "
                "refund) once you approve it."
            ),
            "form_class": RefundDecisionForm,
            "form_submit_text": _("Approve and send"),
        },
    )
    def approve(
        self, request: HttpRequest, form: RefundDecisionForm, object_id
    ) -> HttpResponse:
        return self._decide(request, form, object_id, approve=True)

    @action(
        description=_("Reject"),
        icon="block",
        permissions=["reject"],
        dialog={
            "title": _("Reject this refund"),
            "description": _("Nothing is sent; the requester sees your reason."),
            "form_class": RefundDecisionForm,
            "form_submit_text": _("Reject"),
        },
    )
    def reject(
        self, request: HttpRequest, form: RefundDecisionForm, object_id
    ) -> HttpResponse:
        return self._decide(request, form, object_id, approve=False)

    def _decide(
        self, request: HttpRequest, form: RefundDecisionForm, object_id, *, approve
    ) -> HttpResponse:
        decide = services.refund_approve if approve else services.refund_reject
        reason = form.cleaned_data["reason"]
        try:
            refund = decide(
                refund_id=form.refund.pk, actor=admin_actor(request), reason=reason
            )
        except PaymentError as exc:
            messages.error(request, _("Not done: %s") % exc)
        else:
            audit.record(
                audit.REFUND_APPROVED if approve else audit.REFUND_REJECTED,
                actor=request.user,
                request=request,
                target=refund,
                reason=reason,
                detail={"amount": str(refund.amount), "currency": refund.currency},
            )
            amount = money(refund.amount, refund.currency)
            if not approve:
                messages.success(request, _("Rejected the refund of %s.") % amount)
            elif refund.status in (RefundStatus.SUCCEEDED, RefundStatus.MANUAL):
                messages.success(
                    request, _("Approved: the refund of %s is done.") % amount
                )
            elif refund.status == RefundStatus.FAILED:
                messages.error(
                    request,
                    _("Approved, but the gateway refused the refund of %(a)s: %(r)s")
                    % {"a": amount, "r": refund.failure_reason or _("no reason")},
                )
            else:
                messages.warning(
                    request,
                    _("Approved: the refund of %s is pending at the gateway.") % amount,
                )
        url = reverse("admin:payments_refund_change", args=[object_id])
        return back_to(request, url)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(RecordAdmin):
    list_display = (
        "delivery",
        "gateway",
        "outcome_label",
        "signature_valid",
        "event_id",
        "payment_ref",
        "received",
        "processed",
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
                    "secret_used",
                    "provider_event_id",
                    "payment",
                    "remote_addr",
                    "received_at",
                    "processed_at",
                )
            },
        ),
        # Headers were redacted when stored (signatures, authorization, cookies).
        (
            _("Request"),
            {"fields": ("headers_display", "body_kept", "body_display")},
        ),
    )
    readonly_fields = flatten_fieldsets(fieldsets)
    actions_detail = ("reprocess",)

    @display(description=_("delivery"), ordering="id")
    def delivery(self, obj: WebhookDelivery):
        return nowrap(str(obj))

    @display(description=_("outcome"), ordering="outcome")
    def outcome_label(self, obj: WebhookDelivery):
        return label(obj.outcome, obj.get_outcome_display(), DELIVERY_OUTCOME_COLOURS)

    @display(description=_("provider event id"))
    def event_id(self, obj: WebhookDelivery):
        return truncated(obj.provider_event_id or "-")

    @display(description=_("payment"))
    def payment_ref(self, obj: WebhookDelivery):
        return nowrap(obj.payment.ref_id if obj.payment_id else "-")

    @display(description=_("received"), ordering="received_at")
    def received(self, obj: WebhookDelivery):
        return when(obj.received_at)

    @display(description=_("processed"), ordering="processed_at")
    def processed(self, obj: WebhookDelivery):
        return when(obj.processed_at)

    @display(description=_("outcome"))
    def outcome_badge(self, obj: WebhookDelivery):
        return label(obj.outcome, obj.get_outcome_display(), DELIVERY_OUTCOME_COLOURS)

    @display(description=_("headers"))
    def headers_display(self, obj: WebhookDelivery):
        return pretty_json(obj.headers)

    @display(description=_("body kept"))
    def body_kept(self, obj: WebhookDelivery):
        if not obj.body_truncated:
            return _("all of it")
        kept = min(len(obj.body.encode()), obj.body_length)
        return _(
            "only the start (failed verification): %(kept)s of %(length)s bytes; "
            "SHA-256 of all of it %(sha)s"
        ) % {"kept": kept, "length": obj.body_length, "sha": obj.body_sha256}

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
        audit_log.record(
            audit_log.ADMIN_ACTION,
            request=request,
            target=delivery,
            detail={"action": "reprocess"},
        )
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
        "started",
        "trigger_display",
        "checked",
        "changed",
        "errors",
        "expired",
        "duration_ms",
        "finished",
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

    @display(description=_("started"), ordering="started_at")
    def started(self, obj: ReconciliationRun):
        return when(obj.started_at)

    @display(description=_("finished"), ordering="finished_at")
    def finished(self, obj: ReconciliationRun):
        return when(obj.finished_at)

    @display(description=_("trigger"), ordering="trigger")
    def trigger_display(self, obj: ReconciliationRun):
        return truncated(obj.trigger)

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
        audit_log.record(
            audit_log.ADMIN_ACTION,
            request=request,
            target=run,
            detail={"action": "run_now"},
        )
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
