"""Plans: prices a customer can be charged, and a record of every price change."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from payments import services
from payments.models import Payment, Plan, PlanPriceChange
from tests.factories import PlanFactory

pytestmark = pytest.mark.django_db


def plan_form(plan: Plan | None = None, **fields) -> dict:
    data = {
        "code": plan.code if plan else "new-plan",
        "name": plan.name if plan else "New plan",
        "description": "",
        "price": str(plan.price) if plan else "10.00",
        "currency": plan.currency if plan else "USD",
        "active": "on",
        "sort_order": "0",
        "price_changes-TOTAL_FORMS": "0",
        "price_changes-INITIAL_FORMS": "0",
    }
    data.update(fields)
    return data


@pytest.mark.parametrize(
    ("price", "currency", "field", "message"),
    [
        ("0", "USD", "price", "greater than zero"),
        ("-5", "USD", "price", "greater than zero"),
        ("10.5", "JPY", "price", "JPY has no decimal places"),
        ("10.001", "USD", "price", "USD has 2 decimal places at most"),
        ("1.0005", "KWD", "price", "KWD has 3 decimal places at most"),
        ("10", "XYZ", "currency", "not an ISO 4217 currency"),
        ("10", "BTC", "currency", "not an ISO 4217 currency"),
        ("10", "US", "currency", "not an ISO 4217 currency"),
    ],
)
def test_plan_prices_are_validated_for_their_currency(price, currency, field, message):
    plan = Plan(code="p", name="P", price=Decimal(price), currency=currency)
    with pytest.raises(ValidationError) as error:
        services.plan_save(plan=plan)
    assert message in " ".join(error.value.message_dict[field])
    assert not Plan.objects.exists()


@pytest.mark.parametrize(
    ("price", "currency"),
    [("1500", "JPY"), ("1500.000", "JPY"), ("9.99", "usd"), ("12.345", "KWD")],
)
def test_valid_prices_are_saved_with_an_upper_case_currency(price, currency):
    plan = services.plan_save(
        plan=Plan(code="p", name="P", price=Decimal(price), currency=currency)
    )
    plan.refresh_from_db()
    assert plan.currency == currency.upper()
    assert plan.price == Decimal(price)


def test_database_refuses_a_price_of_zero():
    with pytest.raises(IntegrityError), transaction.atomic():
        Plan.objects.create(code="free", name="Free", price=Decimal("0"))


def test_price_changes_are_recorded_and_shown(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:payments_plan_add"), plan_form(price="10.00")
    )
    assert response.status_code == 302
    plan = Plan.objects.get()
    url = reverse("admin:payments_plan_change", args=[plan.pk])

    admin_client.post(url, plan_form(plan, name="Renamed"))  # no price change
    admin_client.post(url, plan_form(plan, name="Renamed", price="12.50"))

    changes = list(
        PlanPriceChange.objects.values_list(
            "old_price", "new_price", "new_currency", "changed_by__username"
        ).order_by("id")
    )
    assert changes == [
        (None, Decimal("10.00"), "USD", "admin"),
        (Decimal("10.00"), Decimal("12.50"), "USD", "admin"),
    ]
    page = admin_client.get(url).content.decode()
    assert "Price history" in page or "price history" in page
    assert "10.00 USD" in page and "12.50 USD" in page


def test_admin_form_explains_a_bad_price(admin_client):
    response = admin_client.post(
        reverse("admin:payments_plan_add"), plan_form(price="10.5", currency="JPY")
    )
    assert response.status_code == 200
    assert "JPY has no decimal places" in response.content.decode()
    assert not Plan.objects.exists()


def test_a_plan_that_cannot_be_sold_is_a_400_at_checkout_not_a_500(client, sandbox):
    # Stored before plans were validated (the constraint allows it: price > 0).
    broken = PlanFactory(code="odd", price=Decimal("10.5"), currency="JPY")
    response = client.post(
        "/api/payments/",
        json.dumps(
            {"plan": broken.code, "payment_gateway": "sandbox", "email": "a@b.co"}
        ),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "cannot be sold" in response.json()["fields"]["plan"][0]
    assert not Payment.objects.exists()
    page = client.get("/checkout/").content.decode()
    assert 'value="odd"' not in page


def test_checkout_shows_prices_at_their_currency_precision(client, sandbox):
    PlanFactory(code="jp", name="Japan", price=Decimal("1500"), currency="JPY")
    PlanFactory(code="kw", name="Kuwait", price=Decimal("4.250"), currency="KWD")
    page = client.get("/checkout/").content.decode()
    assert "1500 JPY" in page
    assert "4.250 KWD" in page


def test_finance_reads_the_price_at_its_currency_precision(client, django_user_model):
    from django.contrib.auth.models import Group

    from payments.roles import roles_setup

    roles_setup()
    reader = django_user_model.objects.create_user("fin", is_staff=True)
    reader.groups.add(Group.objects.get(name="Finance"))
    client.force_login(reader)
    plan = PlanFactory(code="jp", price=Decimal("1500"), currency="JPY")
    page = client.get(reverse("admin:payments_plan_change", args=[plan.pk]))
    content = page.content.decode()
    assert page.status_code == 200
    assert "1500 JPY" in content and "1500.000" not in content
    assert 'name="_save"' not in content
