"""Forms of the payment admin's dialog actions."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.http import Http404
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.forms import BaseDialogForm
from unfold.widgets import UnfoldAdminDecimalFieldWidget, UnfoldAdminTextareaWidget

from ..models import Payment
from ..services import refundable_amount
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
