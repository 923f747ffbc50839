"""The sandbox's signing secret: random per installation, never derived."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

from gateways import registry
from gateways.base import WebhookRejected
from gateways.sandbox import SIGNATURE_HEADER, SandboxGateway, sign

pytestmark = pytest.mark.django_db
# Where the installation's secret is kept (gateways.sandbox.SECRET_CACHE_KEY).
SECRET_CACHE_KEY = "sandbox-webhook-secret"
NOTIFICATION = json.dumps(
    {
        "event_id": "e1",
        "ref_id": "ref-1",
        "token": "tok",
        "status": "paid",
        "amount": "24.00",
        "currency": "EUR",
    }
).encode()


def sandbox_with(gateway_settings, secret: str = "") -> SandboxGateway:
    gateway_settings["sandbox"].update(enabled=True, secret=secret)
    registry.reset()
    return SandboxGateway(gateway_settings["sandbox"])


def test_without_a_configured_secret_one_is_made_at_random(gateway_settings, settings):
    cache.delete(SECRET_CACHE_KEY)
    secret = sandbox_with(gateway_settings).secret
    assert len(secret) == 64 and int(secret, 16) >= 0
    # Never the old derivation from SECRET_KEY (public when it is the fallback).
    derived = hashlib.sha256(f"sandbox-webhook:{settings.SECRET_KEY}".encode())
    assert secret != derived.hexdigest()
    assert settings.SECRET_KEY not in secret


def test_every_process_of_an_installation_shares_it_another_gets_its_own(
    gateway_settings,
):
    cache.delete(SECRET_CACHE_KEY)
    first = sandbox_with(gateway_settings)
    second = sandbox_with(gateway_settings)  # another worker: a new adapter
    shared = first.secret
    assert second.secret == shared
    headers = {SIGNATURE_HEADER: sign(shared, NOTIFICATION)}
    assert second.parse_webhook(NOTIFICATION, headers).ref_id == "ref-1"

    # Another installation (another cache) makes another secret, and refuses a
    # notification signed with this one.
    cache.delete(SECRET_CACHE_KEY)
    elsewhere = sandbox_with(gateway_settings)
    assert elsewhere.secret != shared
    with pytest.raises(WebhookRejected, match="signature does not match"):
        elsewhere.parse_webhook(NOTIFICATION, headers)


def test_a_replaced_secret_is_read_by_every_process(gateway_settings):
    """No adapter keeps a secret of its own that the cache no longer holds."""
    cache.delete(SECRET_CACHE_KEY)
    worker = sandbox_with(gateway_settings)
    before = worker.secret
    cache.delete(SECRET_CACHE_KEY)
    other = sandbox_with(gateway_settings)
    assert other.secret != before
    assert worker.secret == other.secret


def test_a_configured_secret_wins(gateway_settings):
    gateway = sandbox_with(gateway_settings, secret="from-the-environment")
    assert gateway.secret == "from-the-environment"


def test_the_setting_is_empty_by_default_not_derived():
    """Fresh interpreter, no SANDBOX_WEBHOOK_SECRET: nothing computed from SECRET_KEY."""
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(repr(s.SANDBOX_WEBHOOK_SECRET), "
        "repr(s.GATEWAY_SETTINGS['sandbox']['secret']))"
    )
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SANDBOX_WEBHOOK_SECRET", "DATABASE_URL", "REDIS_URL"}
    }
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[2],
        env={**env, "DJANGO_SETTINGS_MODULE": "backoffice.settings", "DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["''", "''"]
