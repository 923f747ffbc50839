"""Changes to the checkout catalogue, with a record of every price change."""

from __future__ import annotations

from django.db import transaction

from ..models import Plan, PlanPriceChange


def plan_save(*, plan: Plan, user=None) -> Plan:
    """Validate and save a plan; record who changed its price or currency.

    Raise django's ValidationError (by field) for a price that cannot be
    charged: not above zero, not an ISO 4217 currency, or more decimals than
    the currency has.
    """
    plan.full_clean()
    with transaction.atomic():
        before = (
            Plan.objects.select_for_update()
            .filter(pk=plan.pk)
            .values("price", "currency")
            .first()
            if plan.pk
            else None
        )
        plan.save()
        old_price = before["price"] if before else None
        old_currency = before["currency"] if before else ""
        if old_price != plan.price or old_currency != plan.currency:
            PlanPriceChange.objects.create(
                plan=plan,
                old_price=old_price,
                old_currency=old_currency,
                new_price=plan.price,
                new_currency=plan.currency,
                changed_by=user if getattr(user, "pk", None) else None,
            )
    return plan
