"""Fixtures for the fake server's own tests: one fake per module, reset per test."""

from collections.abc import Iterator

import pytest

from . import FakeProviderServer
from .clients import Receiver


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    """Serve one fake for the whole module."""
    with FakeProviderServer() as server:
        yield server
    # A crash inside the fake would otherwise only surface as an HTTP 500.
    assert server.errors == []


@pytest.fixture(autouse=True)
def _clean_fake(fake: FakeProviderServer) -> Iterator[None]:
    """Start every test with no faults, latency or recorded calls."""
    fake.clear_faults()
    fake.latency = 0.0
    fake.reset_calls()
    yield
    fake.clear_faults()
    fake.latency = 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Provide a webhook receiver."""
    rec = Receiver()
    yield rec
    rec.close()
