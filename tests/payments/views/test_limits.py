"""Per-client-IP rate limits of the public API and who the client is."""

from __future__ import annotations

import json
import os

import pytest
import requests
from django.test import RequestFactory

from payments.models import Payment
from payments.views.common import client_ip
from payments.views.limits import Rate, parse_rate

CREATE = "/api/payments/"


def create(client, plan, ip="203.0.113.7", **headers):
    return client.post(
        CREATE,
        json.dumps(
            {"plan": plan.code, "payment_gateway": "sandbox", "email": "a@example.com"}
        ),
        content_type="application/json",
        REMOTE_ADDR=ip,
        headers=headers,
    )


@pytest.mark.django_db
def test_creation_is_limited_per_client_ip_with_429_json(
    client, plan, sandbox, rate_limits
):
    codes = [create(client, plan).status_code for _ in range(3)]
    refused = create(client, plan)

    assert codes == [201, 201, 201]
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    assert "too many requests" in refused.json()["error"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    # A refused request opens no provider transaction and writes no payment.
    assert Payment.objects.count() == 3
    # Another client is counted on its own.
    assert create(client, plan, ip="198.51.100.1").status_code == 201


@pytest.mark.django_db
def test_status_polls_are_limited_separately(client, plan, sandbox, rate_limits):
    ref_id = create(client, plan).json()["ref_id"]
    url = f"/api/payments/status/{ref_id}/"
    codes = [client.get(url, REMOTE_ADDR="203.0.113.7").status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    # Creation has its own budget: one create was used, two are left.
    assert create(client, plan).status_code == 201


@pytest.mark.django_db
def test_an_empty_setting_turns_the_limit_off(client, plan, sandbox, rate_limits):
    rate_limits.RATE_LIMIT_CREATE = ""
    assert {create(client, plan).status_code for _ in range(6)} == {201}


@pytest.mark.django_db
def test_forwarded_for_is_ignored_unless_proxies_are_trusted(
    client, plan, sandbox, rate_limits
):
    # Spoofed X-Forwarded-For values do not escape the limit of REMOTE_ADDR.
    codes = [
        create(client, plan, **{"X-Forwarded-For": f"10.0.0.{n}"}).status_code
        for n in range(4)
    ]
    assert codes == [201, 201, 201, 429]


@pytest.mark.django_db
def test_behind_one_trusted_proxy_each_client_has_its_own_limit(
    client, plan, sandbox, rate_limits
):
    rate_limits.TRUSTED_PROXY_COUNT = 1
    proxy = "192.0.2.10"
    for _ in range(3):
        ok = create(client, plan, ip=proxy, **{"X-Forwarded-For": "203.0.113.1"})
        assert ok.status_code == 201
    assert (
        create(client, plan, ip=proxy, **{"X-Forwarded-For": "203.0.113.1"})
    ).status_code == 429
    # What the client wrote left of the proxy's entry does not matter.
    other = create(
        client, plan, ip=proxy, **{"X-Forwarded-For": "1.1.1.1, 203.0.113.2"}
    )
    assert other.status_code == 201


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (0, "1.1.1.1", "192.0.2.10"),
        (1, "1.1.1.1, 203.0.113.5", "203.0.113.5"),
        (2, "1.1.1.1, 203.0.113.5, 10.0.0.2", "203.0.113.5"),
        (3, "203.0.113.5", "203.0.113.5"),  # fewer hops than trusted: leftmost
        (1, "not-an-ip", "192.0.2.10"),
        (1, "", "192.0.2.10"),
    ],
)
def test_client_ip_counts_trusted_hops_from_the_right(
    settings, hops, forwarded, expected
):
    settings.TRUSTED_PROXY_COUNT = hops
    request = RequestFactory().get(
        "/", REMOTE_ADDR="192.0.2.10", HTTP_X_FORWARDED_FOR=forwarded
    )
    assert client_ip(request) == expected


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20/m", Rate(20, 60)),
        ("120/m", Rate(120, 60)),
        ("100/10m", Rate(100, 600)),
        ("5/s", Rate(5, 1)),
        ("1000/d", Rate(1000, 86400)),
        ("", None),
    ],
)
def test_rates_are_read_from_settings_text(text, rate):
    assert parse_rate(text) == rate


def test_a_malformed_rate_refuses_to_start():
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "backoffice.settings",
            "DEBUG": "true",
            "RATE_LIMIT_CREATE": "twenty a minute",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "RATE_LIMIT_CREATE must look like 20/m" in result.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_limit_holds_across_gunicorn_workers(settings):
    """Two worker processes share one count: the cache, not process memory."""
    from django.core.cache import cache

    from tests.conftest import production_env, subprocess_database_url
    from tests.servers import gunicorn

    cache.clear()
    env = production_env(
        DATABASE_URL=subprocess_database_url(),
        REDIS_URL=os.environ.get("REDIS_URL"),
        # A day's window: the test cannot straddle a window boundary in practice.
        RATE_LIMIT_STATUS="10/d",
    )
    with gunicorn(env, workers=2) as base:
        codes = []
        for n in range(24):
            # A new connection each time, so both workers take requests.
            response = requests.get(
                f"{base}/api/payments/status/unknown-reference-{n:04d}/",
                headers={"Connection": "close"},
                timeout=10,
            )
            codes.append(response.status_code)
    assert codes == [404] * 10 + [429] * 14
