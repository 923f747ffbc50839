"""Stripe Checkout end to end over real HTTP against the fake Stripe (issue 20).

The app runs on a live server and talks to the fake through the official
`stripe` library; the fake serves the hosted page, signs its events like
Stripe and posts them to /api/webhooks/stripe/ when a test names that URL
(`webhooks`). Nothing here branches on the gateway: the checkout API, the
return page, the webhook intake, refunds and the reconciler are the shared ones.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.utils import timezone

from gateways import registry
from payments import services
from payments.models import (
    EventKind,
    Payment,
    PaymentEvent,
    Refund,
    RefundSource,
    WebhookDelivery,
)
from payments.services.status import SETTLING
from tests.api import create_payment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
Status = Payment.Status
OPERATOR = services.Actor("admin")


@pytest.fixture
def webhooks(live_server, providers):
    """Let the fake post its events to this app's Stripe webhook URL."""
    providers.stripe_webhook_url = f"{live_server.url}/api/webhooks/stripe/"
    return providers


def checkout(live_server, plan) -> Payment:
    """Create a Stripe payment through the public API, as the checkout page does."""
    created = create_payment(live_server.url, plan, "stripe")
    return Payment.objects.get(ref_id=created["ref_id"])


def press(payment: Payment, action: str, **kwargs) -> requests.Response:
    """Press a button on the fake's hosted page (following its redirect)."""
    return requests.post(
        payment.payment_url, data={"action": action}, timeout=10, **kwargs
    )


def paid(live_server, plan, fake) -> Payment:
    payment = checkout(live_server, plan)
    assert "Payment received" in press(payment, "pay").text
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    return payment


def post_event(live_server, body: bytes, headers: dict) -> requests.Response:
    return requests.post(
        f"{live_server.url}/api/webhooks/stripe/",
        data=body,
        headers=headers,
        timeout=10,
    )


def flags(payment: Payment) -> list[str]:
    events = payment.events.filter(kind=EventKind.REVIEW_FLAGGED)
    return list(events.values_list("message", flat=True))


def overdue(payment: Payment) -> None:
    Payment.objects.filter(pk=payment.pk).update(
        expiry_datetime=timezone.now() - timedelta(minutes=1), next_check_at=None
    )


# --- create → pay → return ---------------------------------------------------------------


def test_create_pay_and_return_completes(live_server, plan, providers):
    fake = providers
    payment = checkout(live_server, plan)
    session = fake.stripe_session(payment.gateway_session_id)

    assert payment.payment_url == session["url"]
    assert payment.payment_url.startswith(f"{fake.url}/c/pay/cs_test_")
    assert payment.gateway_transaction_id == payment.gateway_session_id
    assert (session["amount_total"], session["currency"]) == (2400, "eur")
    assert session["client_reference_id"] == payment.ref_id
    assert session["metadata"] == {"ref_id": payment.ref_id}
    assert session["customer_email"] == "buyer@example.com"
    assert session["success_url"] == (
        f"{live_server.url}/checkout/return/{payment.ref_id}/"
        "?session_id={CHECKOUT_SESSION_ID}"
    )
    assert payment.expiry_datetime.timestamp() == session["expires_at"]

    http = requests.Session()
    assert http.get(payment.payment_url, timeout=10).status_code == 200
    back = http.post(payment.payment_url, data={"action": "pay"}, timeout=10)

    assert f"/checkout/return/{payment.ref_id}/?session_id=" in back.url
    assert "Payment received" in back.text
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_paid == plan.price and payment.date_paid
    intent = fake.stripe_session(payment.gateway_session_id)["payment_intent"]
    # Once paid, the PaymentIntent names the payment (refunds, disputes).
    assert payment.gateway_transaction_id == intent
    assert fake.stripe_intent(intent)["metadata"] == {"ref_id": payment.ref_id}
    returned = payment.events.get(kind=EventKind.RETURN)
    assert returned.data["note"] == "session_id matches the checkout session"


def test_the_checkout_page_offers_stripe_with_its_logo(client, plan, providers):
    html = client.get("/checkout/").content.decode()

    assert 'name="payment_gateway" value="stripe"' in html
    assert "payments/logos/stripe" in html
    assert "Card (Stripe)" in html


def test_without_a_secret_key_stripe_is_left_out_quietly(
    client, plan, providers, gateway_settings
):
    gateway_settings["stripe"]["secret_key"] = ""
    registry.reset()

    html = client.get("/checkout/").content.decode()
    response = client.post(
        "/api/payments/",
        {"plan": plan.code, "payment_gateway": "stripe", "email": "a@b.test"},
        content_type="application/json",
    )

    assert 'value="stripe"' not in html and 'value="mpgs"' in html
    assert response.status_code == 400
    assert "unavailable" in response.content.decode()
    assert "STRIPE_SECRET_KEY" not in response.content.decode()  # for the operator


# --- webhooks --------------------------------------------------------------------------------


def test_the_event_alone_completes_a_payment_whose_payer_never_returns(
    live_server, plan, webhooks
):
    fake = webhooks
    payment = checkout(live_server, plan)
    asked = fake.count("stripe:session")

    fake.stripe_pay(payment.gateway_session_id)  # no redirect followed

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED and payment.amount_paid == plan.price
    delivery = WebhookDelivery.objects.get(payment=payment)
    assert (delivery.signature_valid, delivery.outcome) == (True, "APPLIED")
    assert delivery.provider_event_id.startswith("evt_")
    assert delivery.headers["Stripe-Signature"] == "[redacted]"
    # Confirmed by reading the session within the request.
    assert fake.count("stripe:session") > asked
    assert "confirmed" in payment.events.get(kind=EventKind.WEBHOOK).message


def _tamper(fake, payment):
    event = fake.stripe_session_event(
        payment.gateway_session_id, "checkout.session.completed"
    )
    body, headers = fake.stripe_signed(event)
    return body.replace(b'"payment_status": "unpaid"', b'"payment_status": "paid"'), (
        headers
    )


@pytest.mark.parametrize(
    "forge",
    [
        lambda fake, payment: fake.stripe_signed(
            fake.stripe_session_event(
                payment.gateway_session_id, "checkout.session.completed"
            ),
            secret="whsec_guessed",
        ),
        _tamper,
        lambda fake, payment: fake.stripe_signed(
            fake.stripe_session_event(
                payment.gateway_session_id, "checkout.session.completed"
            ),
            timestamp=int(timezone.now().timestamp()) - 600,
        ),
        lambda fake, payment: (
            json.dumps(
                fake.stripe_session_event(
                    payment.gateway_session_id, "checkout.session.completed"
                )
            ).encode(),
            {"Content-Type": "application/json"},
        ),
    ],
    ids=["wrong-secret", "tampered-body", "replayed-late", "unsigned"],
)
def test_forged_or_tampered_events_are_refused_and_change_nothing(
    live_server, plan, providers, forge
):
    fake = providers
    payment = checkout(live_server, plan)
    asked = fake.count("stripe:session")

    response = post_event(live_server, *forge(fake, payment))

    assert response.status_code == 403
    payment.refresh_from_db()
    assert payment.status == Status.PENDING and not payment.needs_review
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.signature_valid) == ("REJECTED", False)
    assert delivery.payment is None
    assert fake.count("stripe:session") == asked  # nothing was looked up


def test_a_signed_event_that_lies_is_confirmed_and_not_believed(
    live_server, plan, providers
):
    """The body claims `paid`; the session, read again, is still open."""
    fake = providers
    payment = checkout(live_server, plan)
    event = fake.stripe_session_event(
        payment.gateway_session_id, "checkout.session.completed"
    )
    event["data"]["object"].update(status="complete", payment_status="paid")

    response = post_event(live_server, *fake.stripe_signed(event))

    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.status == Status.PENDING and payment.date_paid is None


def test_repeated_and_out_of_order_events_apply_once(live_server, plan, webhooks):
    fake = webhooks
    fake.stripe_hold_events = True
    payment = checkout(live_server, plan)
    fake.stripe_pay(payment.gateway_session_id)
    intent = fake.stripe_session(payment.gateway_session_id)["payment_intent"]
    fake.stripe_refund_externally(intent, 400)  # in the Dashboard

    # charge.refunded first, then checkout.session.completed; each twice.
    fake.stripe_release(reverse=True, twice=True)

    payment.refresh_from_db()
    assert payment.status == Status.PARTIALLY_REFUNDED
    assert (payment.amount_paid, payment.amount_refunded) == (
        plan.price,
        Decimal("4.00"),
    )
    [row] = payment.refunds.all()
    assert (row.source, row.amount) == (RefundSource.PROVIDER, Decimal("4.00"))
    outcomes = list(
        WebhookDelivery.objects.order_by("pk").values_list("outcome", flat=True)
    )
    assert outcomes == ["APPLIED", "DUPLICATE", "APPLIED", "DUPLICATE"]
    assert payment.events.filter(kind=EventKind.STATUS_CHANGE).count() == 1


def test_queued_intake_applies_stored_events_later(
    live_server, plan, webhooks, settings
):
    """Stored with the signature redacted, an event is read again unverified."""
    settings.WEBHOOK_APPLY = "queued"
    fake = webhooks
    payment = checkout(live_server, plan)

    fake.stripe_pay(payment.gateway_session_id)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.headers["Stripe-Signature"]) == (
        "RECEIVED",
        "[redacted]",
    )
    assert services.webhooks_apply_received() == 1
    delivery.refresh_from_db()
    payment.refresh_from_db()
    assert (delivery.outcome, payment.status) == ("APPLIED", Status.COMPLETED)


# --- declines, expiry, delayed payments ---------------------------------------------------


def test_a_decline_keeps_the_session_open_then_fails_when_it_expires(
    live_server, plan, webhooks
):
    payment = checkout(live_server, plan)

    declined = press(payment, "decline")
    assert "Your card was declined." in declined.text  # Stripe's page, no redirect
    poll = requests.get(
        f"{live_server.url}/api/payments/status/{payment.ref_id}/", timeout=10
    )
    assert poll.json()["status"] == "PENDING"
    payment.refresh_from_db()
    [attempt] = payment.events.filter(message__startswith="payment attempt")
    assert attempt.data["declined"][0].startswith("ch_")

    press(payment, "expire")  # nobody tried again: Stripe expires the session

    payment.refresh_from_db()
    assert payment.status == Status.FAILED
    assert "declined: card_declined, generic_decline" in payment.failure_reason
    assert not payment.needs_review


def test_a_decline_fails_when_our_payment_window_ends(live_server, plan, providers):
    payment = checkout(live_server, plan)
    press(payment, "decline")

    overdue(payment)
    services.payment_expire_overdue()

    payment.refresh_from_db()
    assert payment.status == Status.FAILED
    assert "card_declined" in payment.failure_reason


def test_a_session_nobody_paid_expires(live_server, plan, webhooks):
    payment = checkout(live_server, plan)

    back = press(payment, "cancel")
    assert "You left the payment page" in back.text
    press(payment, "expire")

    payment.refresh_from_db()
    assert payment.status == Status.EXPIRED
    assert WebhookDelivery.objects.get(payment=payment).outcome == "APPLIED"


@pytest.mark.parametrize("succeed", [True, False])
def test_a_bank_debit_stays_pending_and_settling_until_it_settles(
    live_server, plan, webhooks, succeed
):
    fake = webhooks
    payment = checkout(live_server, plan)

    back = press(payment, "pay_later")

    assert "We have not received a confirmation" in back.text
    payment.refresh_from_db()
    assert payment.status == Status.PENDING and SETTLING in payment.gateway_data
    overdue(payment)
    services.payment_expire_overdue()
    payment.refresh_from_db()
    assert payment.status == Status.PENDING  # never expired while it settles

    fake.stripe_settle(payment.gateway_session_id, succeed=succeed)

    payment.refresh_from_db()
    if succeed:
        assert payment.status == Status.COMPLETED
        assert payment.amount_paid == plan.price
    else:
        assert payment.status == Status.FAILED
        assert "insufficient_funds" in payment.failure_reason
    assert SETTLING not in payment.gateway_data


def test_an_amount_other_than_the_price_is_paid_as_captured_and_flagged(
    live_server, plan, webhooks
):
    fake = webhooks
    payment = checkout(live_server, plan)

    fake.stripe_pay(payment.gateway_session_id, amount=2000)

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_paid == Decimal("20.00")
    assert payment.needs_review
    assert "underpaid: provider reported 20.00 of 24.00 EUR" in payment.review_reason
    assert WebhookDelivery.objects.get(payment=payment).outcome == "REVIEW"
    status = requests.get(
        f"{live_server.url}/api/payments/status/{payment.ref_id}/", timeout=10
    ).json()
    assert (status["under_review"], status["amount_paid"]) == (True, "20.00")


def test_money_in_another_currency_is_held_and_flagged(live_server, plan, webhooks):
    fake = webhooks
    payment = checkout(live_server, plan)

    fake.stripe_pay(payment.gateway_session_id, currency="usd")

    payment.refresh_from_db()
    assert payment.status == Status.PENDING and payment.needs_review
    assert "currency mismatch: provider reported USD" in payment.review_reason
    assert SETTLING in payment.gateway_data  # never expired


def test_the_reconciler_settles_a_payment_whose_payer_never_returned(
    live_server, plan, providers
):
    fake = providers
    payment = checkout(live_server, plan)
    fake.stripe_pay(payment.gateway_session_id, notify=False)  # event lost
    Payment.objects.filter(pk=payment.pk).update(next_check_at=None)

    run = services.reconcile_cycle(trigger="test")

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED and payment.amount_paid == plan.price
    assert (run.checked, run.changed, run.errors) == (1, 1, 0)
    assert payment.gateway_transaction_id.startswith("pi_")


# --- refunds ----------------------------------------------------------------------------------


def test_partial_then_full_refund_through_the_api_counted_once(
    live_server, plan, webhooks
):
    fake = webhooks
    payment = paid(live_server, plan, fake)
    created = fake.stripe_refunds_created

    part = services.refund_request(
        payment_id=payment.pk, amount=Decimal("4.00"), actor=OPERATOR
    )
    fake.stripe_wait_events()
    payment.refresh_from_db()
    assert part.status == Refund.Status.SUCCEEDED
    assert part.gateway_refund_id.startswith("re_")
    assert payment.status == Status.PARTIALLY_REFUNDED
    assert services.refundable_amount(payment) == Decimal("20.00")

    rest = services.refund_request(
        payment_id=payment.pk, amount=Decimal("20.00"), actor=OPERATOR
    )
    fake.stripe_wait_events()
    payment.refresh_from_db()

    assert rest.status == Refund.Status.SUCCEEDED
    assert payment.status == Status.REFUNDED
    assert payment.amount_refunded == plan.price
    assert fake.stripe_refunds_created == created + 2
    at_stripe = fake.stripe_refunds(payment.gateway_transaction_id)
    assert [r["metadata"]["refund_id"] for r in at_stripe] == [
        part.idempotency_id,
        rest.idempotency_id,
    ]
    assert [r["amount"] for r in at_stripe] == [400, 2000]
    # Their charge.refunded events and a later refresh add nothing.
    services.payment_refresh(payment=payment)
    assert payment.refunds.count() == 2
    refunded_events = WebhookDelivery.objects.filter(body__contains="charge.refunded")
    assert refunded_events.count() == 2
    assert set(refunded_events.values_list("outcome", flat=True)) == {"APPLIED"}


def test_a_lost_refund_answer_is_looked_up_not_sent_again(live_server, plan, providers):
    fake = providers
    payment = paid(live_server, plan, fake)
    fake.stripe_refund_answers[:] = ["lost"]

    refund = services.refund_request(
        payment_id=payment.pk, amount=Decimal("5.00"), actor=OPERATOR
    )

    assert refund.status == Refund.Status.PENDING  # the answer never came
    payment.refresh_from_db()
    assert services.refundable_amount(payment) == Decimal("19.00")
    looked_up = fake.count("stripe:refunds")

    assert services.refunds_retry_pending(min_age_seconds=0) == 1

    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert fake.count("stripe:refund_create") == 1  # never sent twice
    assert fake.count("stripe:refunds") == looked_up + 1
    assert len(fake.stripe_refunds(payment.gateway_transaction_id)) == 1
    payment.refresh_from_db()
    assert payment.status == Status.PARTIALLY_REFUNDED
    assert payment.amount_refunded == Decimal("5.00")


def test_a_refund_stripe_refuses_fails_at_once_and_frees_the_amount(
    live_server, plan, providers
):
    fake = providers
    payment = paid(live_server, plan, fake)
    fake.stripe_refund_answers[:] = ["declined"]

    refund = services.refund_request(
        payment_id=payment.pk, amount=Decimal("4.00"), actor=OPERATOR
    )

    assert refund.status == Refund.Status.FAILED
    assert "charge_not_refundable" in refund.failure_reason
    payment.refresh_from_db()
    assert services.refundable_amount(payment) == plan.price
    assert services.refunds_retry_pending(min_age_seconds=0) == 0
    assert fake.count("stripe:refund_create") == 1


# --- the Dashboard and the card schemes ------------------------------------------------------


def test_a_dashboard_refund_becomes_a_refund_row_of_its_own(
    live_server, plan, webhooks
):
    fake = webhooks
    payment = paid(live_server, plan, fake)

    fake.stripe_refund_externally(payment.gateway_transaction_id, 2400)

    payment.refresh_from_db()
    assert payment.status == Status.REFUNDED
    [row] = payment.refunds.all()
    assert row.source == RefundSource.PROVIDER and row.gateway_refund_id
    assert row.gateway_refund_id.startswith("re_")


def test_a_dispute_flags_the_payment_and_a_lost_one_is_charged_back(
    live_server, plan, webhooks
):
    fake = webhooks
    payment = paid(live_server, plan, fake)

    dispute = fake.stripe_dispute(payment.gateway_transaction_id)

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED and payment.amount_refunded == 0
    assert flags(payment) == [
        f"Stripe: dispute {dispute['id']} (fraudulent) over 24.00 EUR: answer it "
        "in the Stripe Dashboard"
    ]
    delivery = WebhookDelivery.objects.filter(payment=payment).latest("pk")
    assert delivery.outcome == "REVIEW"
    assert "charge.dispute.created" in delivery.body

    fake.stripe_close_dispute(dispute["id"], won=False)

    payment.refresh_from_db()
    assert payment.amount_charged_back == plan.price
    assert payment.events.filter(kind=EventKind.CHARGEBACK).count() == 1
    assert f"dispute {dispute['id']} lost" in payment.review_reason
    assert services.refundable_amount(payment) == 0


# --- the back office ---------------------------------------------------------------------------


def test_the_admins_refresh_and_refund_dialogs_work_for_stripe(
    admin_client, plan, providers
):
    from tests.payments.admin.test_admin import SUBMITTED, action_url, shown_messages

    fake = providers
    payment = services.payment_create(
        plan=plan, gateway_code="stripe", email="a@example.com", site_url="http://t"
    )
    fake.stripe_pay(payment.gateway_session_id, notify=False)

    refreshed = admin_client.post(
        action_url("refresh_from_gateway", payment), SUBMITTED, follow=True
    )
    refunded = admin_client.post(
        action_url("refund", payment),
        {**SUBMITTED, "amount": "4", "reason": "one day unused"},
        follow=True,
    )

    assert shown_messages(refreshed) == ["Refreshed: the payment is now Completed."]
    assert shown_messages(refunded) == ["Refunded 4.00 EUR."]
    payment.refresh_from_db()
    assert payment.status == Status.PARTIALLY_REFUNDED
    [at_stripe] = fake.stripe_refunds(payment.gateway_transaction_id)
    assert at_stripe["amount"] == 400
    assert at_stripe["metadata"]["reason"] == "one day unused"


# --- outages, budgets, secrets ----------------------------------------------------------------


@pytest.mark.parametrize("fault", ["connect-timeout", "500", "garbage", "html"])
def test_stripe_down_at_checkout_is_503_with_a_failed_payment(
    client, plan, providers, gateway_settings, fault
):
    fake = providers
    gateway_settings["stripe"].update(connect_timeout=0.3, read_timeout=0.5)
    if fault == "connect-timeout":
        gateway_settings["stripe"]["api_base"] = fake.blackhole_url()
    else:
        fake.add_fault("stripe:session_create", fault)
    registry.reset()

    response = client.post(
        "/api/payments/",
        {"plan": plan.code, "payment_gateway": "stripe", "email": "d@example.com"},
        content_type="application/json",
    )

    assert response.status_code == 503
    assert "unavailable" in response.json()["error"]
    payment = Payment.objects.get()
    assert payment.status == Status.FAILED and payment.failure_reason
    assert fake.count("stripe:session_create") == (
        0 if fault == "connect-timeout" else 1
    )


def test_a_customer_poll_gives_stripe_one_try_within_its_budget(
    client, plan, providers, settings
):
    """A hanging Stripe is asked once (no retries) inside the refresh budget."""
    fake = providers
    settings.STATUS_REFRESH_BUDGET_SECONDS = 0.5
    settings.STATUS_REFRESH_SECONDS = 0
    payment = services.payment_create(
        plan=plan, gateway_code="stripe", email="p@example.com", site_url="http://t"
    )
    fake.add_fault("stripe:session", "timeout", times=5, seconds=3.0)

    response = client.get(f"/api/payments/status/{payment.ref_id}/")

    assert response.status_code == 200 and response.json()["status"] == "PENDING"
    # Outside a budget a GET is retried twice more (GatewayHTTP); here it is not.
    assert fake.count("stripe:session") == 1


def test_secrets_never_reach_logs_deliveries_or_events(
    live_server, plan, webhooks, caplog
):
    caplog.set_level(logging.DEBUG)
    fake = webhooks
    payment = paid(live_server, plan, fake)
    genuine = fake.stripe_signed(
        fake.stripe_session_event(
            payment.gateway_session_id, "checkout.session.completed"
        )
    )
    assert post_event(live_server, *genuine).status_code == 200
    forged = fake.stripe_signed(
        fake.stripe_session_event(
            payment.gateway_session_id, "checkout.session.expired"
        ),
        secret="whsec_guessed",
    )
    assert post_event(live_server, *forged).status_code == 403
    services.refund_request(
        payment_id=payment.pk, amount=Decimal("1.00"), actor=OPERATOR
    )
    fake.stripe_wait_events()
    fake.add_fault("*", "500")
    services.payment_refresh(payment=payment, actor=services.Actor("admin", user=None))

    stored = json.dumps(list(WebhookDelivery.objects.values("headers", "error")))
    events = json.dumps(
        list(PaymentEvent.objects.values("data", "message")), default=str
    )
    intent = fake.stripe_intent(payment.gateway_transaction_id)
    for secret in [
        fake.stripe_secret_key,
        fake.stripe_webhook_secret,
        genuine[1]["Stripe-Signature"].split("v1=")[1],
        forged[1]["Stripe-Signature"].split("v1=")[1],
        intent["client_secret"],
    ]:
        assert secret not in caplog.text, f"{secret} in logs"
        assert secret not in stored, f"{secret} in deliveries"
        assert secret not in events, f"{secret} in events"
    assert "[redacted]" in events  # the PaymentIntent's client_secret was there
