"""Forged webhooks cannot fill the database; secrets rotate without rejections.

Issue 22, cases 1 and 10: a delivery that fails verification keeps only its
first 2 KiB (with its length and a SHA-256 of all of it); failed
verifications are limited per client IP (429 JSON, nothing stored) without
ever refusing a delivery that verifies; rejected deliveries are pruned after
REJECTED_DELIVERY_RETENTION_DAYS; a `*_PREVIOUS` secret still verifies, and
the delivery says which one did.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from gateways import registry
from gateways.sandbox import SIGNATURE_HEADER, sign
from payments import services, tasks
from payments.models import Payment, WebhookDelivery

URL = "/api/webhooks/sandbox/"
Outcome = WebhookDelivery.Outcome


@pytest.fixture
def payment(plan, sandbox):
    return services.payment_create(
        plan=plan,
        gateway_code="sandbox",
        email="ana@example.com",
        site_url="http://testserver",
    )


def signed_notification(sandbox, payment, choice="paid"):
    token = payment.gateway_session_id
    return sandbox.notification(token, sandbox.charge(token), choice)


def post(client, body: bytes, headers: dict, *, ip: str = "203.0.113.7"):
    extra = {k: v for k, v in headers.items() if k != "Content-Type"}
    return client.post(
        URL, body, content_type="application/json", headers=extra, REMOTE_ADDR=ip
    )


def forged(size: int = 64 * 1024 - 1) -> tuple[bytes, dict]:
    body = b'{"event_id": "forged", "pad": "' + b"A" * (size - 34) + b'"}'
    return body, {SIGNATURE_HEADER: "t=1,v1=00"}


@pytest.fixture
def failure_limit(settings):
    settings.RATE_LIMIT_WEBHOOK_FAILURES = "3/m"
    cache.clear()
    yield settings
    cache.clear()


# --- case 1: what a forged delivery leaves behind -----------------------------------


@pytest.mark.django_db
def test_a_forged_delivery_keeps_its_first_2_kib_its_length_and_a_hash(client, sandbox):
    body, headers = forged()
    response = post(client, body, headers)

    assert response.status_code == 403
    assert response.json()["error"].startswith("rejected:")
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == Outcome.REJECTED
    assert delivery.signature_valid is False
    assert delivery.body.encode() == body[:2048]
    assert delivery.body_length == len(body) > 60_000
    assert delivery.body_sha256 == hashlib.sha256(body).hexdigest()
    assert delivery.body_truncated


@pytest.mark.django_db
def test_a_verified_delivery_is_kept_whole_and_can_be_reprocessed(
    client, sandbox, payment
):
    body, headers = signed_notification(sandbox, payment)
    # Larger than what a rejected delivery keeps, still signed.
    padded = json.dumps(json.loads(body) | {"note": "x" * 5000}).encode()
    headers = {**headers, SIGNATURE_HEADER: sign(sandbox.secret, padded)}

    assert post(client, padded, headers).status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert delivery.body.encode() == padded
    assert delivery.body_length is None and not delivery.body_truncated
    outcome = services.webhook_reprocess(delivery_id=delivery.pk)
    assert outcome.intake == services.Intake.ACCEPTED
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED


@pytest.mark.django_db
def test_failed_verifications_past_the_limit_get_429_json_and_store_nothing(
    client, sandbox, failure_limit
):
    body, headers = forged(10_000)
    answers = [post(client, body, headers).status_code for _ in range(5)]

    assert answers == [403, 403, 403, 429, 429]
    throttled = post(client, body, headers)
    assert throttled.status_code == 429
    assert throttled["Content-Type"] == "application/json"
    assert throttled.json()["error"].startswith("too many failed verifications")
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert WebhookDelivery.objects.count() == 3
    # Another address has its own count.
    assert post(client, body, headers, ip="198.51.100.9").status_code == 403


@pytest.mark.django_db
def test_the_failure_limit_never_refuses_a_verified_delivery(
    client, sandbox, failure_limit, payment
):
    body, headers = forged(1000)
    for _ in range(4):
        post(client, body, headers)
    assert post(client, body, headers).status_code == 429

    good_body, good_headers = signed_notification(sandbox, payment)
    response = post(client, good_body, good_headers)

    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    # Verified deliveries do not count as failures either.
    for _ in range(5):
        assert post(client, good_body, good_headers).status_code == 200


@pytest.mark.django_db
def test_rejected_deliveries_past_their_retention_are_pruned(
    client, sandbox, payment, settings
):
    settings.REJECTED_DELIVERY_RETENTION_DAYS = 30
    body, headers = forged(3000)
    post(client, body, headers)  # old, rejected: pruned
    good_body, good_headers = signed_notification(sandbox, payment)
    post(client, good_body, good_headers)  # old, verified: kept
    invalid = json.dumps(json.loads(good_body) | {"event_id": "nul\u0000"}).encode()
    post(client, invalid, {SIGNATURE_HEADER: sign(sandbox.secret, invalid)})
    assert list(
        WebhookDelivery.objects.order_by("pk").values_list("outcome", "signature_valid")
    ) == [(Outcome.REJECTED, False), (Outcome.APPLIED, True), (Outcome.REJECTED, True)]
    WebhookDelivery.objects.update(received_at=timezone.now() - timedelta(days=31))
    post(client, body, headers)  # recent, rejected: kept

    assert tasks.prune_rejected_deliveries() == 1

    left = WebhookDelivery.objects.order_by("pk").values_list(
        "outcome", "signature_valid"
    )
    assert list(left) == [
        (Outcome.APPLIED, True),
        (Outcome.REJECTED, True),  # verified, refused for its content: kept whole
        (Outcome.REJECTED, False),
    ]


@pytest.mark.django_db
def test_setup_schedules_prunes_rejected_deliveries():
    call_command("setup_schedules")
    schedule = Schedule.objects.get(name="prune-rejected-deliveries")
    assert schedule.func == "payments.tasks.prune_rejected_deliveries"
    assert schedule.repeats == -1 and schedule.minutes == 60


# --- case 10: rotating a webhook secret ----------------------------------------------


@pytest.fixture
def rotated(gateway_settings, sandbox):
    gateway_settings["sandbox"]["secret"] = "the-new-secret"
    gateway_settings["sandbox"]["secret_previous"] = "the-old-secret"
    registry.reset()
    return registry.get_gateway("sandbox")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("secret", "used"), [("the-new-secret", "current"), ("the-old-secret", "previous")]
)
def test_a_delivery_signed_with_either_secret_is_applied_and_says_which(
    client, rotated, payment, admin_client, secret, used
):
    body, headers = signed_notification(rotated, payment)
    headers = {**headers, SIGNATURE_HEADER: sign(secret, body)}

    assert post(client, body, headers).status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == Outcome.APPLIED
    assert delivery.secret_used == used
    page = admin_client.get(
        f"/admin/payments/webhookdelivery/{delivery.pk}/change/"
    ).content.decode()
    assert f"{used} secret" in page


@pytest.mark.django_db
def test_a_delivery_signed_with_neither_secret_is_rejected(client, rotated, payment):
    body, headers = signed_notification(rotated, payment)
    headers = {**headers, SIGNATURE_HEADER: sign("a-third-secret", body)}

    assert post(client, body, headers).status_code == 403
    delivery = WebhookDelivery.objects.get()
    assert delivery.secret_used == ""
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
