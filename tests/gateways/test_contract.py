"""One contract, run over every registered gateway.

CoinPayments, MPGS, HyperPay and Stripe talk real HTTP to the fake provider server on loopback;
the sandbox keeps its ledger in the Django cache. A driver per gateway plays
the payer and the provider; the assertions are the same for all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from gateways import registry
from gateways.base import (
    CheckoutRequest,
    CheckoutSession,
    GatewayUnavailable,
    NotSupported,
    PaymentRef,
    RefundRequest,
    RefundStatus,
    Status,
    WebhookRejected,
)

pytestmark = pytest.mark.django_db


class SandboxDriver:
    def pay(self, fake, gateway, session, ref_id):
        gateway.choose(session.session_id, "paid")

    def decline(self, fake, gateway, session, ref_id):
        gateway.choose(session.session_id, "declined")

    def notification(self, fake, gateway, session, ref_id, *, secret=None):
        body, headers = gateway.choose(session.session_id, "paid")
        if secret:
            from gateways.sandbox import SIGNATURE_HEADER, sign

            headers = {**headers, SIGNATURE_HEADER: sign(secret, body)}
        return body, headers

    def break_transport(self, fake, gateway, kind):
        gateway.fail = {"status"}


class CoinPaymentsDriver:
    def pay(self, fake, gateway, session, ref_id):
        fake.cp_set_status(session.transaction_id, 100)

    def decline(self, fake, gateway, session, ref_id):
        fake.cp_set_status(session.transaction_id, -1)

    def notification(self, fake, gateway, session, ref_id, *, secret=None):
        return fake.cp_ipn(session.transaction_id, status=100, secret=secret)

    def break_transport(self, fake, gateway, kind):
        fake.add_fault("*", kind, times=5, seconds=1.0)

    # Edges (issue #8); a driver without one of these skips that contract.
    def receive_unconfirmed(self, fake, gateway, session, ref_id):
        fake.cp_receive(session.transaction_id)

    def end_after_part_arrived(self, fake, gateway, session, ref_id):
        fake.cp_receive(session.transaction_id, "0.00000100")
        fake.cp_time_out(session.transaction_id)

    def unknown(self, ref):
        return replace(ref, transaction_id="CPUNKNOWNTOTHEPROVIDER0000")

    def other_notification(self, fake, gateway, session, ref_id):
        return fake.cp_other_ipn("deposit", txn_id=session.transaction_id)


class MPGSDriver:
    def pay(self, fake, gateway, session, ref_id):
        fake.mpgs_pay(ref_id)

    def decline(self, fake, gateway, session, ref_id):
        fake.mpgs_pay(ref_id, approve=False)

    def notification(self, fake, gateway, session, ref_id, *, secret=None):
        fake.mpgs_pay(ref_id)
        return fake.mpgs_notification(ref_id, secret=secret)

    def break_transport(self, fake, gateway, kind):
        fake.add_fault("*", kind, times=5, seconds=1.0)


class StripeDriver:
    def pay(self, fake, gateway, session, ref_id):
        fake.stripe_pay(session.session_id)

    def decline(self, fake, gateway, session, ref_id):
        fake.stripe_decline(session.session_id)

    def notification(self, fake, gateway, session, ref_id, *, secret=None):
        if fake.stripe_session(session.session_id)["status"] == "open":
            fake.stripe_pay(session.session_id, notify=False)
        event = fake.stripe_session_event(
            session.session_id, "checkout.session.completed"
        )
        return fake.stripe_signed(event, secret=secret)

    def break_transport(self, fake, gateway, kind):
        fake.add_fault("*", kind, times=5, seconds=1.0)

    def receive_unconfirmed(self, fake, gateway, session, ref_id):
        fake.stripe_pay_later(session.session_id)  # a bank debit, processing

    def unknown(self, ref):
        return replace(ref, session_id="cs_test_unknownToTheProvider0000")

    def other_notification(self, fake, gateway, session, ref_id):
        return fake.stripe_signed(fake.stripe_other_event())


class HyperPayDriver:
    def pay(self, fake, gateway, session, ref_id):
        fake.hyperpay_pay(session.session_id, notify=False)

    def decline(self, fake, gateway, session, ref_id):
        fake.hyperpay_pay(session.session_id, "decline", notify=False)

    def notification(self, fake, gateway, session, ref_id, *, secret=None):
        paid = fake.hyperpay_checkout(session.session_id)["payments"]
        payment_id = paid[-1] if paid else self._paid(fake, session)
        # A wrong secret is a wrong AES key: the body does not decrypt.
        key = hashlib.sha256(secret.encode()).hexdigest() if secret else None
        return fake.hyperpay_notification(payment_id, key=key, json_body=True)

    def break_transport(self, fake, gateway, kind):
        fake.add_fault("*", kind, times=5, seconds=1.0)

    def receive_unconfirmed(self, fake, gateway, session, ref_id):
        fake.hyperpay_pay(session.session_id, "waiting", notify=False)

    def other_notification(self, fake, gateway, session, ref_id):
        return fake.hyperpay_notification(kind="REGISTRATION", json_body=True)

    @staticmethod
    def _paid(fake, session) -> str:
        return fake.hyperpay_pay(session.session_id, notify=False)["id"]


DRIVERS = {
    "sandbox": SandboxDriver(),
    "coinpayments": CoinPaymentsDriver(),
    "mpgs": MPGSDriver(),
    "hyperpay": HyperPayDriver(),
    "stripe": StripeDriver(),
}


def test_every_registered_gateway_has_a_contract_driver():
    assert set(DRIVERS) == set(registry.ADAPTERS)


@pytest.fixture(params=sorted(registry.ADAPTERS))
def contract(request, providers, gateway_settings):
    for values in gateway_settings.values():
        if "read_timeout" in values:
            values["read_timeout"] = 0.4
    registry.reset()
    code = request.param
    return code, registry.get_gateway(code), DRIVERS[code], providers


_counter = iter(range(10**6))


def open_checkout(gateway) -> tuple[CheckoutSession, PaymentRef]:
    ref_id = f"contract-{next(_counter):06d}-{datetime.now(UTC):%H%M%S%f}"
    site = "http://127.0.0.1:9"
    session = gateway.create_checkout(
        CheckoutRequest(
            ref_id=ref_id,
            amount=Decimal("19.00"),
            currency="USD",
            email="c@example.com",
            description="Global 3 GB",
            return_url=f"{site}/checkout/return/{ref_id}/",
            cancel_url=f"{site}/checkout/return/{ref_id}/?cancelled=1",
            notify_url=f"{site}/api/webhooks/{gateway.code}/",
            site_url=site,
        )
    )
    ref = PaymentRef(
        ref_id=ref_id,
        transaction_id=session.transaction_id,
        session_id=session.session_id,
        amount=Decimal("19.00"),
        currency="USD",
        expires_at=session.expires_at,
        data={
            **session.data,
            "crypto_amount": str(session.crypto_amount or ""),
            "crypto_currency": session.crypto_currency,
        },
    )
    return session, ref


def test_create_then_pending(contract):
    code, gateway, driver, fake = contract
    session, ref = open_checkout(gateway)
    assert session.payment_url.startswith("http")
    assert session.expires_at is not None
    result = gateway.fetch_status(ref)
    assert result.status == Status.PENDING


def test_paid_is_completed_with_amount_and_currency(contract):
    code, gateway, driver, fake = contract
    session, ref = open_checkout(gateway)
    driver.pay(fake, gateway, session, ref.ref_id)
    result = gateway.fetch_status(ref)
    assert result.status == Status.COMPLETED
    assert (result.amount, result.currency) == (Decimal("19.00"), "USD")
    many = gateway.fetch_status_many([ref])
    assert many[ref.ref_id].status == Status.COMPLETED


def test_declined_is_failed_once_the_session_is_over(contract):
    code, gateway, driver, fake = contract
    session, ref = open_checkout(gateway)
    driver.decline(fake, gateway, session, ref.ref_id)
    over = replace(ref, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    assert gateway.fetch_status(over).status == Status.FAILED


def test_decline_inside_the_session_is_final_or_open(contract):
    """A decline either ends the payment or keeps it open for another attempt."""
    code, gateway, driver, fake = contract
    session, ref = open_checkout(gateway)
    driver.decline(fake, gateway, session, ref.ref_id)
    result = gateway.fetch_status(ref)
    assert result.status in (Status.FAILED, Status.PENDING)
    if result.status == Status.PENDING:
        # Open: the declined attempt is reported, and another may still pay.
        assert result.declined
        driver.pay(fake, gateway, session, ref.ref_id)
        paid = gateway.fetch_status(ref)
        assert (paid.status, paid.amount) == (Status.COMPLETED, Decimal("19.00"))
        assert paid.declined == result.declined and not paid.review


def test_refund_or_not_supported(contract):
    code, gateway, driver, fake = contract
    session, ref = open_checkout(gateway)
    driver.pay(fake, gateway, session, ref.ref_id)
    # As the domain does: what a status asks to keep (StatusResult.data, e.g.
    # the HyperPay entity paid through) travels with every later call.
    paid = gateway.fetch_status(ref)
    ref = replace(ref, data={**ref.data, **paid.data})
    request = RefundRequest(
        ref_id=ref.ref_id,
        refund_id=f"rf_{ref.ref_id[-12:]}",
        amount=Decimal("5.00"),
        currency="USD",
        transaction_id=session.transaction_id,
        data=ref.data,
    )
    if not gateway.supports_refunds:
        with pytest.raises(NotSupported, match="refund"):
            gateway.refund(request)
        return
    assert gateway.fetch_refund(request) is None
    first = gateway.refund(request)
    assert first.status == RefundStatus.SUCCEEDED
    again = gateway.refund(request)  # same id: the provider must not refund twice
    assert again.status == RefundStatus.SUCCEEDED
    found = gateway.fetch_refund(request)
    assert found is not None and found.status == RefundStatus.SUCCEEDED
    assert gateway.fetch_status(ref).amount_refunded == Decimal("5.00")


def test_notification_good_and_bad_signature(contract):
    code, gateway, driver, fake = contract
    session, ref = open_checkout(gateway)
    body, headers = driver.notification(fake, gateway, session, ref.ref_id)
    event = gateway.parse_webhook(body, headers)
    assert event.event_id and event.ref_id == ref.ref_id
    assert event.confirm or event.status == Status.COMPLETED
    body, headers = driver.notification(
        fake, gateway, session, ref.ref_id, secret="wrong"
    )
    with pytest.raises(WebhookRejected):
        gateway.parse_webhook(body, headers)
    with pytest.raises(WebhookRejected):
        gateway.parse_webhook(body, {})


@pytest.mark.parametrize("kind", ["timeout", "garbage", "html", "503", "truncated"])
def test_transport_faults_are_gateway_unavailable(contract, kind):
    code, gateway, driver, fake = contract
    session, ref = open_checkout(gateway)
    driver.break_transport(fake, gateway, kind)
    with pytest.raises(GatewayUnavailable):
        gateway.fetch_status(ref)


def test_notification_bodies_are_json_or_form(contract):
    """What each provider posts is stored as text in WebhookDelivery.body."""
    code, gateway, driver, fake = contract
    session, ref = open_checkout(gateway)
    body, _ = driver.notification(fake, gateway, session, ref.ref_id)
    text = body.decode()
    assert text.startswith("{") and json.loads(text) or "=" in text


# --- edges (issue #8): only drivers that can stage them ---------------------------


def edge(driver, name: str):
    if not hasattr(driver, name):
        pytest.skip(f"this provider has no {name.replace('_', ' ')} case")
    return getattr(driver, name)


def test_money_in_flight_is_pending_and_settling(contract):
    code, gateway, driver, fake = contract
    stage = edge(driver, "receive_unconfirmed")
    session, ref = open_checkout(gateway)
    stage(fake, gateway, session, ref.ref_id)
    for result in (
        gateway.fetch_status(ref),
        gateway.fetch_status_many([ref])[ref.ref_id],
    ):
        assert (result.status, result.settling) == (Status.PENDING, True)
        assert result.review == ""


def test_ended_after_part_of_the_money_arrived_is_flagged(contract):
    code, gateway, driver, fake = contract
    stage = edge(driver, "end_after_part_arrived")
    session, ref = open_checkout(gateway)
    stage(fake, gateway, session, ref.ref_id)
    result = gateway.fetch_status(ref)
    assert result.status in (Status.EXPIRED, Status.FAILED)
    assert result.settling is False and result.review


def test_unknown_to_the_provider_fails_only_after_the_deadline(contract):
    code, gateway, driver, fake = contract
    unknown = edge(driver, "unknown")
    session, ref = open_checkout(gateway)
    with pytest.raises(GatewayUnavailable):
        gateway.fetch_status(unknown(ref))
    late = replace(unknown(ref), expires_at=datetime.now(UTC) - timedelta(minutes=1))
    for result in (
        gateway.fetch_status(late),
        gateway.fetch_status_many([late])[ref.ref_id],
    ):
        assert result.status == Status.FAILED and result.message


def test_notifications_about_other_things_are_verified_but_name_nothing(contract):
    code, gateway, driver, fake = contract
    stage = edge(driver, "other_notification")
    session, ref = open_checkout(gateway)
    body, headers = stage(fake, gateway, session, ref.ref_id)
    event = gateway.parse_webhook(body, headers)
    assert event.event_id and event.status is None and not event.confirm
    assert (event.ref_id, event.transaction_id) == ("", "")
    with pytest.raises(WebhookRejected):
        gateway.parse_webhook(body, {})


# --- webhook secret rotation (issue 22, case 10) --------------------------------------

# Each gateway's webhook secret and its *_PREVIOUS companion, by settings key.
SECRET_KEYS = {
    "sandbox": ("secret", "secret_previous"),
    "coinpayments": ("ipn_secret", "ipn_secret_previous"),
    "mpgs": ("webhook_secret", "webhook_secret_previous"),
    "hyperpay": ("webhook_key", "webhook_key_previous"),
    "stripe": ("webhook_secret", "webhook_secret_previous"),
}


def test_every_gateway_names_its_previous_webhook_secret():
    assert set(SECRET_KEYS) == set(registry.ADAPTERS)


def _as_setting(code: str, secret: str) -> str:
    # The HyperPay driver turns a secret into its AES key the same way.
    return hashlib.sha256(secret.encode()).hexdigest() if code == "hyperpay" else secret


def test_a_rotated_secret_verifies_with_the_current_then_the_previous(
    contract, gateway_settings
):
    code, _, driver, fake = contract
    current_key, previous_key = SECRET_KEYS[code]
    gateway_settings[code][current_key] = _as_setting(code, "the-new-secret")
    gateway_settings[code][previous_key] = _as_setting(code, "the-old-secret")
    registry.reset()
    gateway = registry.get_gateway(code)
    session, ref = open_checkout(gateway)

    for secret, used in (("the-new-secret", "current"), ("the-old-secret", "previous")):
        body, headers = driver.notification(
            fake, gateway, session, ref.ref_id, secret=secret
        )
        assert gateway.parse_webhook(body, headers).secret_used == used
        # A stored delivery read again was verified when it arrived.
        assert gateway.parse_webhook(body, headers, verified=True).secret_used == ""
    body, headers = driver.notification(
        fake, gateway, session, ref.ref_id, secret="neither-secret"
    )
    with pytest.raises(WebhookRejected):
        gateway.parse_webhook(body, headers)


def test_without_a_previous_secret_the_old_one_is_rejected(contract, gateway_settings):
    code, _, driver, fake = contract
    current_key, previous_key = SECRET_KEYS[code]
    gateway_settings[code][current_key] = _as_setting(code, "the-new-secret")
    gateway_settings[code][previous_key] = ""
    registry.reset()
    gateway = registry.get_gateway(code)
    session, ref = open_checkout(gateway)
    body, headers = driver.notification(
        fake, gateway, session, ref.ref_id, secret="the-old-secret"
    )
    with pytest.raises(WebhookRejected):
        gateway.parse_webhook(body, headers)
