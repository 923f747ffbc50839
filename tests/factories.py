"""factory-boy factories for the domain models."""

from __future__ import annotations

from decimal import Decimal

import factory

from payments.models import Payment, Plan


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"plan-{n}")
    name = factory.Sequence(lambda n: f"Plan {n}")
    price = Decimal("10.00")
    currency = "USD"
    active = True


class PaymentFactory(factory.django.DjangoModelFactory):
    """A fresh PENDING payment; other states come from services, not here."""

    class Meta:
        model = Payment

    plan = factory.SubFactory(PlanFactory)
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    amount = factory.LazyAttribute(lambda o: o.plan.price)
    currency = factory.LazyAttribute(lambda o: o.plan.currency)
    payment_gateway = "sandbox"
