"""Admin of payments: the read-only payment page with its dialog actions.

Payments are read-only here: every change goes through a dialog action (a
POST) that calls one service; the services alone write status and money.
"""

from __future__ import annotations

from functools import lru_cache

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import ORDER_VAR
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from unfold.admin import checkbox
from unfold.contrib.filters.admin import BooleanRadioFilter, ChoicesDropdownFilter
from unfold.decorators import action, display
from unfold.enums import ActionVariant

from audit import log as audit
from audit import log as audit_log

from .. import selectors, services
from ..exceptions import PaymentError, ProviderTimedOut
from ..models import Payment, RefundStatus, RepairStatus
from ..states import PaymentStatus, repair_targets
from .common import (
    EVENT_KIND_COLOURS,
    PAYMENT_STATUS_COLOURS,
    BackofficeModelAdmin,
    CountedChangeList,
    DateRangeFilter,
    DeepPagePaginator,
    GatewayFilter,
    ReadOnlyAdminMixin,
    admin_actor,
    back_to,
    find,
    has_perm,
    label,
    money,
    nowrap,
    truncated,
    when,
)
from .exports import PaymentExportMixin
from .forms import (
    ManualRefundForm,
    NoteForm,
    PaymentDialogForm,
    RefundForm,
    RepairDecisionForm,
    RepairProposeForm,
    RepairRejectForm,
    ResolveReviewForm,
)
from .timeline import RefundInline, event_author, event_transition

NOTE_DIALOG = {
    "title": _("Add a note"),
    "description": _("The note is added to the payment's timeline."),
    "form_class": NoteForm,
    "form_submit_text": _("Add note"),
}
REFUND_DIALOG = {
    "title": _("Refund through the gateway"),
    "description": _("The money goes back to the payer through the provider."),
    "form_class": RefundForm,
    "form_submit_text": _("Refund"),
}
MANUAL_REFUND_DIALOG = {
    "title": _("Record a manual refund"),
    "description": _(
        "For money already returned outside the gateway (e.g. a crypto "
        "payment): nothing is sent to the provider."
    ),
    "form_class": ManualRefundForm,
    "form_submit_text": _("Record refund"),
}


@lru_cache(maxsize=64)
def status_cell(status: str, needs_review: bool, language: str | None) -> SafeString:
    """Render a list's status cell: the label, and a flag when it needs review.

    Twelve possible cells per language, so each is rendered once per process.
    """
    text = PaymentStatus(status).label if status in PaymentStatus.values else status
    badge = label(status, text, PAYMENT_STATUS_COLOURS)
    if not needs_review:
        return nowrap(badge)
    return format_html(
        '<span class="whitespace-nowrap">{} <span class="material-symbols-outlined'
        ' align-middle text-red-600 text-base leading-none" title="{}">flag'
        "</span></span>",
        badge,
        _("needs review"),
    )


def payment_summary(payment: Payment) -> dict:
    """What the top of a payment's page shows: who, how much, where, and what happened."""
    gateways = dict(selectors.gateway_choices())
    events = selectors.payment_timeline(payment_id=payment.pk)
    total = selectors.payment_event_count(payment_id=payment.pk)
    return {
        "summary": {
            "ref_id": payment.ref_id,
            "status": label(
                payment.status, payment.get_status_display(), PAYMENT_STATUS_COLOURS
            ),
            "amount": money(payment.amount, payment.currency),
            "amount_paid": money(payment.amount_paid, payment.currency),
            "amount_refunded": money(payment.amount_refunded, payment.currency),
            "refundable": money(services.refundable_amount(payment), payment.currency),
            "review": label("REVIEW", _("Needs review"), {"REVIEW": "warning"})
            if payment.needs_review
            else None,
            "review_reason": payment.review_reason,
            "failure_reason": payment.failure_reason,
            "email": payment.email,
            # The customer view: every payment of this e-mail, with its totals.
            "email_url": reverse("admin:payments_customer")
            + f"?{urlencode({'email': payment.email})}",
            "plan": payment.plan.name if payment.plan else "",
            "gateway": gateways.get(payment.payment_gateway, payment.payment_gateway),
            "gateway_ids": [
                (text, value)
                for text, value in (
                    (_("Transaction id"), payment.gateway_transaction_id),
                    (_("Session id"), payment.gateway_session_id),
                    (_("Crypto address"), payment.crypto_address),
                )
                if value
            ],
            "created": when(payment.date_created),
            "paid": when(payment.date_paid) if payment.date_paid else None,
            "expires": when(payment.expiry_datetime)
            if payment.expiry_datetime
            else None,
        },
        "timeline": [
            {
                "at": when(event.created_at),
                "kind": label(event.kind, event.get_kind_display(), EVENT_KIND_COLOURS),
                "transition": event_transition(event),
                "who": event_author(event),
                "message": event.message,
            }
            for event in events
        ],
        "timeline_hidden": total - len(events),
        "timeline_url": reverse("admin:payments_paymentevent_changelist")
        + f"?{urlencode({'q': payment.ref_id})}",
    }


def without_parameter(request: HttpRequest, name: str) -> str:
    """Return the request's address without one query parameter."""
    params = request.GET.copy()
    params.pop(name, None)
    return f"{request.path}?{params.urlencode()}" if params else request.path


# The action checkbox of a row: the widget's markup with a placeholder value.
ROW_CHECKBOX_VALUE = "__row_pk__"
ROW_CHECKBOX = checkbox.render(helpers.ACTION_CHECKBOX_NAME, ROW_CHECKBOX_VALUE)


class PaymentChangeList(CountedChangeList):
    """The payment list: unfold's filter widgets, the rows of `selectors.payment_list`.

    The filters and the search of the query string become `PaymentFilters`
    (the same function reads an export job's stored filters), and the rows
    are the selector's. The filter widgets only show and edit the values:
    their own `queryset()` is never applied, so nothing filters twice.
    Query parameters that are not the selector's filters are ignored here
    as they are by the selector.
    """

    def get_filters_params(self, params=None):
        lookup_params = super().get_filters_params(params)
        return {
            name: values
            for name, values in lookup_params.items()
            if name in selectors.PAYMENT_FILTER_PARAMETERS
        }

    def get_queryset(self, request: HttpRequest, exclude_parameters=None) -> QuerySet:
        (
            self.filter_specs,
            self.has_filters,
            remaining_lookup_params,
            _duplicates,
            self.has_active_filters,
        ) = self.get_filters(request)
        filters = selectors.payment_filters_from_query(request.GET)
        queryset = self.apply_select_related(selectors.payment_list(filters=filters))
        if self.params.get(ORDER_VAR):
            # A clicked column first; the selector's order breaks its ties.
            queryset = queryset.order_by(*self.get_ordering(request, queryset))
        self.clear_all_filters_qs = self.get_query_string(
            new_params=remaining_lookup_params, remove=self.get_filters_params()
        )
        return queryset

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if isinstance(self.result_list, QuerySet):
            # One page or "Show all": the rows without the paginator, which
            # reads only the columns shown (PaymentAdmin.get_paginator).
            self.result_list = self.result_list.only(*self.model_admin.list_fields)


@admin.register(Payment)
class PaymentAdmin(PaymentExportMixin, ReadOnlyAdminMixin, BackofficeModelAdmin):
    list_display = (
        "reference",
        "email_display",
        "plan_name",
        "amount_display",
        "gateway",
        "status_label",
        "created",
    )
    list_filter = (
        ("status", ChoicesDropdownFilter),
        GatewayFilter,
        ("needs_review", BooleanRadioFilter),
        ("date_created", DateRangeFilter),
        ("date_paid", DateRangeFilter),
    )
    list_filter_submit = True
    # unfold's changelist with the rows rendered by FastRows (payments/admin/rows.py).
    change_list_template = "admin/payments/payment/change_list.html"
    # Shown as the search box's fields; the search itself is the selector's.
    search_fields = ("ref_id", "gateway_transaction_id", "crypto_address", "email")
    search_help_text = _(
        "Whole reference, gateway transaction id or crypto address, in any case; "
        "the start of an e-mail address, or its domain (@example.com). Spaces "
        "are ignored; a search that finds one payment opens it."
    )
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = DeepPagePaginator
    list_per_page = 50
    list_select_related = ("plan",)
    # Payments are never saved from their page, so there is no "return to the
    # filtered list" to keep; this spares a URL rebuild in every row's link.
    preserve_filters = False
    # Unfold's row template asks for this on every row; when it is missing the
    # template engine's failed lookup calls dir() on the admin, on every row.
    list_sections = ()
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "ref_id",
                    "status_badge",
                    "plan",
                    "email_link",
                    "amount_display",
                    "amount_paid_display",
                    "amount_refunded_display",
                    "amount_charged_back_display",
                    "refundable_display",
                )
            },
        ),
        (_("Review"), {"fields": ("review_state", "review_reason", "failure_reason")}),
        (
            _("Gateway"),
            {
                "fields": (
                    "payment_gateway",
                    "gateway_transaction_id",
                    "gateway_session_id",
                    "payment_url",
                )
            },
        ),
        (
            _("Crypto"),
            {"fields": ("crypto_address", "crypto_amount", "crypto_currency")},
        ),
        (
            _("Dates"),
            {
                "fields": (
                    "date_created",
                    "date_updated",
                    "date_paid",
                    "paid_via",
                    "expiry_datetime",
                    "last_checked_at",
                    "next_check_at",
                    "check_attempts",
                )
            },
        ),
    )
    # Never shown: it holds provider secrets (e.g. the MPGS successIndicator).
    exclude = ("gateway_data",)
    readonly_fields = flatten_fieldsets(fieldsets)
    # The summary and the timeline open the page (unfold's public hook); the
    # fields below are the details, the refunds after them.
    change_form_before_template = "admin/payments/payment/summary.html"
    inlines = (RefundInline,)
    # One menu: six buttons squeezed the breadcrumb down to "P › P › S…".
    actions_detail = (
        {
            "title": _("Actions"),
            "icon": "bolt",
            "items": [
                "refresh_from_gateway",
                "add_note",
                "refund",
                "record_manual_refund",
                "resolve_review",
                "propose_repair",
                "confirm_repair",
                "reject_repair",
            ],
        },
    )

    def change_view(
        self, request: HttpRequest, object_id, form_url="", extra_context=None
    ):
        payment = find(Payment, object_id)
        if payment is not None:
            extra_context = {**(extra_context or {}), **payment_summary(payment)}
        return super().change_view(request, object_id, form_url, extra_context)

    # rows and search: selectors.payment_list -------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs) -> type[CountedChangeList]:
        return PaymentChangeList

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        """Search as the payment list does (`selectors.payment_search`).

        The list itself takes its search from the selector; this serves any
        other caller of the admin's search.
        """
        return selectors.payment_search(queryset=queryset, term=search_term), False

    # The columns of the list read these fields only (and the row's key).
    list_fields = (
        "ref_id",
        "email",
        "plan__name",
        "amount",
        "currency",
        "payment_gateway",
        "status",
        "needs_review",
        "date_created",
    )

    def get_paginator(self, request: HttpRequest, queryset, per_page, *args, **kwargs):
        """Page through the list's rows reading only what its columns show.

        A payment's other columns (the gateway's JSON reply among them) and
        its plan's are not read for a list page; the actions and the export
        select their own rows. tests/payments/admin/test_admin_rendering.py holds
        the list to one query for its rows.
        """
        if getattr(queryset, "model", None) is Payment:
            # Django's history page pages through LogEntry rows with this too.
            queryset = queryset.only(*self.list_fields)
        return super().get_paginator(request, queryset, per_page, *args, **kwargs)

    def _filter_parameters(self, request: HttpRequest) -> set[str]:
        """The selector's filters: the only parameters the list reads."""
        return super()._filter_parameters(request) | set(
            selectors.PAYMENT_FILTER_PARAMETERS
        )

    def changelist_view(self, request: HttpRequest, extra_context=None):
        """List the payments; open the payment at once when a search finds one.

        A filter value the list cannot use is dropped from the address with
        a message naming it, rather than failing the page.
        """
        try:
            filters = selectors.payment_filters_from_query(request.GET)
        except selectors.PaymentFilterError as exc:
            messages.error(request, _("Filter not applied: %s") % exc)
            return HttpResponseRedirect(without_parameter(request, exc.parameter))
        if request.method == "GET" and filters.search:
            found = list(
                selectors.payment_list(filters=filters).values_list("pk", flat=True)[:2]
            )
            if len(found) == 1:
                return HttpResponseRedirect(
                    reverse("admin:payments_payment_change", args=found)
                )
        return super().changelist_view(request, extra_context)

    # columns and read-only fields -------------------------------------------------
    # One line per cell: references, amounts and dates never wrap.

    @display(description=mark_safe(checkbox.render("action_toggle_all", 1)))  # noqa: S308
    def action_checkbox(self, obj: Payment):
        """unfold's row checkbox, its markup rendered once rather than per row.

        unfold renders the widget through the template engine for every row
        (about a quarter of the changelist's time); only the value differs.
        """
        return SafeString(ROW_CHECKBOX.replace(ROW_CHECKBOX_VALUE, str(int(obj.pk))))

    @display(description=_("reference"), ordering="ref_id")
    def reference(self, obj: Payment):
        return nowrap(obj.ref_id)

    @display(description=_("plan"))
    def plan_name(self, obj: Payment):
        return truncated(obj.plan.name if obj.plan else "-")

    @display(description=_("amount"), ordering="amount", formatting="price")
    def amount_display(self, obj: Payment):
        return nowrap(money(obj.amount, obj.currency))

    @display(description=_("gateway"), ordering="payment_gateway")
    def gateway(self, obj: Payment) -> str:
        return obj.payment_gateway

    @display(description=_("e-mail"), ordering="email")
    def email_display(self, obj: Payment):
        return truncated(obj.email)

    @display(description=_("created"), ordering="date_created")
    def created(self, obj: Payment):
        return when(obj.date_created)

    @display(description=_("status"), ordering="status")
    def status_label(self, obj: Payment):
        return status_cell(obj.status, obj.needs_review, get_language())

    @display(description=_("status"))
    def status_badge(self, obj: Payment):
        return label(obj.status, obj.get_status_display(), PAYMENT_STATUS_COLOURS)

    @display(description=_("review"))
    def review_state(self, obj: Payment):
        """A warning while the payment needs review (never a reassuring tick)."""
        if obj.needs_review:
            return label("REVIEW", _("Needs review"), {"REVIEW": "warning"})
        return _("Not flagged")

    @display(description=_("email"))
    def email_link(self, obj: Payment):
        """The customer's address, linked to all their payments (the customer view)."""
        url = reverse("admin:payments_customer")
        return format_html(
            '<a class="text-primary-600 underline" href="{}?{}" id="customer-link" '
            'title="{}">{}</a>',
            url,
            urlencode({"email": obj.email}),
            _("All payments of this customer"),
            obj.email,
        )

    @display(description=_("amount paid"))
    def amount_paid_display(self, obj: Payment) -> str:
        return money(obj.amount_paid, obj.currency)

    @display(description=_("amount refunded"))
    def amount_refunded_display(self, obj: Payment) -> str:
        return money(obj.amount_refunded, obj.currency)

    @display(description=_("charged back"))
    def amount_charged_back_display(self, obj: Payment) -> str:
        return money(obj.amount_charged_back, obj.currency)

    @display(description=_("refundable now"))
    def refundable_display(self, obj: Payment) -> str:
        return money(services.refundable_amount(obj), obj.currency)

    # permissions of the actions (methods, not dotted names: see stack.md §1.4) ----
    # Unfold hides an action whose check fails and answers a direct POST with 403.

    def has_refresh_permission(self, request: HttpRequest, object_id=None) -> bool:
        return has_perm(request, "payments.refresh_payment")

    def has_note_permission(self, request: HttpRequest, object_id=None) -> bool:
        return has_perm(request, "payments.note_payment")

    def has_refund_permission(self, request: HttpRequest, object_id=None) -> bool:
        return has_perm(request, "payments.refund_payment")

    def has_resolve_review_permission(
        self, request: HttpRequest, object_id=None
    ) -> bool:
        if not has_perm(request, "payments.resolve_review_payment"):
            return False
        if object_id is None:
            return True
        payment = find(Payment, object_id)
        return payment is not None and payment.needs_review

    def has_repair_permission(self, request: HttpRequest, object_id=None) -> bool:
        """Propose a repair: `repair_payment`, a repairable status, none open."""
        if not has_perm(request, "payments.repair_payment"):
            return False
        if object_id is None:
            return True
        payment = find(Payment, object_id)
        return (
            payment is not None
            and bool(repair_targets(payment.status))
            and not payment.repairs.filter(status=RepairStatus.PROPOSED).exists()
        )

    def has_decide_repair_permission(
        self, request: HttpRequest, object_id=None
    ) -> bool:
        """Confirm or reject: `repair_payment`, an open proposal by someone else."""
        if not has_perm(request, "payments.repair_payment"):
            return False
        if object_id is None:
            return True
        payment = find(Payment, object_id)
        if payment is None:
            return False
        repair = payment.repairs.filter(status=RepairStatus.PROPOSED).first()
        return repair is not None and repair.proposed_by_id != request.user.pk

    # actions: dialogs, so they run only on a POST with the form -----------------------

    @action(
        description=_("Refresh from gateway"),
        icon="sync",
        permissions=["refresh"],
        dialog={
            "title": _("Refresh from gateway"),
            "description": _("Ask the provider for this payment's current status."),
            "form_class": PaymentDialogForm,
            "form_submit_text": _("Refresh"),
        },
    )
    def refresh_from_gateway(
        self, request: HttpRequest, form: PaymentDialogForm, object_id
    ) -> HttpResponse:
        audit_log.record(
            audit_log.PAYMENT_REFRESHED, request=request, target=form.payment
        )
        try:
            applied = services.payment_refresh(
                payment=form.payment, actor=admin_actor(request), raise_on_timeout=True
            )
        except ProviderTimedOut as exc:
            messages.warning(request, _("Not refreshed: %s.") % exc)
            return self._back(request, object_id)
        except PaymentError as exc:
            messages.error(request, _("Could not ask the gateway: %s") % exc)
            return self._back(request, object_id)
        if applied is None:
            messages.error(
                request,
                _("The gateway could not be reached; the error is on the timeline."),
            )
            return self._back(request, object_id)
        status = applied.payment.get_status_display()
        if applied.changed:
            text = _("Refreshed: the payment is now %s.") % status
        else:
            text = _("Refreshed: no change, the payment is %s.") % status
        if applied.flagged:
            messages.warning(request, f"{text} {_('It was flagged for review.')}")
        elif applied.ignored:
            messages.warning(
                request, f"{text} {_('The gateway report was ignored (see timeline).')}"
            )
        else:
            messages.success(request, text)
        return self._back(request, object_id)

    @action(
        description=_("Add note"),
        icon="edit_note",
        permissions=["note"],
        dialog=NOTE_DIALOG,
    )
    def add_note(self, request: HttpRequest, form: NoteForm, object_id) -> HttpResponse:
        services.payment_add_note(
            payment_id=form.payment.pk,
            actor=admin_actor(request),
            message=form.cleaned_data["message"],
        )
        audit_log.record(
            audit_log.ADMIN_ACTION,
            request=request,
            target=form.payment,
            detail={"action": "add_note"},
        )
        messages.success(request, _("Note added."))
        return self._back(request, object_id)

    @action(
        description=_("Refund"),
        icon="undo",
        variant=ActionVariant.DANGER,
        permissions=["refund"],
        dialog=REFUND_DIALOG,
    )
    def refund(self, request: HttpRequest, form: RefundForm, object_id) -> HttpResponse:
        return self._refund(request, form, object_id, REFUND_DIALOG, manual=False)

    @action(
        description=_("Record manual refund"),
        icon="receipt_long",
        permissions=["refund"],
        dialog=MANUAL_REFUND_DIALOG,
    )
    def record_manual_refund(
        self, request: HttpRequest, form: ManualRefundForm, object_id
    ) -> HttpResponse:
        return self._refund(request, form, object_id, MANUAL_REFUND_DIALOG, manual=True)

    @action(
        description=_("Resolve review"),
        icon="task_alt",
        variant=ActionVariant.SUCCESS,
        permissions=["resolve_review"],
        dialog={
            "title": _("Resolve review"),
            "description": _("Clear the review flag; say what was checked or done."),
            "form_class": ResolveReviewForm,
            "form_submit_text": _("Resolve"),
        },
    )
    def resolve_review(
        self, request: HttpRequest, form: ResolveReviewForm, object_id
    ) -> HttpResponse:
        services.payment_resolve_review(
            payment_id=form.payment.pk,
            actor=admin_actor(request),
            message=form.cleaned_data["message"],
        )
        audit_log.record(
            audit_log.REVIEW_RESOLVED,
            request=request,
            target=form.payment,
            reason=form.cleaned_data["message"],
        )
        messages.success(request, _("Review resolved."))
        return self._back(request, object_id)

    @action(
        description=_("Propose repair"),
        icon="build",
        variant=ActionVariant.WARNING,
        permissions=["repair"],
        dialog={
            "title": _("Propose a repair"),
            "description": _(
                "For a payment the provider cannot settle (an id it no longer "
                "knows, a lost order): propose its final status. A second person "
                "holding the repair permission confirms it before anything changes."
            ),
            "form_class": RepairProposeForm,
            "form_submit_text": _("Propose"),
        },
    )
    def propose_repair(
        self, request: HttpRequest, form: RepairProposeForm, object_id
    ) -> HttpResponse:
        reason = form.cleaned_data["reason"]
        try:
            repair = services.repair_propose(
                payment_id=form.payment.pk,
                actor=admin_actor(request),
                to_status=form.cleaned_data["to_status"],
                reason=reason,
            )
        except PaymentError as exc:
            messages.error(request, _("Not proposed: %s") % exc)
            return self._back(request, object_id)
        audit.record(
            audit.REPAIR_PROPOSED,
            actor=request.user,
            request=request,
            target=repair.payment,
            reason=reason,
            detail={"from": repair.from_status, "to": repair.to_status},
        )
        messages.success(
            request,
            _("Repair to %s proposed: a second person must confirm it.")
            % repair.get_to_status_display(),
        )
        return self._back(request, object_id)

    @action(
        description=_("Confirm repair"),
        icon="done_all",
        variant=ActionVariant.SUCCESS,
        permissions=["decide_repair"],
        dialog={
            "title": _("Confirm the proposed repair"),
            "description": _(
                "The payment moves to the proposed status now, with both names "
                "on its timeline."
            ),
            "form_class": RepairDecisionForm,
            "form_submit_text": _("Confirm repair"),
        },
    )
    def confirm_repair(
        self, request: HttpRequest, form: RepairDecisionForm, object_id
    ) -> HttpResponse:
        return self._decide_repair(request, form, object_id, confirm=True)

    @action(
        description=_("Reject repair"),
        icon="block",
        variant=ActionVariant.DANGER,
        permissions=["decide_repair"],
        dialog={
            "title": _("Reject the proposed repair"),
            "description": _("The payment stays as it is."),
            "form_class": RepairRejectForm,
            "form_submit_text": _("Reject repair"),
        },
    )
    def reject_repair(
        self, request: HttpRequest, form: RepairRejectForm, object_id
    ) -> HttpResponse:
        return self._decide_repair(request, form, object_id, confirm=False)

    def customer_view(self, request: HttpRequest) -> HttpResponse:
        """One customer's payments and totals (`selectors.customer_summary`)."""
        if not has_perm(request, "payments.view_payment"):
            raise PermissionDenied
        email = selectors.customer_email(request.GET.get("email", ""))
        summary = selectors.customer_summary(email, page=request.GET.get("page", 1))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Customer %s") % email if email else _("Customer"),
            "email": email,
            "summary": summary,
            "totals": [
                {
                    "currency": t.currency,
                    "payments": t.payments,
                    "paid": money(t.paid, t.currency),
                    "refunded": money(t.refunded, t.currency),
                    "charged_back": money(t.charged_back, t.currency),
                    "open_reviews": t.open_reviews,
                }
                for t in summary.totals
            ],
            "rows": [
                {
                    "url": reverse("admin:payments_payment_change", args=[p.pk]),
                    "ref_id": p.ref_id,
                    "created": when(p.date_created),
                    "amount": money(p.amount, p.currency),
                    "gateway": p.payment_gateway,
                    "status": status_cell(p.status, p.needs_review, get_language()),
                    "paid": money(p.amount_paid, p.currency),
                    "refunded": money(p.amount_refunded, p.currency),
                    "charged_back": money(p.amount_charged_back, p.currency),
                }
                for p in summary.page
            ],
            "page_query": urlencode({"email": email}),
        }
        return render(request, "admin/payments/customer.html", context)

    def get_urls(self):
        return [
            path(
                "customer/",
                self.admin_site.admin_view(self.customer_view),
                name="payments_customer",
            ),
            *super().get_urls(),
        ]

    # helpers ---------------------------------------------------------------------------

    def _decide_repair(
        self, request: HttpRequest, form: RepairDecisionForm, object_id, *, confirm
    ) -> HttpResponse:
        decide = services.repair_confirm if confirm else services.repair_reject
        reason = form.cleaned_data["reason"]
        try:
            repair = decide(
                repair_id=form.repair.pk, actor=admin_actor(request), reason=reason
            )
        except PaymentError as exc:
            messages.error(request, _("Not done: %s") % exc)
            return self._back(request, object_id)
        audit.record(
            audit.REPAIR_CONFIRMED if confirm else audit.REPAIR_REJECTED,
            actor=request.user,
            request=request,
            target=repair.payment,
            reason=reason or repair.reason,
            detail={"from": repair.from_status, "to": repair.to_status},
        )
        if confirm:
            messages.success(
                request,
                _("Repaired: the payment is now %s.")
                % repair.payment.get_status_display(),
            )
        else:
            messages.success(request, _("Repair rejected: the payment is unchanged."))
        return self._back(request, object_id)

    def _refund(
        self, request: HttpRequest, form: RefundForm, object_id, dialog, *, manual: bool
    ) -> HttpResponse:
        payment = form.payment
        try:
            refund = services.refund_request(
                payment_id=payment.pk,
                amount=form.cleaned_data["amount"],
                actor=admin_actor(request),
                reason=form.cleaned_data["reason"],
                manual=manual,
                raise_on_timeout=True,
            )
        except ProviderTimedOut as exc:
            # The refund row was written (PENDING) and is looked up before
            # any resend: the dialog must not invite a second one.
            messages.warning(
                request,
                _("The refund of %(amount)s is pending: %(reason)s.")
                % {
                    "amount": money(exc.refund.amount, exc.refund.currency),
                    "reason": exc,
                },
            )
            return self._back(request, object_id)
        except PaymentError as exc:
            # Nothing was written: show the reason in the dialog, kept open.
            form.add_error("amount", str(exc))
            return render(
                request,
                "unfold/helpers/dialog.html",
                {
                    "dialog": dialog,
                    "form": form,
                    "form_submit_text": dialog.get("form_submit_text", ""),
                },
            )
        audit.record(
            audit.REFUND_REQUESTED,
            actor=request.user,
            request=request,
            target=refund,
            reason=refund.reason,
            detail={
                "amount": str(refund.amount),
                "currency": refund.currency,
                "manual": manual,
                "awaiting_approval": refund.status == RefundStatus.AWAITING_APPROVAL,
            },
        )
        amount = money(refund.amount, refund.currency)
        if refund.status == RefundStatus.AWAITING_APPROVAL:
            messages.warning(
                request,
                _(
                    "The refund of %s awaits approval: a second person with the "
                    "approval permission must approve it before anything is sent."
                )
                % amount,
            )
        elif refund.status == RefundStatus.SUCCEEDED:
            messages.success(request, _("Refunded %s.") % amount)
        elif refund.status == RefundStatus.MANUAL:
            messages.success(request, _("Recorded a manual refund of %s.") % amount)
        elif refund.status == RefundStatus.FAILED:
            messages.error(
                request,
                _("The gateway refused the refund of %(amount)s: %(reason)s")
                % {"amount": amount, "reason": refund.failure_reason or _("no reason")},
            )
        else:
            messages.warning(
                request,
                _(
                    "The refund of %s is pending: the gateway has not confirmed it "
                    "yet; it will be checked again."
                )
                % amount,
            )
        return self._back(request, object_id)

    def _back(self, request: HttpRequest, object_id) -> HttpResponse:
        return back_to(
            request, reverse("admin:payments_payment_change", args=[object_id])
        )
