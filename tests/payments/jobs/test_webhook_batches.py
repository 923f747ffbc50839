"""WEBHOOK_APPLY=queued: store and acknowledge, then apply in batches, exactly once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone
from django_q.brokers import get_broker

from payments import services
from payments.models import EventKind, Payment, PaymentEvent, WebhookDelivery
from payments.services import webhook_batches
from payments.services.webhooks import APPLY_KEY

pytestmark = pytest.mark.django_db
Outcome = WebhookDelivery.Outcome


@pytest.fixture
def queued(settings, sandbox):
    settings.WEBHOOK_APPLY = "queued"
    cache.delete(APPLY_KEY)
    get_broker().purge_queue()
    yield sandbox
    cache.delete(APPLY_KEY)
    get_broker().purge_queue()


def queued_tasks() -> int:
    """Tasks waiting in the cluster's broker (ORM or Redis)."""
    return get_broker().queue_size()


def notify(client, sandbox, payment, choice="paid", notification=None):
    body, headers = notification or sandbox.choose(payment.gateway_session_id, choice)
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    return client.post(
        "/api/webhooks/sandbox/", body, content_type="application/json", headers=headers
    )


def make(plan, count: int) -> list[Payment]:
    return [
        services.payment_create(
            plan=plan, gateway_code="sandbox", email=f"q{i}@example.com", site_url="h"
        )
        for i in range(count)
    ]


def test_a_notification_is_stored_acknowledged_then_applied_by_the_task(
    client, plan, queued
):
    payments = make(plan, 3)
    for payment in payments:
        assert notify(client, queued, payment).status_code == 200
    # Acknowledged, not applied yet; one task queued for all of them.
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {
        Outcome.RECEIVED
    }
    assert not Payment.objects.filter(status=Payment.Status.COMPLETED).exists()
    assert queued_tasks() == 1

    assert services.webhooks_apply_received() == 3

    assert Payment.objects.filter(status=Payment.Status.COMPLETED).count() == 3
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {
        Outcome.APPLIED
    }
    assert PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).count() == 3
    assert PaymentEvent.objects.filter(kind=EventKind.WEBHOOK).count() == 3
    assert not WebhookDelivery.objects.filter(payment__isnull=True).exists()
    # The task cleared its key: the next notification queues a new one.
    assert cache.get(APPLY_KEY) is None


def test_the_task_lingers_and_takes_later_notifications_without_new_tasks(
    client, plan, queued, monkeypatch
):
    first, second = make(plan, 2)
    notify(client, queued, first)
    assert queued_tasks() == 1
    pauses = []

    def pause(seconds):
        pauses.append(seconds)
        if len(pauses) == 1:  # arrives while the applier holds the key
            assert notify(client, queued, second).status_code == 200
            assert cache.get(APPLY_KEY) is not None

    monkeypatch.setattr(webhook_batches, "sleep", pause)

    assert services.webhooks_apply_received(linger=0.1) == 2

    # A pause after each short batch; the second notification queued no task.
    assert pauses == [0.1, 0.1]
    assert queued_tasks() == 1
    assert Payment.objects.filter(status=Payment.Status.COMPLETED).count() == 2
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {
        Outcome.APPLIED
    }
    # Released before the last look: the next notification queues a task.
    assert cache.get(APPLY_KEY) is None


def test_a_resend_is_a_duplicate_at_once_and_applies_nothing(client, plan, queued):
    (payment,) = make(plan, 1)
    notification = queued.choose(payment.gateway_session_id, "paid")
    notify(client, queued, payment, notification=notification)
    again = notify(client, queued, payment, notification=notification)

    assert again.status_code == 200
    outcomes = sorted(WebhookDelivery.objects.values_list("outcome", flat=True))
    assert outcomes == [Outcome.DUPLICATE, Outcome.RECEIVED]
    services.webhooks_apply_received()
    services.webhooks_apply_received()
    assert PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).count() == 1


def test_two_reports_for_one_payment_in_one_batch_apply_in_order(client, plan, queued):
    (payment,) = make(plan, 1)
    body, headers = queued.choose(payment.gateway_session_id, "paid")
    for event_id in ("evt-1", "evt-2"):
        delivery = WebhookDelivery.objects.create(
            gateway="sandbox",
            headers=headers,
            body=body.decode(),
            signature_valid=True,
            provider_event_id=event_id,
            outcome=Outcome.RECEIVED,
            payment=payment,
        )

    services.webhooks_apply_received()

    delivery.refresh_from_db()
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {
        Outcome.APPLIED
    }
    assert PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).count() == 1
    assert PaymentEvent.objects.filter(kind=EventKind.WEBHOOK).count() == 2


def test_an_unknown_payment_is_unmatched_after_the_batch(client, plan, queued):
    (payment,) = make(plan, 1)
    notification = queued.choose(payment.gateway_session_id, "paid")
    Payment.objects.filter(pk=payment.pk).update(ref_id="gone-gone-gone-gone")

    assert notify(client, queued, payment, notification=notification).status_code == 200
    services.webhooks_apply_received()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.provider_event_id) == (Outcome.UNMATCHED, None)
    assert not PaymentEvent.objects.filter(kind=EventKind.WEBHOOK).exists()


def test_the_reconciler_applies_deliveries_a_lost_task_left(client, plan, queued):
    (payment,) = make(plan, 1)
    notify(client, queued, payment)
    get_broker().purge_queue()  # the task was lost
    WebhookDelivery.objects.update(received_at=timezone.now() - timedelta(minutes=1))

    services.reconcile_cycle(trigger="test")

    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    assert WebhookDelivery.objects.get().outcome == Outcome.APPLIED


def test_a_forged_notification_is_rejected_and_never_queued(client, plan, queued):
    (payment,) = make(plan, 1)
    body, headers = queued.choose(payment.gateway_session_id, "paid")
    headers = {
        k: "0" * 64 if "signature" in k.lower() else v for k, v in headers.items()
    }
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    response = client.post(
        "/api/webhooks/sandbox/", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 403
    assert WebhookDelivery.objects.get().outcome == Outcome.REJECTED
    assert queued_tasks() == 0


def test_a_queued_mpgs_notification_is_confirmed_and_applied_once(
    client, providers, settings
):
    """MPGS bodies are only hints: the task confirms with Retrieve Order."""
    from payments.models import Plan

    settings.WEBHOOK_APPLY = "queued"
    cache.delete(APPLY_KEY)
    plan = Plan.objects.create(
        code="q-eur", name="Q", price=Decimal("24.00"), currency="EUR"
    )
    payment = services.payment_create(
        plan=plan, gateway_code="mpgs", email="m@example.com", site_url="http://t"
    )
    providers.mpgs_pay(payment.ref_id)
    body, headers = providers.mpgs_notification(payment.ref_id, notification_id="n-q")
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    post = {"content_type": "application/json", "headers": headers}

    assert client.post("/api/webhooks/mpgs/", body, **post).status_code == 200
    assert client.post("/api/webhooks/mpgs/", body, **post).status_code == 200
    orders = providers.count("mpgs:order")
    services.webhooks_apply_received()

    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    assert providers.count("mpgs:order") == orders + 1
    outcomes = sorted(WebhookDelivery.objects.values_list("outcome", flat=True))
    assert outcomes == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert payment.events.filter(kind=EventKind.STATUS_CHANGE).count() == 1
