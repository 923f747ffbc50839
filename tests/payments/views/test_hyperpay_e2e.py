"""HyperPay COPYandPAY end to end: the app on a live server, the fake over real HTTP.

The fake serves the API, paymentWidgets.js and the pay page the widget opens;
it posts its AES-256-GCM encrypted webhooks to our webhook URL when a test
points it there (`webhooks`), as HyperPay's portal configuration would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.utils import timezone

from gateways import registry
from payments import services
from payments.models import EventKind, Payment, Refund, WebhookDelivery
from tests.api import create_payment
from tests.factories import PlanFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
Status = Payment.Status
OPERATOR = services.Actor("admin")


@pytest.fixture
def hp(providers):
    """The fake server, HyperPay's webhooks going nowhere unless a test says so."""
    providers.hyperpay_webhook_url = None
    yield providers
    providers.hyperpay_wait_notifications()
    providers.hyperpay_webhook_url = None
    providers.hyperpay_refund_answers.clear()
    providers.hyperpay_lose_refund_answers = 0


@pytest.fixture
def webhooks(hp, live_server) -> Iterator[str]:
    """Point the fake's webhooks at our endpoint; return that URL."""
    url = f"{live_server.url}/api/webhooks/hyperpay/"
    hp.hyperpay_webhook_url = url
    yield url


@pytest.fixture
def mada(hp, gateway_settings):
    """Configure the mada entity: two checkouts, two widgets."""
    gateway_settings["hyperpay"]["mada_entity_id"] = hp.hyperpay_mada_entity_id
    registry.reset()
    return hp.hyperpay_mada_entity_id


def checkout(live_server, plan) -> Payment:
    """Create a HyperPay payment through the public API, as the checkout page does."""
    created = create_payment(live_server.url, plan, "hyperpay")
    assert created["payment_url"] == (
        f"{live_server.url}/checkout/pay/{created['ref_id']}/"
    )
    return Payment.objects.get(ref_id=created["ref_id"])


def widgets(page: requests.Response) -> list[dict[str, str]]:
    found = re.search(
        r'<script id="hyperpay-widgets" type="application/json">(.*?)</script>',
        page.text,
        re.S,
    )
    assert found, page.text
    return json.loads(found.group(1))


def pay(live_server, hp, payment: Payment, action: str, *, widget: int = 0):
    """Do what the payer does: open our pay page, the widget, its page; press."""
    http = requests.Session()
    page = http.get(payment.payment_url, timeout=10)
    chosen = widgets(page)[widget]
    script = http.get(chosen["script"], timeout=10)
    assert script.status_code == 200 and "paymentWidgets" in script.text
    checkout_id = chosen["script"].rsplit("checkoutId=", 1)[1]
    # The form's action, resolved against our page as the browser does.
    action_path = re.search(r'<form id="payment-form" action="([^"]+)"', page.text)[1]
    return http.post(
        f"{hp.url}/hyperpay/pay/{checkout_id}",
        data={"action": action, "shopperResultUrl": live_server.url + action_path},
        timeout=10,
    )


def paid_payment(live_server, plan, hp) -> Payment:
    payment = checkout(live_server, plan)
    assert "Payment received" in pay(live_server, hp, payment, "pay").text
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    return payment


def flags(payment: Payment) -> list[str]:
    events = payment.events.filter(kind=EventKind.REVIEW_FLAGGED)
    return list(events.values_list("message", flat=True))


# --- create, pay, return -----------------------------------------------------------------


def test_checkout_offers_hyperpay_with_its_logo(live_server, hp):
    page = requests.get(f"{live_server.url}/checkout/", timeout=10).text

    assert 'value="hyperpay"' in page
    assert "payments/logos/hyperpay" in page


def test_create_pay_and_return_completes(live_server, plan, hp):
    payment = checkout(live_server, plan)
    page = requests.get(payment.payment_url, timeout=10)

    [widget] = widgets(page)
    assert widget["script"] == (
        f"{hp.url}/v1/paymentWidgets.js?checkoutId={payment.gateway_session_id}"
    )
    assert widget["brands"] == "VISA MASTER"
    assert (
        f'<form id="payment-form" action="/checkout/return/{payment.ref_id}/" '
        'class="paymentWidgets" data-brands="VISA MASTER">'
    ) in page.text
    # This page alone may run the provider's script.
    policy = page.headers["Content-Security-Policy"]
    script_src = next(p for p in policy.split(";") if "script-src" in p)
    assert hp.url in script_src
    checkout_policy = requests.get(f"{live_server.url}/checkout/", timeout=10)
    assert hp.url not in checkout_policy.headers["Content-Security-Policy"]
    checkout_call = hp.calls[0]
    assert checkout_call[0] == "hyperpay:checkout"

    result = pay(live_server, hp, payment, "pay")

    assert result.url.startswith(
        f"{live_server.url}/checkout/return/{payment.ref_id}/?id="
    )
    assert "Payment received" in result.text
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_paid == plan.price and not payment.needs_review
    assert payment.gateway_data["entity_id"] == hp.hyperpay_entity_id
    paid = hp.hyperpay_transactions(payment.ref_id)[-1]
    assert payment.gateway_data["payment_id"] == paid["id"]
    back = payment.events.get(kind=EventKind.RETURN)
    assert back.data["note"].startswith(
        f"returned from checkout {payment.gateway_session_id}"
    )
    # Confirmed from our checkout id; the resourcePath was never fetched as given.
    status_paths = [path for op, path in hp.calls if op == "hyperpay:status"]
    assert status_paths and all(payment.gateway_session_id in p for p in status_paths)


def test_decline_is_failed_with_the_code(live_server, plan, hp):
    payment = checkout(live_server, plan)

    result = pay(live_server, hp, payment, "decline")

    assert "Payment failed" in result.text
    payment.refresh_from_db()
    assert payment.status == Status.FAILED
    assert "800.100.151 transaction declined" in payment.failure_reason


def test_pending_stays_pending_until_the_platform_settles_it(
    live_server, plan, hp, webhooks
):
    payment = checkout(live_server, plan)

    result = pay(live_server, hp, payment, "pending")

    assert "Waiting for confirmation" in result.text
    payment.refresh_from_db()
    assert payment.status == Status.PENDING
    Payment.objects.filter(pk=payment.pk).update(next_check_at=None)
    services.reconcile_cycle(trigger="test")
    payment.refresh_from_db()
    assert payment.status == Status.PENDING

    pending_id = hp.hyperpay_transactions(payment.ref_id)[-1]["id"]
    hp.hyperpay_settle(pending_id)

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    ids = WebhookDelivery.objects.filter(payment=payment).values_list(
        "provider_event_id", flat=True
    )
    assert sorted(ids) == [f"{pending_id}:000.100.110", f"{pending_id}:000.200.000"]


# --- webhooks -------------------------------------------------------------------------------


def test_webhook_completes_and_duplicates_or_late_news_change_nothing(
    live_server, plan, hp, webhooks
):
    payment = checkout(live_server, plan)

    paid = hp.hyperpay_pay(payment.gateway_session_id)  # the payer never returns

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    delivery = WebhookDelivery.objects.get(payment=payment)
    assert (delivery.signature_valid, delivery.outcome) == (True, "APPLIED")
    assert delivery.provider_event_id == f"{paid['id']}:000.100.110"
    assert payment.events.get(kind=EventKind.WEBHOOK).message.startswith(
        f"notification: DB {paid['id']} 000.100.110"
    )
    statuses = hp.count("hyperpay:status")

    # The same news again (a new IV each time), then an older state of it.
    again = hp.hyperpay_send_notification(paid["id"])
    late = hp.hyperpay_send_notification(
        paid["id"],
        payload_overrides={
            "result": {"code": "000.200.000", "description": "transaction pending"}
        },
    )

    assert (again.status_code, late.status_code) == (200, 200)
    # Only the late one was confirmed: from the paid payment's report.
    assert hp.count("hyperpay:status") == statuses
    assert hp.count("hyperpay:query_id") == 1
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.events.filter(kind=EventKind.STATUS_CHANGE).count() == 1
    outcomes = WebhookDelivery.objects.order_by("pk").values_list("outcome", flat=True)
    assert list(outcomes) == ["APPLIED", "DUPLICATE", "APPLIED"]


@pytest.mark.parametrize("forgery", ["tamper", "other key", "no tag"])
def test_a_forged_or_tampered_webhook_is_4xx_and_changes_nothing(
    live_server, plan, hp, forgery
):
    payment = checkout(live_server, plan)
    paid = hp.hyperpay_pay(payment.gateway_session_id, notify=False)
    build = {
        "tamper": {"tamper": True},
        "other key": {"key": "ab" * 32},
        "no tag": {},
    }[forgery]
    body, headers = hp.hyperpay_notification(paid["id"], **build)
    if forgery == "no tag":
        del headers["X-Authentication-Tag"]

    response = requests.post(
        f"{live_server.url}/api/webhooks/hyperpay/",
        data=body,
        headers=headers,
        timeout=10,
    )

    assert response.status_code == 403
    payment.refresh_from_db()
    assert payment.status == Status.PENDING and payment.date_paid is None
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.signature_valid) == ("REJECTED", False)
    assert delivery.payment is None
    assert hp.count("hyperpay:status") == 0  # nothing was confirmed


def test_other_kinds_of_webhook_are_kept_and_acknowledged(live_server, hp, webhooks):
    response = hp.hyperpay_send_notification(kind="REGISTRATION", json_body=True)

    assert response.status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.signature_valid) == ("IGNORED", True)
    assert delivery.body.startswith('{"encryptedBody": "')


def test_amount_mismatch_is_paid_as_captured_and_flagged(
    live_server, plan, hp, webhooks
):
    payment = checkout(live_server, plan)

    hp.hyperpay_pay(payment.gateway_session_id, amount="20.00")

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_paid == Decimal("20.00")
    assert payment.needs_review
    assert "underpaid: provider reported 20.00 of 24.00 EUR" in payment.review_reason
    assert WebhookDelivery.objects.get(payment=payment).outcome == "REVIEW"


def test_a_chargeback_is_flagged_and_limits_refunds(live_server, plan, hp, webhooks):
    payment = checkout(live_server, plan)
    paid = hp.hyperpay_pay(payment.gateway_session_id)
    hp.hyperpay_expire_checkout(payment.gateway_session_id)

    hp.hyperpay_chargeback(paid["id"], "10.00")

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED and payment.amount_refunded == 0
    assert payment.amount_charged_back == Decimal("10.00")
    assert flags(payment) == [
        f"HyperPay: chargeback of 10.00 EUR on payment {paid['id']}"
    ]
    assert services.refundable_amount(payment) == Decimal("14.00")
    assert hp.count("hyperpay:query_id") == 1  # confirmed with the linked report


# --- the reconciler ---------------------------------------------------------------------------


def test_reconciler_settles_a_payment_whose_shopper_never_returned(
    live_server, plan, hp
):
    payment = checkout(live_server, plan)
    hp.hyperpay_pay(payment.gateway_session_id, notify=False)  # webhook lost
    hp.hyperpay_expire_checkout(payment.gateway_session_id)
    Payment.objects.filter(pk=payment.pk).update(
        next_check_at=None, expiry_datetime=timezone.now() - timedelta(seconds=1)
    )

    services.reconcile_cycle(trigger="test")

    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED  # paid: never expired
    assert payment.amount_paid == plan.price
    assert hp.count("hyperpay:query") == 1
    assert hp.count("hyperpay:status") == 0  # past its life: not asked


def test_reconciler_expires_a_checkout_nobody_paid(live_server, plan, hp):
    payment = checkout(live_server, plan)
    hp.hyperpay_expire_checkout(payment.gateway_session_id)
    Payment.objects.filter(pk=payment.pk).update(next_check_at=None)

    services.reconcile_cycle(trigger="test")

    payment.refresh_from_db()
    # The checkout is gone before its time: the report says nothing was paid.
    assert payment.status == Status.EXPIRED
    assert hp.count("hyperpay:status") == 1 and hp.count("hyperpay:query") == 1


def test_the_report_budget_backs_the_reconciler_off(
    live_server, plan, hp, gateway_settings
):
    gateway_settings["hyperpay"]["query_per_minute"] = 1
    registry.reset()
    first, second = checkout(live_server, plan), checkout(live_server, plan)
    past = timezone.now() - timedelta(seconds=1)
    Payment.objects.filter(pk__in=[first.pk, second.pk]).update(
        next_check_at=None, expiry_datetime=past
    )
    for payment in (first, second):
        hp.hyperpay_expire_checkout(payment.gateway_session_id)

    run = services.reconcile_cycle(trigger="test")

    assert hp.count("hyperpay:query") == 1  # the second never left
    states = sorted(
        Payment.objects.filter(pk__in=[first.pk, second.pk]).values_list(
            "status", flat=True
        )
    )
    assert states == [Status.EXPIRED, Status.PENDING]
    run.refresh_from_db()
    assert run.errors == 1 and "budget spent" in run.message
    backed_off = Payment.objects.get(status=Status.PENDING)
    assert backed_off.next_check_at > timezone.now()


# --- refunds ----------------------------------------------------------------------------------


def test_partial_then_full_refund(live_server, plan, hp):
    payment = paid_payment(live_server, plan, hp)
    applied = hp.hyperpay_refunds_applied

    partial = services.refund_request(
        payment_id=payment.pk, amount=Decimal("4.00"), actor=OPERATOR
    )
    payment.refresh_from_db()
    assert partial.status == Refund.Status.SUCCEEDED
    assert payment.status == Status.PARTIALLY_REFUNDED

    rest = services.refund_request(
        payment_id=payment.pk, amount=Decimal("20.00"), actor=OPERATOR
    )
    payment.refresh_from_db()
    assert rest.status == Refund.Status.SUCCEEDED
    assert payment.status == Status.REFUNDED
    assert payment.amount_refunded == plan.price
    assert hp.hyperpay_refunds_applied == applied + 2
    # Our refund id is each refund's merchantTransactionId at HyperPay.
    for refund in (partial, rest):
        [made] = hp.hyperpay_transactions(refund.idempotency_id)
        assert made["id"] == refund.gateway_refund_id
        assert made["referencedId"] == payment.gateway_data["payment_id"]

    # A refresh reads the linked report and knows both refunds as ours.
    services.payment_refresh(payment=payment)
    payment.refresh_from_db()
    assert payment.refunds.count() == 2 and payment.amount_refunded == plan.price
    assert not payment.needs_review


def test_a_lost_refund_answer_is_looked_up_not_resent(live_server, plan, hp):
    payment = paid_payment(live_server, plan, hp)
    applied = hp.hyperpay_refunds_applied
    hp.hyperpay_lose_refund_answers = 1

    refund = services.refund_request(
        payment_id=payment.pk, amount=Decimal("4.00"), actor=OPERATOR
    )

    assert refund.status == Refund.Status.PENDING
    assert hp.count("hyperpay:refund") == 1
    assert services.refunds_retry_pending(min_age_seconds=0) == 1
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert hp.count("hyperpay:refund") == 1  # looked up, never sent again
    assert hp.count("hyperpay:query") == 1
    assert hp.hyperpay_refunds_applied == applied + 1
    payment.refresh_from_db()
    assert payment.status == Status.PARTIALLY_REFUNDED
    assert payment.amount_refunded == Decimal("4.00")


def test_a_declined_refund_fails_and_releases_the_amount(live_server, plan, hp):
    payment = paid_payment(live_server, plan, hp)
    hp.hyperpay_refund_answers[:] = ["declined"]

    refund = services.refund_request(
        payment_id=payment.pk, amount=Decimal("4.00"), actor=OPERATOR
    )

    assert refund.status == Refund.Status.FAILED
    assert "800.100.402" in refund.failure_reason
    payment.refresh_from_db()
    assert services.refundable_amount(payment) == plan.price


# --- mada -------------------------------------------------------------------------------------


def test_a_mada_payment_is_refunded_under_the_mada_entity(live_server, plan, hp, mada):
    payment = checkout(live_server, plan)
    page = requests.get(payment.payment_url, timeout=10)
    card, mada_widget = widgets(page)
    assert (card["brands"], mada_widget["brands"]) == ("VISA MASTER", "MADA")
    assert '<a href="#mada" data-method="mada"' in page.text

    result = pay(live_server, hp, payment, "pay", widget=1)

    assert "Payment received" in result.text
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.gateway_data["entity_id"] == mada
    paid_id = payment.gateway_data["payment_id"]
    assert hp.hyperpay_entity_of(paid_id) == mada

    refund = services.refund_request(
        payment_id=payment.pk, amount=Decimal("5.00"), actor=OPERATOR
    )

    # The fake refuses a refund under another entity (700.400.700).
    assert refund.status == Refund.Status.SUCCEEDED
    assert hp.hyperpay_entity_of(refund.gateway_refund_id) == mada
    services.payment_refresh(payment=payment)
    linked = [path for op, path in hp.calls if op == "hyperpay:query_id"]
    assert linked and all(f"entityId={mada}" in path for path in linked)


def test_a_three_decimal_price_is_charged_exactly(live_server, hp, webhooks):
    plan = PlanFactory(code="kw-1gb", price=Decimal("1.250"), currency="KWD")
    payment = checkout(live_server, plan)

    paid = hp.hyperpay_pay(payment.gateway_session_id)

    assert paid["amount"] == "1.250"
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_paid == Decimal("1.250") and not payment.needs_review
