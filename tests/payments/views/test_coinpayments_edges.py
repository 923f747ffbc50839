"""CoinPayments at the edges, end to end over loopback HTTP against the fake.

Payments are created through the API of a live server; the fake plays the
provider (its transactions scripted with `cp_receive`, `cp_time_out`,
`cp_permissions`) and posts IPNs back over HTTP; the reconciler and the
expiry job ask it over HTTP too. One test per case of issue #8.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from payments import services
from payments.models import EventKind, Payment, WebhookDelivery
from payments.services.status import SETTLING
from tests.api import create_payment

Status = Payment.Status
Outcome = WebhookDelivery.Outcome
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def create(live_server, plan, email="edge@example.com") -> Payment:
    """Create a CoinPayments payment through the public API (real HTTP)."""
    created = create_payment(
        live_server.url, plan, "coinpayments", email=email, crypto_currency="BTC"
    )
    return Payment.objects.get(ref_id=created["ref_id"])


def overdue(*payments: Payment) -> None:
    """Put payments past their expiry, due for a check."""
    past = timezone.now() - timedelta(minutes=1)
    Payment.objects.filter(pk__in=[p.pk for p in payments]).update(
        expiry_datetime=past, next_check_at=None
    )


def reconcile(**kwargs):
    return services.reconcile_cycle(trigger="test", **kwargs)


def later(hours: int = 7):
    """A cycle time at which every backed-off payment is due again."""
    return timezone.now() + timedelta(hours=hours)


# 1. coins seen but not confirmed at the deadline ------------------------------------


def test_unconfirmed_coins_at_the_deadline_keep_the_payment_pending(
    live_server, plan, providers
):
    fake = providers
    waiting, empty = create(live_server, plan), create(live_server, plan)
    fake.cp_receive(waiting.gateway_transaction_id, confirms=1)
    overdue(waiting, empty)

    run = reconcile()

    waiting.refresh_from_db()
    empty.refresh_from_db()
    # Nothing received: expired. Coins waiting for confirmations: kept.
    assert (empty.status, run.expired) == (Status.EXPIRED, 1)
    assert waiting.status == Status.PENDING and not waiting.needs_review
    assert "received" in waiting.gateway_data[SETTLING]
    note = waiting.events.get(kind=EventKind.REFRESH)
    assert note.message.startswith("not expiring while the money settles: coins")
    # ... and polled with back-off, not by every expiry run.
    assert waiting.check_attempts == 1
    assert waiting.next_check_at > timezone.now() + timedelta(seconds=30)
    asked = fake.count("cp:get_tx_info")
    assert services.payment_expire_overdue() == 0
    assert fake.count("cp:get_tx_info") == asked

    # The provider confirms: the next due check completes it, cleanly.
    fake.cp_set_status(waiting.gateway_transaction_id, 100)
    run = reconcile(now=later())
    waiting.refresh_from_db()
    assert (run.changed, waiting.status) == (1, Status.COMPLETED)
    assert waiting.amount_paid == plan.price and not waiting.needs_review
    assert SETTLING not in waiting.gateway_data


def test_the_expiry_jobs_last_check_sees_coins_that_just_arrived(
    live_server, plan, providers
):
    payment = create(live_server, plan)
    providers.cp_receive(payment.gateway_transaction_id)
    overdue(payment)

    assert services.payment_expire_overdue() == 0

    payment.refresh_from_db()
    assert payment.status == Status.PENDING
    assert SETTLING in payment.gateway_data
    # The provider then gives up on it: ended, and flagged (coins arrived).
    providers.cp_time_out(payment.gateway_transaction_id)
    reconcile(now=later())
    payment.refresh_from_db()
    assert payment.status == Status.EXPIRED and payment.needs_review


# 2. underpaid, then timed out ----------------------------------------------------------


def test_underpaid_then_timed_out_ipn_ends_and_flags_the_payment(
    live_server, plan, providers
):
    fake = providers
    payment = create(live_server, plan)
    txn = payment.gateway_transaction_id
    fake.cp_receive(txn, "0.00010000")
    fake.cp_time_out(txn)

    answer = fake.cp_send_ipn(txn)  # to our webhook, over HTTP

    assert (answer.status_code, answer.text) == (200, "IPN OK")
    payment.refresh_from_db()
    assert payment.status == Status.EXPIRED
    assert payment.needs_review
    asked = fake.cp_transaction(txn)["amount2"]
    assert f"received 0.00010000 of {asked:.8f} BTC" in payment.review_reason
    assert payment.date_paid is None and payment.amount_paid == 0
    delivery = WebhookDelivery.objects.get(payment=payment)
    assert delivery.outcome == Outcome.REVIEW
    assert fake.count("cp:get_tx_info") == 1  # the IPN was confirmed by lookup


def test_underpaid_then_timed_out_found_by_the_reconciler(live_server, plan, providers):
    payment = create(live_server, plan)
    providers.cp_receive(payment.gateway_transaction_id, "0.00000100")
    providers.cp_time_out(payment.gateway_transaction_id)
    Payment.objects.filter(pk=payment.pk).update(next_check_at=None)

    run = reconcile()

    payment.refresh_from_db()
    assert (run.changed, payment.status) == (1, Status.EXPIRED)
    assert "received 0.00000100 of" in payment.review_reason
    flagged = payment.events.get(kind=EventKind.REVIEW_FLAGGED)
    assert "refund or top up by hand" in flagged.message


# 3. permanent API answers ----------------------------------------------------------------


def test_unknown_payment_id_ends_the_payment_after_its_deadline(
    live_server, plan, providers
):
    late, early = create(live_server, plan), create(live_server, plan)
    Payment.objects.filter(pk__in=[late.pk, early.pk]).update(
        gateway_transaction_id="CPUNKNOWNTOTHEPROVIDER0000"
    )
    overdue(late)
    Payment.objects.filter(pk=early.pk).update(next_check_at=None)

    run = reconcile()

    late.refresh_from_db()
    early.refresh_from_db()
    assert late.status == Status.FAILED
    assert late.failure_reason == "CoinPayments answered: Invalid payment ID"
    assert not late.needs_review
    # Before its deadline the same answer is retried with back-off.
    assert early.status == Status.PENDING and early.check_attempts == 1
    assert run.errors == 1


def test_missing_permission_ends_overdue_payments_and_flags_them(
    live_server, plan, providers
):
    fake = providers
    by_reconciler, by_expiry = create(live_server, plan), create(live_server, plan)
    overdue(by_reconciler, by_expiry)
    Payment.objects.filter(pk=by_expiry.pk).update(next_check_at=later())
    fake.cp_permissions = {"create_transaction"}
    try:
        run = reconcile()
    finally:
        fake.cp_permissions = None

    assert (run.changed, run.expired) == (1, 0)
    for payment in (by_reconciler, by_expiry):
        payment.refresh_from_db()
        assert payment.status == Status.FAILED
        assert "does not have permission" in payment.failure_reason
        assert payment.needs_review
        assert "enable get_tx_info" in payment.review_reason


def test_an_outage_after_the_deadline_keeps_the_payment_pending(
    live_server, plan, providers
):
    payment = create(live_server, plan)
    overdue(payment)
    providers.add_fault("*", "503", times=10)

    run = reconcile()

    payment.refresh_from_db()
    assert payment.status == Status.PENDING and run.errors == 1
    assert payment.next_check_at > timezone.now()


# 4. other IPN types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "ipn_type", ["deposit", "simple", "button", "cart", "donation", "withdrawal"]
)
def test_other_ipn_types_are_stored_acknowledged_and_ignored(
    live_server, plan, providers, ipn_type
):
    fake = providers
    payment = create(live_server, plan)
    # Even one naming our transaction id never drives the payment.
    body, headers = fake.cp_other_ipn(
        ipn_type, txn_id=payment.gateway_transaction_id, status="100"
    )
    url = f"{live_server.url}/api/webhooks/coinpayments/"

    answer = requests.post(url, data=body, headers=headers, timeout=10)

    assert (answer.status_code, answer.text) == (200, "IPN OK")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.signature_valid) == (Outcome.IGNORED, True)
    assert delivery.payment is None and delivery.body == body.decode()
    assert delivery.error == f"ignored ipn_type {ipn_type}"
    payment.refresh_from_db()
    assert payment.status == Status.PENDING
    assert not payment.events.filter(kind=EventKind.WEBHOOK).exists()
    forged, _ = fake.cp_other_ipn(ipn_type)
    refused = requests.post(
        url, data=forged, headers={**headers, "HMAC": "0" * 128}, timeout=10
    )
    assert refused.status_code == 403


def test_other_ipn_types_queued_are_ignored_by_the_batch_applier(
    live_server, plan, providers, settings
):
    settings.WEBHOOK_APPLY = "queued"
    body, headers = providers.cp_other_ipn("deposit")
    answer = requests.post(
        f"{live_server.url}/api/webhooks/coinpayments/",
        data=body,
        headers=headers,
        timeout=10,
    )
    assert (answer.status_code, answer.text) == (200, "IPN OK")
    assert WebhookDelivery.objects.get().outcome == Outcome.RECEIVED

    assert services.webhooks_apply_received() == 1

    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.payment) == (Outcome.IGNORED, None)


# 5. repeated form fields ----------------------------------------------------------------


@pytest.mark.parametrize(
    "stored, repeated, expected",
    [(0, "100", Status.COMPLETED), (100, "0", Status.PENDING)],
)
def test_a_repeated_ipn_field_counts_with_its_last_value(
    live_server, plan, providers, stored, repeated, expected
):
    payment = create(live_server, plan)
    txn = payment.gateway_transaction_id
    if stored == 0:
        # The provider's own lookup agrees with the last value.
        providers.cp_set_status(txn, 100)
    body, headers = providers.cp_ipn(
        txn, overrides={"status": stored}, repeat={"status": repeated}
    )

    answer = requests.post(
        f"{live_server.url}/api/webhooks/coinpayments/",
        data=body,
        headers=headers,
        timeout=10,
    )

    assert answer.status_code == 200
    payment.refresh_from_db()
    assert payment.status == expected
