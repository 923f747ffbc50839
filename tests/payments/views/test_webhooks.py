"""Webhook ingestion: stored raw, verified on the raw body, applied once."""

from __future__ import annotations

import json

import pytest

from gateways.sandbox import SIGNATURE_HEADER, sign
from payments import services
from payments.models import EventKind, Payment, WebhookDelivery

URL = "/api/webhooks/sandbox/"


@pytest.fixture
def payment(plan, sandbox):
    return services.payment_create(
        plan=plan,
        gateway_code="sandbox",
        email="ana@example.com",
        site_url="http://testserver",
    )


def notification(sandbox, payment, choice="paid"):
    token = payment.gateway_session_id
    return sandbox.notification(token, sandbox.charge(token), choice)


def post(client, body, headers):
    extra = {k: v for k, v in headers.items() if k != "Content-Type"}
    return client.post(URL, body, content_type="application/json", headers=extra)


@pytest.mark.django_db
def test_valid_notification_completes_and_is_stored(client, sandbox, payment):
    body, headers = notification(sandbox, payment)
    response = post(client, body, headers)
    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    delivery = WebhookDelivery.objects.get()
    assert delivery.signature_valid is True
    assert delivery.outcome == WebhookDelivery.Outcome.APPLIED
    assert delivery.payment == payment
    assert delivery.body == body.decode()
    assert delivery.headers[SIGNATURE_HEADER] == "[redacted]"


@pytest.mark.django_db
def test_duplicate_notification_is_2xx_with_one_transition(client, sandbox, payment):
    body, headers = notification(sandbox, payment)
    assert post(client, body, headers).status_code == 200
    assert post(client, body, headers).status_code == 200
    outcomes = list(
        WebhookDelivery.objects.order_by("pk").values_list("outcome", flat=True)
    )
    assert outcomes == ["APPLIED", "DUPLICATE"]
    assert payment.events.filter(kind=EventKind.STATUS_CHANGE).count() == 1
    assert payment.events.filter(kind=EventKind.WEBHOOK).count() == 1


def _tampered(sandbox, payment):
    body, headers = notification(sandbox, payment)
    changed = json.loads(body) | {"amount": "0.01"}
    yield "body changed after signing", json.dumps(changed).encode(), headers
    yield (
        "wrong secret",
        body,
        {**headers, SIGNATURE_HEADER: sign("not-the-secret", body)},
    )
    yield "missing header", body, {"Content-Type": "application/json"}
    yield "garbage header", body, {SIGNATURE_HEADER: "t=abc,v1=zz"}
    yield (
        "old timestamp",
        body,
        {SIGNATURE_HEADER: sign(sandbox.secret, body, 1_000_000)},
    )


@pytest.mark.django_db
def test_tampered_notifications_are_4xx_and_change_nothing(client, sandbox, payment):
    cases = list(_tampered(sandbox, payment))
    for label, body, headers in cases:
        response = post(client, body, headers)
        assert response.status_code == 403, label
        assert "rejected" in response.json()["error"], label
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
    assert not payment.events.filter(kind=EventKind.STATUS_CHANGE).exists()
    stored = WebhookDelivery.objects.all()
    assert stored.count() == len(cases)
    assert set(stored.values_list("signature_valid", flat=True)) == {False}
    assert set(stored.values_list("outcome", flat=True)) == {"REJECTED"}


@pytest.mark.django_db
def test_malformed_signed_body_is_4xx_not_500(client, sandbox):
    body = b'{"event_id": 1'
    response = post(client, body, {SIGNATURE_HEADER: sign(sandbox.secret, body)})
    assert response.status_code == 403
    assert "malformed" in response.json()["error"]


@pytest.mark.django_db
def test_a_verified_notification_for_an_unknown_payment_is_kept_and_acknowledged(
    client, sandbox
):
    body = json.dumps(
        {
            "event_id": "e1",
            "ref_id": "unknown-ref-000000",
            "token": "t",
            "status": "paid",
            "amount": "1.00",
            "currency": "USD",
        }
    ).encode()
    response = post(client, body, {SIGNATURE_HEADER: sign(sandbox.secret, body)})
    # 2xx, so the provider stops retrying; kept for a person to look at.
    assert response.status_code == 200
    assert WebhookDelivery.objects.get().outcome == WebhookDelivery.Outcome.UNMATCHED
    # An unverified one is still refused.
    response = post(client, body, {SIGNATURE_HEADER: "t=1,v1=00"})
    assert response.status_code in (400, 403)


@pytest.mark.django_db
def test_unconfigured_gateway_webhook_is_404_and_stored(client, sandbox):
    response = client.post(
        "/api/webhooks/mpgs/", b"{}", content_type="application/json"
    )
    assert response.status_code == 404
    delivery = WebhookDelivery.objects.get()
    assert delivery.gateway == "mpgs" and delivery.outcome == "REJECTED"


@pytest.mark.django_db
def test_reprocess_of_a_stored_delivery_is_a_duplicate(client, sandbox, payment):
    body, headers = notification(sandbox, payment)
    post(client, body, headers)
    delivery = WebhookDelivery.objects.get()
    outcome = services.webhook_reprocess(delivery_id=delivery.pk)
    assert outcome.intake == services.Intake.ACCEPTED
    assert payment.events.filter(kind=EventKind.STATUS_CHANGE).count() == 1


@pytest.mark.django_db
def test_garbage_to_every_webhook_url_is_4xx_never_500(client, providers):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    header_names = st.sampled_from(
        [
            "HMAC",
            "X-Notification-Secret",
            "X-Notification-Id",
            "X-Sandbox-Signature",
            "X-Other",
        ]
    )

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        code=st.sampled_from(["sandbox", "coinpayments", "mpgs", "nope"]),
        body=st.binary(max_size=300),
        headers=st.dictionaries(header_names, st.text(max_size=40), max_size=3),
        content_type=st.sampled_from(
            ["application/json", "application/x-www-form-urlencoded", "text/plain"]
        ),
    )
    def check(code, body, headers, content_type):
        safe = {
            k: v.encode("latin-1", "replace").decode("latin-1")
            for k, v in headers.items()
        }
        response = client.post(
            f"/api/webhooks/{code}/", body, content_type=content_type, headers=safe
        )
        assert 400 <= response.status_code < 500, response.content
        assert response.json()["error"]

    check()
    assert not Payment.objects.filter(status=Payment.Status.COMPLETED).exists()
    assert (
        WebhookDelivery.objects.exclude(outcome__in=["REJECTED", "UNMATCHED"]).count()
        == 0
    )


# --- bounded intake ------------------------------------------------------------


@pytest.mark.django_db
def test_a_notification_to_an_unknown_gateway_stores_nothing(client):
    response = client.post(
        "/api/webhooks/no-such-gateway/",
        b"x" * 60_000,
        content_type="application/octet-stream",
    )
    assert response.status_code == 404
    assert response.json()["error"] == "no such gateway"
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_an_unconfigured_gateway_keeps_two_kib_and_a_hash(client):
    import hashlib

    body = b'{"txn_id": "abc"}' + b" " * 50_000
    response = client.post(
        "/api/webhooks/coinpayments/", body, content_type="application/json"
    )
    assert response.status_code == 404
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == WebhookDelivery.Outcome.REJECTED
    assert len(delivery.body.encode()) == 2048
    assert delivery.body_sha256 == hashlib.sha256(body).hexdigest()
    assert delivery.body_length == len(body)
    assert "gateway not configured" in delivery.error


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["sandbox", "no-such-gateway"])
def test_bodies_over_64_kib_are_413_json_and_not_stored(client, sandbox, code):
    response = client.post(
        f"/api/webhooks/{code}/",
        b"{" + b" " * (64 * 1024) + b"}",
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response.json()["error"] == "notification body is over 65536 bytes"
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_a_declared_length_over_the_cap_is_refused_before_reading(client, sandbox):
    """The Content-Length alone decides: the body is never read."""
    from io import BytesIO

    from django.core.handlers.wsgi import WSGIRequest

    from payments.views.webhooks import webhook

    stream = BytesIO(b"{}")
    request = WSGIRequest(
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": URL,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(100 * 1024),
            "wsgi.input": stream,
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
        }
    )
    response = webhook(request, code="sandbox")
    assert response.status_code == 413
    assert stream.tell() == 0
    assert not WebhookDelivery.objects.exists()
