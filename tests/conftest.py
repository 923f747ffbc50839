"""Shared fixtures: gateway settings, plans, the sandbox."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from django.db import connection

from gateways import registry
from payments import selectors


@pytest.fixture(autouse=True)
def _fresh_gateways():
    """Build adapters from the settings of each test, and forget them after."""
    registry.reset()
    yield
    registry.reset()


@pytest.fixture(autouse=True)
def _fresh_review_badge():
    """Count the sidebar's badge afresh in each test: its process cache outlives
    the test's database."""
    selectors.forget_review_badge()
    yield
    selectors.forget_review_badge()


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    """Turn the per-IP limits off: the suite creates many payments from 127.0.0.1.

    Tests of the limits themselves turn them back on (`rate_limits`); servers
    started as subprocesses keep the defaults of the environment.
    """
    settings.RATE_LIMIT_CREATE = ""
    settings.RATE_LIMIT_STATUS = ""
    settings.RATE_LIMIT_WEBHOOK_FAILURES = ""


@pytest.fixture
def rate_limits(settings):
    """Per-IP limits on, in a fresh cache: returns the settings to adjust."""
    from django.core.cache import cache

    settings.RATE_LIMIT_CREATE = "3/m"
    settings.RATE_LIMIT_STATUS = "5/m"
    cache.clear()
    yield settings
    cache.clear()


@pytest.fixture
def gateway_settings(settings):
    """Deep-copied GATEWAY_SETTINGS that a test may change freely."""
    settings.GATEWAY_SETTINGS = copy.deepcopy(settings.GATEWAY_SETTINGS)
    registry.reset()
    return settings.GATEWAY_SETTINGS


@pytest.fixture
def sandbox(gateway_settings, settings):
    """Enable the sandbox gateway."""
    gateway_settings["sandbox"]["enabled"] = True
    # Every known gateway, the sandbox first (ADAPTERS' order).
    settings.PAYMENT_GATEWAYS = list(registry.ADAPTERS)
    registry.reset()
    return registry.get_gateway("sandbox")


@pytest.fixture
def plan(db):
    from tests.factories import PlanFactory

    return PlanFactory(
        code="eu-5gb", name="Europe 5 GB", price=Decimal("24.00"), currency="EUR"
    )


@pytest.fixture(scope="session")
def fake():
    """The fake provider server (every provider) on loopback, shared by a session."""
    from fakeproviders import FakeProviderServer

    server = FakeProviderServer().start()
    yield server
    server.stop()


@pytest.fixture
def providers(fake, sandbox, gateway_settings, settings):
    """Point CoinPayments, MPGS, HyperPay and Stripe at the fake server, with its credentials."""
    fake.clear_faults()
    fake.reset_calls()
    fake.latency = 0
    fake_settings = fake.gateway_settings()
    timeouts = {"read_timeout": 2.0, "connect_timeout": 2.0}
    gateway_settings["coinpayments"].update(
        fake_settings["coinpayments"], coins=["BTC", "LTC"], **timeouts
    )
    gateway_settings["mpgs"].update(fake_settings["mpgs"], **timeouts)
    gateway_settings["hyperpay"].update(fake_settings["hyperpay"], **timeouts)
    # Stripe: its events go nowhere unless a test names a webhook URL.
    gateway_settings["stripe"].update(fake_settings["stripe"], **timeouts)
    fake.stripe_webhook_url = None
    fake.stripe_hold_events = False
    settings.PAYMENT_GATEWAYS = [*settings.PAYMENT_GATEWAYS, "stripe"]
    registry.reset()
    yield fake
    fake.clear_faults()
    fake.stripe_wait_events()
    fake.stripe_webhook_url = None


def subprocess_database_url() -> str:
    """Return a DATABASE_URL that reaches the test database from a subprocess."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host = db.get("HOST") or "127.0.0.1"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


def production_env(**extra: str | None) -> dict[str, str]:
    """Return the environment of a production-style subprocess (DEBUG off).

    Plain HTTP on loopback, so the TLS redirect and secure cookies are off; the
    caller adds DATABASE_URL, STATIC_ROOT and whatever it tests. A None in
    `extra` removes that variable (its setting takes its default).
    """
    import os

    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "Q_BROKER_URL", "DEBUG"}
    }
    env = {
        **clean,
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
        "DEBUG": "false",
        "SECRET_KEY": STRONG_SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        **extra,
    }
    return {k: v for k, v in env.items() if v is not None}


# 64 characters of many kinds: passes Django's deploy check (security.W009).
STRONG_SECRET_KEY = "tK9#vQ2$mW7!pL4@xR8%nB3^cJ6&hF1*gD5(zS0)yA-e_u+i=o[p]l{k}j|h;g:f"


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory):
    """Run collectstatic once with production settings into a temporary STATIC_ROOT.

    Production-style subprocesses (gunicorn with DEBUG off) need it: their
    pages name hashed files from its manifest.
    """
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path_factory.mktemp("staticfiles")
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"],
        cwd=Path(__file__).resolve().parent.parent,
        env=production_env(STATIC_ROOT=str(root)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return root
