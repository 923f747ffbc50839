"""Forms of the payment admin's dialog actions."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.http import Http404
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.forms import BaseDialogForm
from unfold.widgets import UnfoldAdminDecimalFieldWidget, UnfoldAdminTextareaWidget

from ..models import Payment, PaymentRepair, Refund, RefundStatus, RepairStatus
from ..services import refundable_amount
from ..states import repair_targets
from .common import find, money


def _textarea(rows: int = 4) -> UnfoldAdminTextareaWidget:
    return UnfoldAdminTextareaWidget(attrs={"rows": rows})


class PaymentDialogForm(BaseDialogForm):
    """A dialog about one payment, which it loads (404 for an unknown id)."""

    def __init__(self, request, object_id=None, *args, **kwargs):
        super().__init__(request, object_id, *args, **kwargs)
        self.payment = find(Payment, object_id)
        if self.payment is None:
            raise Http404("no such payment")


class NoteForm(PaymentDialogForm):
    message = forms.CharField(label=_("Note"), max_length=2000, widget=_textarea())


class RefundForm(PaymentDialogForm):
    amount = forms.DecimalField(
        label=_("Amount"),
        max_digits=16,
        decimal_places=3,
        min_value=Decimal("0.001"),
        widget=UnfoldAdminDecimalFieldWidget,
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=1000,
        widget=_textarea(3),
        help_text=_("Kept on the payment's timeline."),
    )

    def __init__(self, request, object_id=None, *args, **kwargs):
        super().__init__(request, object_id, *args, **kwargs)
        payment = self.payment
        self.refundable = refundable_amount(payment)
        self.fields["amount"].help_text = format_html(
            "Refundable now: <strong>{}</strong> (paid {}, refunded {}).",
            money(self.refundable, payment.currency),
            money(payment.amount_paid, payment.currency),
            money(payment.amount_refunded, payment.currency),
        )
        self.fields["amount"].widget.attrs["placeholder"] = str(self.refundable)


class ManualRefundForm(RefundForm):
    def __init__(self, request, object_id=None, *args, **kwargs):
        super().__init__(request, object_id, *args, **kwargs)
        self.fields["reason"].label = _("How the money was returned")
        self.fields["reason"].help_text = _(
            "E.g. the crypto transaction id or the bank transfer reference."
        )


class ResolveReviewForm(PaymentDialogForm):
    message = forms.CharField(
        label=_("Resolution"), max_length=2000, widget=_textarea()
    )

    def __init__(self, request, object_id=None, *args, **kwargs):
        super().__init__(request, object_id, *args, **kwargs)
        if self.payment.review_reason:
            self.fields["message"].help_text = format_html(
                "Flagged because: {}", self.payment.review_reason
            )


class RefundDecisionForm(BaseDialogForm):
    """Approve or reject a refund awaiting approval, with a reason."""

    reason = forms.CharField(
        label=_("Reason"),
        max_length=1000,
        widget=_textarea(3),
        help_text=_("Kept on the payment's timeline and in the audit log."),
    )

    def __init__(self, request, object_id=None, *args, **kwargs):
        super().__init__(request, object_id, *args, **kwargs)
        self.refund = find(Refund, object_id)
        if self.refund is None:
            raise Http404("no such refund")
        refund = self.refund
        if refund.status == RefundStatus.AWAITING_APPROVAL:
            self.fields["reason"].help_text = format_html(
                "{} of {} requested by {}: {}",
                "Manual refund" if refund.manual else "Refund",
                money(refund.amount, refund.currency),
                refund.requested_by.get_username() if refund.requested_by else "-",
                refund.reason or "-",
            )


class RepairProposeForm(PaymentDialogForm):
    """Propose a final status for a payment the provider cannot settle."""

    to_status = forms.ChoiceField(label=_("Repair to"), choices=())
    reason = forms.CharField(
        label=_("Reason"),
        max_length=2000,
        widget=_textarea(3),
        help_text=_(
            "Why the provider cannot settle it and how the outcome was checked "
            "(e.g. the bank statement line). A second person confirms it."
        ),
    )

    def __init__(self, request, object_id=None, *args, **kwargs):
        super().__init__(request, object_id, *args, **kwargs)
        targets = sorted(repair_targets(self.payment.status))
        labels = dict(Payment.Status.choices)
        self.fields["to_status"].choices = [(t, labels[t]) for t in targets]


class RepairDecisionForm(PaymentDialogForm):
    """Confirm or reject the open repair proposal of a payment."""

    reason = forms.CharField(
        label=_("Reason"), max_length=2000, widget=_textarea(3), required=False
    )

    def __init__(self, request, object_id=None, *args, **kwargs):
        super().__init__(request, object_id, *args, **kwargs)
        self.repair = self.payment.repairs.filter(status=RepairStatus.PROPOSED).first()
        if self.repair is None:
            raise Http404("no open repair proposal")
        self.fields["reason"].help_text = proposal_text(self.repair)


class RepairRejectForm(RepairDecisionForm):
    def __init__(self, request, object_id=None, *args, **kwargs):
        super().__init__(request, object_id, *args, **kwargs)
        self.fields["reason"].required = True


def proposal_text(repair: PaymentRepair):
    """Describe an open repair proposal: who proposed what, and why."""
    return format_html(
        "Proposed by <strong>{}</strong>: {} → <strong>{}</strong>. {}",
        repair.proposed_by.get_username(),
        repair.get_from_status_display(),
        repair.get_to_status_display(),
        repair.reason,
    )
