"""Money truth at the provider edge (issue 18): one test per numbered case.

End to end over real HTTP where a provider is involved: the app runs on a live
server, the fake MPGS / CoinPayments serve their APIs and post their
notifications back; the reconciler and the expiry job ask them over HTTP.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.contrib.auth import get_user_model
from django.utils import timezone

from gateways.base import StatusResult
from payments import selectors, services
from payments.exceptions import RefundNotAllowed
from payments.models import (
    EventKind,
    PaidVia,
    Payment,
    Refund,
    RefundSource,
    RefundStatus,
    WebhookDelivery,
)
from payments.services.status import SETTLING, payment_apply_status
from payments.states import PaymentStatus
from tests.api import create_payment
from tests.factories import PlanFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = PaymentStatus
OPERATOR = services.Actor("admin")


def checkout(live_server, plan, gateway: str = "mpgs", **extra) -> Payment:
    created = create_payment(live_server.url, plan, gateway, **extra)
    return Payment.objects.get(ref_id=created["ref_id"])


def coin_checkout(live_server, plan) -> Payment:
    return checkout(live_server, plan, "coinpayments", crypto_currency="BTC")


def paid(live_server, plan, fake) -> Payment:
    payment = checkout(live_server, plan)
    fake.mpgs_pay(payment.ref_id)
    payment.refresh_from_db()
    assert payment.status == S.COMPLETED
    return payment


def overdue(payment: Payment) -> None:
    Payment.objects.filter(pk=payment.pk).update(
        expiry_datetime=timezone.now() - timedelta(minutes=1), next_check_at=None
    )


def flags(payment: Payment) -> list[str]:
    events = payment.events.filter(kind=EventKind.REVIEW_FLAGGED)
    return list(events.values_list("message", flat=True))


def public(live_server, payment: Payment) -> dict:
    url = f"{live_server.url}/api/payments/status/{payment.ref_id}/"
    return requests.get(url, timeout=10).json()


def post_ipn(client, body: bytes, headers: dict):
    """POST a signed CoinPayments IPN to our webhook URL, as the provider does."""
    return client.post(
        "/api/webhooks/coinpayments/",
        body,
        content_type="application/x-www-form-urlencoded",
        headers={k: v for k, v in headers.items() if k.lower() != "content-type"},
    )


def ten_usd():
    return PlanFactory(code="usd-10", price=Decimal("10.00"), currency="USD")


# 1. MPGS void after capture ---------------------------------------------------------


def test_case1_a_capture_voided_at_mpgs_is_no_longer_paid_anywhere(
    live_server, plan, providers
):
    fake = providers
    payment = paid(live_server, plan, fake)
    today = timezone.localdate()

    order = fake.mpgs_void(payment.ref_id)

    assert order["status"] == "CANCELLED" and order["totalCapturedAmount"] == 0
    payment.refresh_from_db()
    assert payment.status == S.VOIDED
    assert payment.amount_paid == 0 and payment.date_paid is None
    assert flags(payment) == ["voided at the provider after capture: check delivery"]
    change = payment.events.get(kind=EventKind.STATUS_CHANGE, to_status=S.VOIDED)
    assert change.from_status == S.COMPLETED
    # No figure counts it as paid any more.
    assert selectors.paid_volume(days=2, now=timezone.now()) == []
    assert selectors.settlement_summary(start=today, end=today) == []
    stats = selectors.gateway_stats(days=2, recent_days=2, now=timezone.now())
    assert [(s.gateway, s.recent_paid, s.recent_ended) for s in stats] == [
        ("mpgs", 0, 1)
    ]
    assert public(live_server, payment)["amount_paid"] == "0.00"
    with pytest.raises(RefundNotAllowed, match="voided payment"):
        services.refund_request(
            payment_id=payment.pk, amount=Decimal("1.00"), actor=OPERATOR
        )


def test_case1_an_authorisation_voided_before_capture_ends_the_payment_failed(
    live_server, plan, providers
):
    fake = providers
    payment = checkout(live_server, plan)
    fake.mpgs_authorize(payment.ref_id)

    fake.mpgs_void(payment.ref_id)

    payment.refresh_from_db()
    assert payment.status == S.FAILED and "voided" in payment.failure_reason
    assert SETTLING not in payment.gateway_data  # nothing held any more


# 2. captured money is never expired -----------------------------------------------


def test_case2_a_short_mpgs_capture_is_paid_as_captured_and_never_expired(
    live_server, providers
):
    fake = providers
    payment = checkout(live_server, ten_usd())

    fake.mpgs_pay(payment.ref_id, amount="9.99")

    payment.refresh_from_db()
    assert payment.status == S.COMPLETED and payment.amount_paid == Decimal("9.99")
    assert flags(payment) == ["underpaid: provider reported 9.99 of 10.00 USD"]
    body = public(live_server, payment)
    assert (body["status"], body["amount_paid"], body["under_review"]) == (
        "COMPLETED",
        "9.99",
        True,
    )
    page = requests.get(
        f"{live_server.url}/checkout/return/{payment.ref_id}/", timeout=10
    )
    assert "Payment being checked" in page.text
    assert "Payment received" not in page.text

    overdue(payment)
    assert services.payment_expire_overdue() == 0
    payment.refresh_from_db()
    assert payment.status == S.COMPLETED
    assert services.refundable_amount(payment) == Decimal("9.99")


def test_case2_coins_short_of_the_amount_are_paid_pro_rata_at_the_invoice_rate(
    live_server, plan, providers, client
):
    fake = providers
    payment = coin_checkout(live_server, plan)
    txn = payment.gateway_transaction_id
    asked = payment.crypto_amount
    half = (asked / 2).quantize(Decimal("0.00000001"))
    fake.cp_set_status(txn, 100, received=half)

    body, headers = fake.cp_ipn(txn)
    response = post_ipn(client, body, headers)

    assert response.status_code == 200
    payment.refresh_from_db()
    worth = (plan.price * half / asked).quantize(Decimal("0.01"), "ROUND_DOWN")
    assert payment.status == S.COMPLETED and payment.amount_paid == worth
    assert payment.needs_review
    assert f"underpaid: received {half} of {asked} BTC" in payment.review_reason
    overdue(payment)
    services.payment_expire_overdue()
    payment.refresh_from_db()
    assert payment.status == S.COMPLETED


def test_case2_a_capture_first_seen_after_a_portal_refund_lands_refunded(
    live_server, plan, providers
):
    fake = providers
    payment = checkout(live_server, plan)
    fake.mpgs_pay(payment.ref_id, notify=False)  # the notification is lost
    fake.mpgs_refund_externally(payment.ref_id, "4.00")
    overdue(payment)

    assert services.payment_expire_overdue() == 0  # its last check finds money

    payment.refresh_from_db()
    assert payment.status == S.PARTIALLY_REFUNDED
    assert (payment.amount_paid, payment.amount_refunded) == (
        plan.price,
        Decimal("4.00"),
    )
    [row] = payment.refunds.all()
    assert (row.source, row.status, row.amount) == (
        RefundSource.PROVIDER,
        RefundStatus.SUCCEEDED,
        Decimal("4.00"),
    )
    assert row.gateway_refund_id.startswith("EXT-")
    change = payment.events.get(kind=EventKind.STATUS_CHANGE)
    assert (change.from_status, change.to_status) == (S.PENDING, S.PARTIALLY_REFUNDED)
    assert services.refundable_amount(payment) == plan.price - Decimal("4.00")


# 3. MPGS AUTHORIZED: funds held, not captured ---------------------------------------


def test_case3_an_authorised_payment_is_flagged_at_once_never_expired_and_polled(
    live_server, plan, providers
):
    fake = providers
    payment = checkout(live_server, plan)

    fake.mpgs_authorize(payment.ref_id)

    payment.refresh_from_db()
    assert payment.status == S.PENDING
    assert flags(payment) == [
        "authorised, not captured: capture or void at the provider"
    ]
    assert SETTLING in payment.gateway_data
    overdue(payment)
    assert services.payment_expire_overdue() == 0
    payment.refresh_from_db()
    assert payment.status == S.PENDING
    assert payment.failure_reason == ""
    # The reconciler keeps asking (the order lookup is counted).
    before = fake.count("mpgs:order")
    Payment.objects.filter(pk=payment.pk).update(next_check_at=None)
    services.reconcile_cycle(trigger="test")
    assert fake.count("mpgs:order") == before + 1
    payment.refresh_from_db()
    assert payment.next_check_at is not None and payment.status == S.PENDING
    assert len(flags(payment)) == 1  # flagged once, not at every poll


# 4. no refund after a chargeback ---------------------------------------------------


def test_case4_a_chargeback_shows_on_the_timeline_and_limits_refunds(
    live_server, plan, providers
):
    fake = providers
    payment = paid(live_server, plan, fake)

    fake.mpgs_chargeback(payment.ref_id, "10.00")

    payment.refresh_from_db()
    assert payment.amount_charged_back == Decimal("10.00")
    [entry] = payment.events.filter(kind=EventKind.CHARGEBACK)
    assert "10.00 EUR charged back" in entry.message
    assert services.refundable_amount(payment) == plan.price - Decimal("10.00")
    sent = fake.count("mpgs:refund")
    with pytest.raises(RefundNotAllowed, match="10.00 EUR was charged back"):
        services.refund_request(
            payment_id=payment.pk, amount=plan.price, actor=OPERATOR
        )
    assert fake.count("mpgs:refund") == sent  # nothing sent to the provider
    assert not Refund.objects.filter(payment=payment).exists()


def test_case4_a_full_chargeback_leaves_nothing_to_refund(live_server, plan, providers):
    fake = providers
    payment = paid(live_server, plan, fake)

    fake.mpgs_chargeback(payment.ref_id)  # the whole captured amount

    payment.refresh_from_db()
    assert payment.amount_charged_back == plan.price
    assert services.refundable_amount(payment) == 0
    with pytest.raises(RefundNotAllowed, match="at most 0.00 EUR"):
        services.refund_request(
            payment_id=payment.pk, amount=Decimal("1.00"), actor=OPERATOR
        )


# 5. refund totals follow the provider -------------------------------------------------


def test_case5_our_portal_and_manual_refunds_add_up_without_double_counting(
    live_server, plan, providers
):
    fake = providers
    payment = paid(live_server, plan, fake)
    ours = services.refund_request(
        payment_id=payment.pk, amount=Decimal("8.00"), actor=OPERATOR
    )
    fake.mpgs_wait_notifications()
    assert ours.status == RefundStatus.SUCCEEDED

    fake.mpgs_refund_externally(payment.ref_id, "4.00")
    for _ in range(2):  # asking twice records the portal refund once
        services.payment_refresh(payment=payment)
    services.refund_request(
        payment_id=payment.pk, amount=Decimal("2.00"), actor=OPERATOR, manual=True
    )

    payment.refresh_from_db()
    provider_total = Decimal(
        str(fake.mpgs_order(payment.ref_id)["totalRefundedAmount"])
    )
    assert provider_total == Decimal("12.00")
    rows = sorted(payment.refunds.values_list("source", "status", "amount"))
    assert rows == [
        (RefundSource.BACKOFFICE, RefundStatus.MANUAL, Decimal("2.00")),
        (RefundSource.BACKOFFICE, RefundStatus.SUCCEEDED, Decimal("8.00")),
        (RefundSource.PROVIDER, RefundStatus.SUCCEEDED, Decimal("4.00")),
    ]
    assert payment.amount_refunded == provider_total + Decimal("2.00")
    assert payment.amount_refunded == sum(amount for *_, amount in rows)
    assert payment.status == S.PARTIALLY_REFUNDED
    assert services.refundable_amount(payment) == plan.price - Decimal("14.00")


# 6. CoinPayments -2 ----------------------------------------------------------------------


def test_case6_a_paypal_reversal_is_refunded_and_flagged(
    live_server, plan, providers, client
):
    fake = providers
    payment = coin_checkout(live_server, plan)
    txn = payment.gateway_transaction_id
    fake.cp_set_status(txn, 100)
    services.payment_refresh(payment=payment)
    payment.refresh_from_db()
    assert payment.status == S.COMPLETED and not payment.needs_review

    fake.cp_set_status(txn, -2, received=payment.crypto_amount)
    body, headers = fake.cp_ipn(txn)
    response = post_ipn(client, body, headers)

    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.status == S.REFUNDED and payment.amount_refunded == plan.price
    assert payment.needs_review
    assert "PayPal refund or reversal (status -2)" in payment.review_reason
    [row] = payment.refunds.all()
    assert row.source == RefundSource.PROVIDER and row.amount == plan.price


# 7. the settling flag is stable -------------------------------------------------------


def test_case7_an_ipn_waiting_for_confirmations_keeps_the_payment_settling(
    live_server, plan, providers, client
):
    fake = providers
    payment = coin_checkout(live_server, plan)
    txn = payment.gateway_transaction_id
    fake.cp_receive(txn, confirms=1)

    def ipn():
        body, headers = fake.cp_ipn(txn)
        return post_ipn(client, body, headers)

    seen = []
    for step in (ipn, lambda: services.payment_refresh(payment=payment), ipn):
        step()
        payment.refresh_from_db()
        seen.append(SETTLING in payment.gateway_data)

    assert seen == [True, True, True]
    notes = payment.events.filter(message__startswith="not expiring while")
    assert notes.count() == 1  # it started once and never flipped
    overdue(payment)
    services.payment_expire_overdue()
    payment.refresh_from_db()
    assert payment.status == S.PENDING


# 8. notifications for unknown orders ------------------------------------------------


def test_case8_verified_notifications_for_unknown_orders_are_kept_and_acknowledged(
    live_server, plan, providers, client, settings
):
    fake = providers
    settings.METRICS_TOKEN = "metrics-token"
    payment = paid(live_server, plan, fake)
    Payment.objects.filter(pk=payment.pk).update(ref_id="renamed-here-000000000")
    url = f"{live_server.url}/api/webhooks/mpgs/"

    response = fake.mpgs_send_notification(payment.ref_id, url=url)

    assert response.status_code == 200
    unmatched = WebhookDelivery.objects.get(outcome=WebhookDelivery.Outcome.UNMATCHED)
    assert unmatched.gateway == "mpgs" and unmatched.signature_valid
    # An unverified one is still refused.
    refused = fake.mpgs_send_notification(payment.ref_id, url=url, secret="wrong")
    assert refused.status_code == 403
    metrics = client.get(
        "/metrics", headers={"Authorization": "Bearer metrics-token"}
    ).content.decode()
    assert re.search(
        r'webhook_deliveries_total\{gateway="mpgs",outcome="UNMATCHED"\} 1\.0', metrics
    )


# 9. silence is noticed --------------------------------------------------------------


def complete(payment: Payment, source: str) -> None:
    payment_apply_status(
        payment_id=payment.pk,
        result=StatusResult(
            ref_id=payment.ref_id,
            status=S.COMPLETED,
            amount=payment.amount,
            currency=payment.currency,
        ),
        actor=services.Actor(source),
    )


@pytest.mark.django_db
def test_case9_completions_learned_only_by_polling_are_a_warning(
    client, plan, sandbox, settings
):
    from tests.factories import PaymentFactory

    settings.WEBHOOK_SILENCE_MIN_COMPLETIONS = 3
    settings.METRICS_TOKEN = "metrics-token"
    polled = [PaymentFactory(payment_gateway="sandbox") for _ in range(3)]
    PaymentFactory(payment_gateway="sandbox")  # abandoned: never counts
    for payment, source in zip(
        polled, ["reconcile", "status-api", "return"], strict=True
    ):
        complete(payment, source)
    assert sorted(Payment.objects.values_list("paid_via", flat=True)) == sorted(
        ["", PaidVia.RECONCILER, PaidVia.CUSTOMER_POLL, PaidVia.RETURN]
    )

    [silence] = selectors.webhook_silence()
    assert (silence.gateway, silence.completions, silence.silent) == (
        "sandbox",
        3,
        True,
    )
    health = client.get("/health/")
    assert health.status_code == 200
    assert any("sandbox: 3 payments completed" in w for w in health.json()["warnings"])
    metrics = client.get(
        "/metrics", headers={"Authorization": "Bearer metrics-token"}
    ).content.decode()
    assert 'payments_webhook_silent{gateway="sandbox"} 1.0' in metrics
    admin = get_user_model().objects.create_superuser("boss", "b@example.com", "pw")
    client.force_login(admin)
    assert (
        "Provider notifications look broken" in client.get("/admin/").content.decode()
    )

    complete(PaymentFactory(payment_gateway="sandbox"), "webhook:sandbox")

    [silence] = selectors.webhook_silence()
    assert (silence.completions, silence.by_notification, silence.silent) == (
        4,
        1,
        False,
    )
    assert client.get("/health/").json()["warnings"] == []
    assert "Provider notifications look broken" not in (
        client.get("/admin/").content.decode()
    )
