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

    return PlanFactory(code="eu-5gb", name="Europe 5 GB", price=Decimal("24.00"), currency="EUR")


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("postgres") and not _db_is_postgres():
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL row locks"))


def _db_is_postgres() -> bool:
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
