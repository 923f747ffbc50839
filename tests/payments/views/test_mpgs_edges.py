"""MPGS at the edges (issue 8, cases 6-10), end to end over real HTTP.

The app runs on a live server; the fake MPGS serves the API, the hosted page
and posts its notifications (retried until answered 2xx) to our webhook URL.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.core.exceptions import ValidationError
from django.utils import timezone

from payments import services
from payments.models import EventKind, Payment, Refund, WebhookDelivery
from tests.api import create_payment
from tests.factories import PlanFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
Status = Payment.Status
OPERATOR = services.Actor("admin")


def checkout(live_server, plan, gateway: str = "mpgs", **extra) -> Payment:
    """Create a payment through the public API, as the checkout page does."""
    created = create_payment(live_server.url, plan, gateway, **extra)
    return Payment.objects.get(ref_id=created["ref_id"])


def hosted(fake, payment: Payment, action: str) -> requests.Response:
    """Press Pay or Decline on the fake's hosted page; follow it back to us."""
    page = f"{fake.url}/checkout/pay/{payment.gateway_session_id}"
    return requests.post(page, data={"action": action}, timeout=10)


def paid_payment(live_server, plan, fake) -> Payment:
    payment = checkout(live_server, plan)
    assert "Payment received" in hosted(fake, payment, "pay").text
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    return payment


def flags(payment: Payment) -> list[str]:
    events = payment.events.filter(kind=EventKind.REVIEW_FLAGGED)
    return list(events.values_list("message", flat=True))


# --- case 6: a decline is not the end of a Hosted Checkout -----------------------


def test_decline_then_another_card_in_the_same_session_completes(
    live_server, plan, providers
):
    fake = providers
    payment = checkout(live_server, plan)

    back = hosted(fake, payment, "decline")
    payment.refresh_from_db()
    assert f"/checkout/return/{payment.ref_id}/" in back.url
    assert "not received a confirmation" in back.text  # still waiting, not failed
    assert payment.status == Status.PENDING
    [declined] = payment.events.filter(message__startswith="payment attempt")
    assert declined.kind == EventKind.WEBHOOK and declined.data["declined"]

    # The reconciler keeps checking and records the same decline only once.
    Payment.objects.filter(pk=payment.pk).update(next_check_at=None)
    services.reconcile_cycle(trigger="test")
    payment.refresh_from_db()
    assert payment.status == Status.PENDING
    assert payment.events.filter(message__startswith="payment attempt").count() == 1

    assert "Payment received" in hosted(fake, payment, "pay").text
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_paid == plan.price
    assert (payment.needs_review, payment.review_reason) == (False, "")
    order = fake.mpgs_order(payment.ref_id)
    assert [t["result"] for t in order["transaction"]] == ["FAILURE", "SUCCESS"]


def test_decline_becomes_failed_only_when_the_session_ends(
    live_server, plan, providers
):
    fake = providers
    payment = checkout(live_server, plan)
    hosted(fake, payment, "decline")
    payment.refresh_from_db()
    assert payment.status == Status.PENDING

    Payment.objects.filter(pk=payment.pk).update(
        expiry_datetime=timezone.now() - timedelta(seconds=1)
    )
    services.payment_expire_overdue()

    payment.refresh_from_db()
    assert payment.status == Status.FAILED
    assert "DECLINED" in payment.failure_reason
    assert not payment.needs_review


def test_authorized_order_stays_pending_and_is_flagged_at_once(
    live_server, plan, providers
):
    fake = providers
    payment = checkout(live_server, plan)

    fake.mpgs_authorize(payment.ref_id)

    payment.refresh_from_db()
    assert payment.status == Status.PENDING
    assert flags(payment) == [
        "authorised, not captured: capture or void at the provider"
    ]
    delivery = WebhookDelivery.objects.get(payment=payment)
    assert delivery.outcome == "REVIEW"


def test_unanswered_notification_is_retried_until_applied(live_server, plan, providers):
    """Our 503 (Retrieve Order failed) makes the gateway try again."""
    fake = providers
    payment = checkout(live_server, plan)
    fake.add_fault("mpgs:order", "garbage", times=1)

    fake.mpgs_pay(payment.ref_id)

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    deliveries = WebhookDelivery.objects.filter(payment=payment).order_by("pk")
    outcomes = [(d.headers["X-Notification-Attempt"], d.outcome) for d in deliveries]
    assert outcomes[-1] == ("2", "APPLIED")
    assert WebhookDelivery.objects.filter(outcome="ERROR").count() == 1


# --- case 7: chargebacks and disputes --------------------------------------------


def test_dispute_and_chargeback_flag_the_payment_never_refund_it(
    live_server, plan, providers
):
    fake = providers
    payment = paid_payment(live_server, plan, fake)

    fake.mpgs_dispute(payment.ref_id)
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_refunded == 0
    assert flags(payment) == [
        "MPGS: order DISPUTED: disputed by the payer (24.00 EUR captured)"
    ]
    latest = WebhookDelivery.objects.filter(payment=payment).latest("pk")
    assert latest.outcome == "REVIEW"

    fake.mpgs_chargeback(payment.ref_id, "24.00")
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED and payment.amount_refunded == 0
    assert "MPGS: chargeback of 24.00 EUR" in payment.review_reason
    assert WebhookDelivery.objects.filter(payment=payment).latest("pk").outcome == (
        "REVIEW"
    )

    # Resolved by staff, the same chargeback does not flag the payment again.
    services.payment_resolve_review(
        payment_id=payment.pk, actor=OPERATOR, message="contested with the bank"
    )
    services.payment_refresh(payment=payment)
    payment.refresh_from_db()
    assert payment.needs_review is False
    assert len(flags(payment)) == 2


# --- case 8: refunds the gateway definitely refused ---------------------------------


@pytest.mark.parametrize("answer", ["rejected", "invalid", "declined"])
def test_refused_refund_fails_at_once_and_is_never_resent(
    live_server, plan, providers, answer
):
    fake = providers
    payment = paid_payment(live_server, plan, fake)
    fake.mpgs_refund_answers[:] = [answer]

    refund = services.refund_request(
        payment_id=payment.pk, amount=Decimal("4.00"), actor=OPERATOR
    )
    fake.mpgs_wait_notifications()

    assert refund.status == Refund.Status.FAILED
    assert "refund" in refund.failure_reason
    payment.refresh_from_db()
    assert services.refundable_amount(payment) == plan.price  # released
    sent = fake.count("mpgs:refund")
    assert services.refunds_retry_pending(min_age_seconds=0) == 0
    assert fake.count("mpgs:refund") == sent  # never re-sent
    assert payment.status == Status.COMPLETED and payment.amount_refunded == 0
    assert payment.events.filter(kind=EventKind.REFUND_FAILED).count() == 1


def test_busy_gateway_leaves_the_refund_pending_then_looks_up_and_resends(
    live_server, plan, providers
):
    fake = providers
    payment = paid_payment(live_server, plan, fake)
    fake.mpgs_refund_answers[:] = ["busy"]
    applied = fake.mpgs_refunds_applied

    refund = services.refund_request(
        payment_id=payment.pk, amount=Decimal("4.00"), actor=OPERATOR
    )
    assert refund.status == Refund.Status.PENDING
    payment.refresh_from_db()
    assert services.refundable_amount(payment) == plan.price - Decimal("4.00")

    assert services.refunds_retry_pending(min_age_seconds=0) == 1
    fake.mpgs_wait_notifications()

    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert fake.mpgs_refunds_applied == applied + 1
    assert fake.count("mpgs:transaction") == 1  # looked up before the resend
    assert fake.count("mpgs:refund") == 2
    payment.refresh_from_db()
    assert payment.status == Status.PARTIALLY_REFUNDED
    assert payment.amount_refunded == Decimal("4.00")


def test_refund_notification_reaches_us_and_counts_once(live_server, plan, providers):
    fake = providers
    payment = paid_payment(live_server, plan, fake)

    refund = services.refund_request(
        payment_id=payment.pk, amount=Decimal("4.00"), actor=OPERATOR
    )
    fake.mpgs_wait_notifications()

    assert refund.status == Refund.Status.SUCCEEDED
    deliveries = WebhookDelivery.objects.filter(payment=payment).order_by("pk")
    refund_notes = [d for d in deliveries if '"REFUND"' in d.body]
    assert len(refund_notes) == 1 and refund_notes[0].outcome == "APPLIED"
    payment.refresh_from_db()
    assert payment.amount_refunded == Decimal("4.00")
    assert payment.status == Status.PARTIALLY_REFUNDED


# --- case 9: money precision ----------------------------------------------------------


def test_short_by_a_fraction_is_paid_as_captured_and_under_review(
    live_server, providers
):
    fake = providers
    plan = PlanFactory(code="usd-10", price=Decimal("10.00"), currency="USD")
    payment = checkout(live_server, plan)

    fake.mpgs_pay(payment.ref_id, amount="9.995")

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_paid == Decimal("9.995")
    assert "underpaid: provider reported 9.995 of 10.00 USD" in payment.review_reason


@pytest.mark.parametrize(
    ("currency", "price"), [("IQD", "12.345"), ("LYD", "7.250"), ("CLP", "9900")]
)
def test_prices_at_the_currency_precision_are_charged_exactly(
    live_server, providers, currency, price
):
    fake = providers
    plan = PlanFactory(code=f"p-{currency}", price=Decimal(price), currency=currency)
    payment = checkout(live_server, plan)
    assert fake.mpgs_session(payment.gateway_session_id)["amount"] == Decimal(price)

    assert "Payment received" in hosted(fake, payment, "pay").text

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_paid == Decimal(price)


@pytest.mark.parametrize(
    ("currency", "price"), [("CLP", "1000.50"), ("ISK", "10.5"), ("KWD", "1.2345")]
)
def test_prices_that_do_not_fit_their_currency_are_refused(db, currency, price):
    plan = PlanFactory.build(code=f"bad-{currency}", price=Decimal(price))
    plan.currency = currency

    with pytest.raises(ValidationError, match="decimal places|whole amount") as err:
        services.plan_save(plan=plan)

    assert "price" in err.value.message_dict


# --- case 10: verified but absurd content never errors -------------------------------


@pytest.mark.parametrize(
    ("label", "order"),
    [
        ("NUL in order.id", {"id": "\x00"}),
        ("NUL in currency", {"currency": "US\x00"}),
        ("1e20 amount", {"amount": 1e20}),
    ],
)
def test_signed_absurd_notification_is_refused_with_400(
    live_server, plan, providers, label, order
):
    fake = providers
    payment = paid_payment(live_server, plan, fake)
    if order.get("id") == "\x00":
        order = {"id": payment.ref_id + "\x00"}

    response = fake.mpgs_send_notification(
        payment.ref_id, body_overrides={"order": order}
    )

    assert response.status_code == 400, label
    assert "invalid content" in response.json()["error"]
    delivery = WebhookDelivery.objects.latest("pk")
    assert (delivery.outcome, delivery.signature_valid) == ("REJECTED", True)
    assert delivery.payment is None and "invalid content" in delivery.error
    assert json.loads(delivery.body)["order"]  # the body is kept as received
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED and not payment.needs_review


def test_signed_absurd_coinpayments_ipn_is_refused_with_400(
    live_server, plan, providers
):
    """The guard sits in the webhook intake: every gateway gets it."""
    fake = providers
    payment = checkout(live_server, plan, "coinpayments", crypto_currency="BTC")
    body, headers = fake.cp_ipn(
        payment.gateway_transaction_id,
        status=100,
        overrides={"invoice": payment.ref_id + "\x00", "amount1": "1e20"},
    )

    response = requests.post(
        f"{live_server.url}/api/webhooks/coinpayments/",
        data=body,
        headers=headers,
        timeout=10,
    )

    assert response.status_code == 400
    delivery = WebhookDelivery.objects.get(gateway="coinpayments")
    assert (delivery.outcome, delivery.signature_valid) == ("REJECTED", True)
    payment.refresh_from_db()
    assert payment.status == Status.PENDING
