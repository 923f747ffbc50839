"""Refunds: balance checks, idempotent retries, and two operators at once."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from gateways import registry
from payments import services
from payments.exceptions import RefundNotAllowed
from payments.models import EventKind, Payment, Refund
from payments.tasks import reconcile_refunds

OPERATOR = services.Actor("admin")


def paid_payment(plan, sandbox) -> Payment:
    payment = services.payment_create(
        plan=plan, gateway_code="sandbox", email="r@example.com", site_url="http://t"
    )
    body, headers = sandbox.choose(payment.gateway_session_id, "paid")
    services.webhook_ingest(
        gateway_code="sandbox", body=body, headers=headers, remote_addr=None
    )
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    return payment


@pytest.mark.django_db
def test_partial_then_full_refund(plan, sandbox, refund_calls):
    payment = paid_payment(plan, sandbox)
    first = services.refund_request(
        payment_id=payment.pk, amount=Decimal("10"), actor=OPERATOR
    )
    payment.refresh_from_db()
    assert first.status == Refund.Status.SUCCEEDED
    assert (payment.status, payment.amount_refunded) == (
        "PARTIALLY_REFUNDED",
        Decimal("10"),
    )
    services.refund_request(payment_id=payment.pk, amount=Decimal("14"), actor=OPERATOR)
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("REFUNDED", Decimal("24"))
    assert len(refund_calls) == 2
    assert payment.events.filter(kind=EventKind.REFUND_SUCCEEDED).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["24.01", "0", "-1"])
def test_over_or_non_positive_refund_is_refused(plan, sandbox, refund_calls, amount):
    payment = paid_payment(plan, sandbox)
    with pytest.raises(RefundNotAllowed, match="at most 24.00 EUR|positive"):
        services.refund_request(
            payment_id=payment.pk, amount=Decimal(amount), actor=OPERATOR
        )
    assert not Refund.objects.exists() and refund_calls == []


@pytest.mark.django_db
def test_unpaid_payment_cannot_be_refunded(plan, sandbox):
    payment = services.payment_create(
        plan=plan, gateway_code="sandbox", email="r@example.com", site_url="http://t"
    )
    with pytest.raises(RefundNotAllowed, match="pending payment cannot"):
        services.refund_request(
            payment_id=payment.pk, amount=Decimal("1"), actor=OPERATOR
        )


@pytest.mark.django_db
def test_manual_refund_is_recorded_without_the_provider(plan, sandbox, refund_calls):
    payment = paid_payment(plan, sandbox)
    refund = services.refund_request(
        payment_id=payment.pk,
        amount=Decimal("24"),
        actor=OPERATOR,
        manual=True,
        reason="sent coins back",
    )
    payment.refresh_from_db()
    assert refund.status == Refund.Status.MANUAL
    assert payment.status == "REFUNDED" and refund_calls == []


@pytest.mark.django_db
def test_lost_answer_is_retried_once_without_double_refund(
    plan, sandbox, refund_calls, gateway_settings
):
    payment = paid_payment(plan, sandbox)
    gateway_settings["sandbox"]["fail"] = "refund"
    registry.reset()
    refund = services.refund_request(
        payment_id=payment.pk, amount=Decimal("5"), actor=OPERATOR
    )
    assert refund.status == Refund.Status.PENDING and refund.attempts == 1
    assert payment.events.filter(kind=EventKind.GATEWAY_ERROR).exists()
    # While one is pending, the balance counts it: no over-refund by retrying.
    with pytest.raises(RefundNotAllowed, match="at most 19.00 EUR"):
        services.refund_request(
            payment_id=payment.pk, amount=Decimal("20"), actor=OPERATOR
        )
    gateway_settings["sandbox"]["fail"] = ""
    registry.reset()
    Refund.objects.filter(pk=refund.pk).update(
        date_created=refund.date_created.replace(year=2020)
    )
    assert reconcile_refunds() == 1
    assert reconcile_refunds() == 0
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    # The retry looked the refund up first, then sent it with the same id.
    assert refund_calls == [refund.idempotency_id] * 2
    assert sandbox.charge(payment.gateway_session_id)["refunded"] == "5.000"


@pytest.mark.django_db(transaction=True)
def test_two_operators_cannot_over_refund(plan, sandbox, refund_calls):
    """Eight concurrent full refunds: one passes, the provider is called once."""
    payment = paid_payment(plan, sandbox)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def operator():
        try:
            barrier.wait()
            services.refund_request(
                payment_id=payment.pk, amount=Decimal("24"), actor=OPERATOR
            )
            outcomes.append("ok")
        except RefundNotAllowed:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=operator) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["ok"] + ["refused"] * 7
    assert len(refund_calls) == 1
    payment.refresh_from_db()
    assert payment.amount_refunded == Decimal("24") and payment.status == "REFUNDED"
    assert Refund.objects.count() == 1
    assert payment.events.filter(kind=EventKind.REFUND_REQUESTED).count() == 1


@pytest.mark.django_db
def test_the_refund_request_carries_the_payments_gateway_data(
    plan, sandbox, monkeypatch
):
    """What the provider asked to keep (e.g. the entity paid through) reaches it."""
    payment = paid_payment(plan, sandbox)
    Payment.objects.filter(pk=payment.pk).update(
        gateway_data={**payment.gateway_data, "entity_id": "e-mada"}
    )
    seen = []
    original = type(sandbox).refund

    def recording(self, request):
        seen.append(dict(request.data))
        return original(self, request)

    monkeypatch.setattr(type(sandbox), "refund", recording)
    services.refund_request(payment_id=payment.pk, amount=Decimal("5"), actor=OPERATOR)

    assert [data["entity_id"] for data in seen] == ["e-mada"]
