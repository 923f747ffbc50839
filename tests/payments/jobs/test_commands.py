"""Management commands: seed_demo."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count

from payments.models import Payment, PaymentEvent, Plan, Refund
from payments.states import PaymentStatus
from tests.payments.jobs.test_seed_demo import closed_port_url

NOWHERE = closed_port_url()


@pytest.mark.slow
@pytest.mark.django_db
def test_seed_demo_is_realistic_and_safe_to_run_twice(settings):
    settings.DEBUG = True
    out = StringIO()
    call_command(
        "seed_demo", payments=60, providers_port=0, site_url=NOWHERE, stdout=out
    )
    assert "60/60" in out.getvalue() and "[#" in out.getvalue()
    assert Payment.objects.count() == 60
    statuses = set(Payment.objects.values_list("status", flat=True))
    assert statuses == set(PaymentStatus.values)
    assert set(Payment.objects.values_list("payment_gateway", flat=True)) == {
        "sandbox",
        "coinpayments",
        "mpgs",
    }
    assert Payment.objects.values("currency").distinct().count() >= 4
    spread = Payment.objects.order_by("date_created")
    assert (spread.last().date_created - spread.first().date_created).days > 60
    fewest = (
        PaymentEvent.objects.values("payment").annotate(n=Count("id")).order_by("n")
    )
    assert fewest.first()["n"] >= 2
    paid = Payment.objects.filter(
        status__in=["COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"]
    )
    assert not paid.filter(date_paid__isnull=True).exists()
    assert all(p.amount_refunded <= p.amount_paid for p in paid)
    users = get_user_model().objects.filter(is_staff=True)
    assert set(users.values_list("username", flat=True)) == {
        "admin",
        "support",
        "operator",
        "finance",
        "approver",
    }
    # Refunds recorded by hand say so, as the refund services record them.
    assert not Refund.objects.filter(status="MANUAL", manual=False).exists()

    call_command("seed_demo", payments=60, providers_port=0, stdout=StringIO())
    assert Payment.objects.count() == 60
    assert Plan.objects.count() == 7


@pytest.mark.django_db
def test_seed_demo_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo", stdout=StringIO())
    assert not Payment.objects.exists()
