"""GET /health/ and GET /metrics."""

from __future__ import annotations

import socket
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from payments.models import (
    Payment,
    ReconciliationRun,
    Refund,
    WebhookDelivery,
)
from tests.factories import payment_in

TOKEN = "metrics-token-for-tests-0123456789"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.django_db
def test_health_is_200_with_each_check_and_the_reconciler_lag(client):
    ReconciliationRun.objects.create(trigger="schedule")  # never finished
    finished = ReconciliationRun.objects.create(trigger="schedule", duration_ms=1500)
    ReconciliationRun.objects.filter(pk=finished.pk).update(
        finished_at=timezone.now() - timedelta(minutes=3)
    )
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}
    assert 170 <= body["last_reconciliation_age_seconds"] <= 200
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_health_without_any_reconciliation_says_null(client):
    assert client.get("/health/").json()["last_reconciliation_age_seconds"] is None


@pytest.mark.django_db
def test_health_is_503_when_the_cache_is_down(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
        }
    }
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["cache"].startswith("failed: ")
    assert body["checks"]["database"] == "ok"
    assert int(response["Retry-After"]) > 0


@pytest.mark.django_db
def test_health_is_503_when_the_redis_broker_is_down(client, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", f"redis://127.0.0.1:{closed_port()}/0")
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "failed: ConnectionError"


@pytest.mark.django_db(transaction=True)
def test_health_is_503_when_the_database_is_down():
    from tests.payments.views.test_api_errors import database_down

    client = Client(raise_request_exception=False)
    with database_down():
        response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"].startswith("failed: ")
    assert body["status"] == "unavailable"


# --- /metrics ------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_is_404_without_a_token_setting(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert (
        client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"]
)
def test_metrics_refuses_a_wrong_token(client, settings, auth):
    settings.METRICS_TOKEN = TOKEN
    headers = {"Authorization": auth} if auth else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert b"payments_" not in response.content


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.django_db
def test_metrics_report_the_database_in_prometheus_format(client, settings, plan):
    settings.METRICS_TOKEN = TOKEN
    now = timezone.now()

    def payment(gateway, status, age, **extra):
        made = payment_in(
            status,
            plan=plan,
            email="a@b.io",
            amount=Decimal("10.00"),
            currency="EUR",
            payment_gateway=gateway,
        )
        Payment.objects.filter(pk=made.pk).update(date_created=now - age, **extra)
        return made

    payment("mpgs", "PENDING", timedelta(minutes=1))
    payment("mpgs", "PENDING", timedelta(minutes=30))
    payment("mpgs", "PENDING", timedelta(days=2))
    payment("coinpayments", "PENDING", timedelta(hours=3))
    paid = payment("mpgs", "COMPLETED", timedelta(hours=1), needs_review=True)
    payment("sandbox", "FAILED", timedelta(minutes=2))
    Refund.objects.create(payment=paid, amount=Decimal("1.00"), status="PENDING")
    for outcome in ("APPLIED", "APPLIED", "REJECTED"):
        WebhookDelivery.objects.create(gateway="mpgs", outcome=outcome)
    run = ReconciliationRun.objects.create(duration_ms=2500, errors=1)
    ReconciliationRun.objects.filter(pk=run.pk).update(finished_at=now)

    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    got = samples(response.content.decode())

    def value(name, **labels):
        return got[(name, tuple(sorted(labels.items())))]

    assert value("payments_pending", gateway="mpgs", age="lt_5m") == 1
    assert value("payments_pending", gateway="mpgs", age="5m_1h") == 1
    assert value("payments_pending", gateway="mpgs", age="1h_24h") == 0
    assert value("payments_pending", gateway="mpgs", age="gt_24h") == 1
    assert value("payments_pending", gateway="coinpayments", age="1h_24h") == 1
    assert value("payments_needing_review") == 1
    assert value("refunds_pending") == 1
    assert value("payments_created_total", gateway="mpgs", status="PENDING") == 3
    assert value("payments_created_total", gateway="sandbox", status="FAILED") == 1
    assert value("webhook_deliveries_total", gateway="mpgs", outcome="APPLIED") == 2
    assert value("webhook_deliveries_total", gateway="mpgs", outcome="REJECTED") == 1
    assert value("reconciliation_last_success_timestamp_seconds") == pytest.approx(
        now.timestamp(), abs=1
    )
    assert value("reconciliation_last_duration_seconds") == 2.5


@pytest.mark.django_db
def test_metrics_queries_stay_few_whatever_the_volume(
    client, settings, plan, django_assert_max_num_queries
):
    settings.METRICS_TOKEN = TOKEN
    for n in range(30):
        Payment.objects.create(
            plan=plan,
            email="a@b.io",
            amount=Decimal("1"),
            currency="EUR",
            payment_gateway=("mpgs", "sandbox", "coinpayments")[n % 3],
        )
    # Six aggregates, one for how recent completions were learned, five for
    # the alerting figures, and the health checks' own: SELECT 1, the broker's
    # table, and the database cache's five (none with Redis in production).
    with django_assert_max_num_queries(21):
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
