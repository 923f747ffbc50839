"""Staff actions against a hanging provider: one time budget per web request.

Issue 22, case 2. The fake provider server hangs the provider's answer far
longer than the budget; the adapters keep their production timeouts (20 s
read, retries on GETs), which alone would hold the request past gunicorn's
30 s. With GATEWAY_REQUEST_BUDGET_SECONDS the admin answers within the
budget, says the janitor will retry, and leaves nothing half-written.
Bounds are generous (budget + 1.5 s): they tell "bounded" from "20-40 s".
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.urls import reverse

from gateways import registry
from payments import services
from payments.models import EventKind, Payment, Refund, RefundStatus
from payments.states import PaymentStatus
from tests.factories import PlanFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

BUDGET = 1.0
HANG = 8.0
SUBMITTED = {"_form_submitted": "True"}
TIMED_OUT = "the provider did not answer in time; the janitor will retry"


@pytest.fixture
def hanging(providers, gateway_settings, settings):
    """The fake providers with production timeouts, and a short request budget."""
    settings.GATEWAY_REQUEST_BUDGET_SECONDS = BUDGET
    for code in ("mpgs", "stripe", "coinpayments", "hyperpay"):
        gateway_settings[code].update(read_timeout=20.0, connect_timeout=5.0)
    registry.reset()
    yield providers
    providers.clear_faults()


@pytest.fixture
def usd_plan(db):
    return PlanFactory(code="gb-5", name="5 GB", price=Decimal("10.00"), currency="USD")


def create(plan, code: str) -> Payment:
    return services.payment_create(
        plan=plan, gateway_code=code, email="a@b.io", site_url="http://testserver"
    )


def paid(fake, plan, code: str) -> Payment:
    """A payment paid at the provider and refreshed outside any request."""
    payment = create(plan, code)
    if code == "mpgs":
        fake.mpgs_pay(payment.ref_id, notify=False)
    else:
        fake.stripe_pay(payment.gateway_session_id, notify=False)
    services.payment_refresh(payment=payment)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    return payment


def action_url(name: str, payment: Payment) -> str:
    return reverse(f"admin:payments_payment_{name}", args=[payment.pk])


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize(
    ("code", "operation"), [("mpgs", "mpgs:order"), ("stripe", "stripe:session")]
)
def test_refresh_answers_within_the_budget_while_the_provider_hangs(
    admin_client, hanging, usd_plan, code, operation
):
    payment = create(usd_plan, code)
    hanging.add_fault(operation, "timeout", times=10, seconds=HANG)
    asked = hanging.count(operation)

    started = time.monotonic()
    response = admin_client.post(action_url("refresh_from_gateway", payment), SUBMITTED)
    elapsed = time.monotonic() - started
    response = admin_client.get(response["Location"])

    assert response.status_code == 200
    assert elapsed < BUDGET + 1.5, f"the refresh took {elapsed:.1f} s"
    assert shown_messages(response) == [f"Not refreshed: {TIMED_OUT}."]
    assert hanging.count(operation) - asked == 1  # no retry past the budget
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING
    fault = payment.events.filter(kind=EventKind.GATEWAY_ERROR).get()
    assert "timeout" in fault.message or "budget" in fault.message


def test_a_refund_past_the_budget_stays_pending_and_the_janitor_settles_it(
    admin_client, hanging, usd_plan
):
    payment = paid(hanging, usd_plan, "mpgs")
    hanging.add_fault("mpgs:refund", "timeout", times=1, seconds=HANG)
    # The fake serves the whole session: count this test's refunds only.
    applied = hanging.mpgs_refunds_applied

    started = time.monotonic()
    response = admin_client.post(
        action_url("refund", payment), {**SUBMITTED, "amount": "4", "reason": "unused"}
    )
    elapsed = time.monotonic() - started
    response = admin_client.get(response["Location"])

    assert elapsed < BUDGET + 1.5, f"the refund took {elapsed:.1f} s"
    assert shown_messages(response) == [
        f"The refund of 4.00 USD is pending: {TIMED_OUT}."
    ]
    # Nothing half-written: one PENDING refund, the payment untouched.
    refund = Refund.objects.get()
    assert (refund.status, refund.amount, refund.attempts) == (
        RefundStatus.PENDING,
        Decimal("4.00"),
        1,
    )
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == (
        PaymentStatus.COMPLETED,
        Decimal("0"),
    )
    assert hanging.mpgs_refunds_applied == applied

    # The janitor (a background job: no request budget) looks it up, then sends it.
    assert services.refunds_retry_pending(min_age_seconds=0) == 1
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert hanging.mpgs_refunds_applied == applied + 1
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PARTIALLY_REFUNDED


def test_background_jobs_keep_their_own_longer_timeouts(
    hanging, usd_plan, gateway_settings
):
    """Outside a request there is no budget: the adapter's read timeout applies."""
    gateway_settings["mpgs"].update(read_timeout=2.5)
    registry.reset()
    payment = create(usd_plan, "mpgs")
    hanging.add_fault("mpgs:order", "timeout", times=1, seconds=2.0)
    hanging.mpgs_pay(payment.ref_id, notify=False)

    started = time.monotonic()
    applied = services.payment_refresh(payment=payment)
    elapsed = time.monotonic() - started

    # Waited past the 1 s request budget for the slow answer, and got it.
    assert elapsed > BUDGET + 0.5
    assert applied is not None and applied.payment.status == PaymentStatus.COMPLETED
