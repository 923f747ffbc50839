"""Shared fixtures: gateway settings, plans, the sandbox."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from django.db import connection

from gateways import registry


@pytest.fixture(autouse=True)
def _fresh_gateways():
    """Build adapters from the settings of each test, and forget them after."""
    registry.reset()
    yield
    registry.reset()


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    """Turn the per-IP limits off: the suite creates many payments from 127.0.0.1.

    Tests of the limits themselves turn them back on (`rate_limits`); servers
    started as subprocesses keep the defaults of the environment.
    """
    settings.RATE_LIMIT_CREATE = ""
    settings.RATE_LIMIT_STATUS = ""


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
    settings.PAYMENT_GATEWAYS = ["sandbox", "coinpayments", "mpgs"]
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
    """The fake CoinPayments + MPGS server on loopback, shared by a session."""
    from tests.fakes import FakeProviderServer

    server = FakeProviderServer().start()
    yield server
    server.stop()


@pytest.fixture
def providers(fake, sandbox, gateway_settings):
    """Point CoinPayments and MPGS at the fake server, with its credentials."""
    fake.clear_faults()
    fake.reset_calls()
    fake.latency = 0
    fake_settings = fake.gateway_settings()
    timeouts = {"read_timeout": 2.0, "connect_timeout": 2.0}
    gateway_settings["coinpayments"].update(
        fake_settings["coinpayments"], coins=["BTC", "LTC"], **timeouts
    )
    gateway_settings["mpgs"].update(fake_settings["mpgs"], **timeouts)
    registry.reset()
    yield fake
    fake.clear_faults()


def subprocess_database_url() -> str:
    """Return a DATABASE_URL that reaches the test database from a subprocess."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host = db.get("HOST") or "127.0.0.1"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"
