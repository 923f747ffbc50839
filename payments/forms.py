"""Validation of what customers send."""

from __future__ import annotations

from django import forms

from . import selectors
from .models import Plan

# Fields the server sets; a client sending them is told so instead of ignored.
SERVER_FIELDS = (
    "amount",
    "currency",
    "status",
    "payment_url",
    "ref_id",
    "amount_paid",
    "amount_refunded",
    "date_paid",
    "expiry_datetime",
    "gateway_transaction_id",
    "gateway_session_id",
    "needs_review",
    "crypto_address",
    "crypto_amount",
)


class PaymentCreateForm(forms.Form):
    plan = forms.CharField(max_length=64)
    payment_gateway = forms.CharField(max_length=32)
    email = forms.EmailField(max_length=254)
    crypto_currency = forms.CharField(max_length=16, required=False)

    def __init__(self, data, *args, **kwargs):
        self.raw = data if isinstance(data, dict) else {}
        super().__init__(
            {k: v for k, v in self.raw.items() if k in self.base_fields},
            *args,
            **kwargs,
        )

    def clean(self):
        cleaned = super().clean()
        for name in SERVER_FIELDS:
            if name in self.raw:
                self._errors.setdefault(name, self.error_class()).append(
                    "is set by the server and cannot be sent"
                )
        for name in self.base_fields:
            value = self.raw.get(name)
            if value is not None and not isinstance(value, str):
                self._errors[name] = self.error_class(["must be a string"])
                cleaned.pop(name, None)
        return cleaned

    def clean_email(self) -> str:
        # Stored lower-case so the admin's prefix search can use the index.
        return self.cleaned_data["email"].strip().lower()

    def clean_plan(self) -> Plan:
        code = self.cleaned_data["plan"].strip()
        plan = Plan.objects.filter(code=code, active=True).first()
        if plan is None:
            raise forms.ValidationError(f"unknown plan {code!r}")
        if not plan.sellable:
            # E.g. a price stored before plans were validated.
            raise forms.ValidationError(f"plan {code!r} cannot be sold right now")
        return plan

    def clean_payment_gateway(self) -> str:
        code = self.cleaned_data["payment_gateway"].strip()
        problem = selectors.gateway_problem(code)
        if problem:
            raise forms.ValidationError(problem)
        return code

    def clean_crypto_currency(self) -> str:
        coin = (self.cleaned_data.get("crypto_currency") or "").strip().upper()
        code = (
            (self.raw.get("payment_gateway") or "")
            if isinstance(self.raw.get("payment_gateway"), str)
            else ""
        )
        if not coin:
            return ""
        options = selectors.gateway_options(code.strip())
        if options is None:
            return coin  # the gateway field reports the problem
        if coin not in options:
            raise forms.ValidationError(
                f"{coin} is not offered; choose one of {', '.join(options) or 'none'}"
            )
        return coin

    def error_dict(self) -> dict[str, list[str]]:
        """Return errors keyed by field, as the API reports them."""
        errors = {
            k: [str(m) for m in v] for k, v in self.errors.items() if k != "__all__"
        }
        return errors or {"__all__": [str(m) for m in self.non_field_errors()]}
