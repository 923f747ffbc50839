"""Settings read from the environment, checked in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import STRONG_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import django; django.setup(); from django.conf import settings as s; "
    "from gateways.registry import gateway_infos; "
    "print(s.DATABASES['default']['OPTIONS'].get('transaction_mode'), s.SECURE_SSL_REDIRECT, "
    "s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
    "[(g.code, g.configured) for g in gateway_infos()], 'redis' in s.Q_CLUSTER)"
)


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "backoffice.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_secret_key_is_required_without_debug():
    result = run({"DEBUG": "false", "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_production_defaults_are_secure_and_sandbox_off():
    result = run({"DEBUG": "false", "SECRET_KEY": STRONG_SECRET_KEY})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "IMMEDIATE True True 31536000 True "
        "[('sandbox', False), ('coinpayments', False), ('mpgs', False), "
        "('hyperpay', False), ('stripe', False)] False"
    )


def test_hsts_subdomains_follow_the_environment():
    env = {"DEBUG": "false", "SECRET_KEY": STRONG_SECRET_KEY}
    result = run({**env, "SECURE_HSTS_INCLUDE_SUBDOMAINS": "false"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[4] == "False"


@pytest.mark.parametrize(
    "key",
    ["short", "x" * 49, "ab" * 40],
    ids=["short", "49-characters", "two-different-characters"],
)
def test_a_weak_secret_key_refuses_to_start_without_debug(key):
    result = run({"DEBUG": "false", "SECRET_KEY": key})
    assert result.returncode != 0
    assert "SECRET_KEY is too weak for DEBUG off" in result.stderr
    assert key not in result.stderr  # the refusal never prints the key


def test_a_short_secret_key_is_fine_with_debug():
    result = run({"DEBUG": "true", "SECRET_KEY": "short"})
    assert result.returncode == 0, result.stderr


def test_the_sandbox_stays_off_without_debug_unless_staging_allows_it():
    env = {"DEBUG": "false", "SECRET_KEY": STRONG_SECRET_KEY, "SANDBOX_ENABLED": "true"}
    refused = run(env)
    assert refused.returncode == 0, refused.stderr
    assert "('sandbox', False)" in refused.stdout
    allowed = run({**env, "SANDBOX_ALLOW_WITHOUT_DEBUG": "true"})
    assert allowed.returncode == 0, allowed.stderr
    assert "('sandbox', True)" in allowed.stdout


def test_debug_enables_the_sandbox_and_redis_switches_the_broker():
    result = run({"DEBUG": "true", "REDIS_URL": "redis://127.0.0.1:6379/15"})
    assert result.returncode == 0, result.stderr
    assert "('sandbox', True)" in result.stdout
    assert result.stdout.strip().endswith("True")


def test_a_rollup_window_shorter_than_the_dashboard_refuses_to_start():
    result = run({"DEBUG": "true", "ROLLUP_WINDOW_DAYS": "7"})
    assert result.returncode != 0
    assert "ROLLUP_WINDOW_DAYS must be at least 30" in result.stderr
    assert run({"DEBUG": "true", "ROLLUP_WINDOW_DAYS": "30"}).returncode == 0


def test_the_exact_count_limit_is_read_from_the_environment_and_checked():
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.ADMIN_EXACT_COUNT_LIMIT)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backoffice.settings"}
    env.update({"DEBUG": "true"})

    def limit(value: str | None) -> subprocess.CompletedProcess:
        given = {**env}
        given.pop("ADMIN_EXACT_COUNT_LIMIT", None)
        if value is not None:
            given["ADMIN_EXACT_COUNT_LIMIT"] = value
        return subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env=given,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert limit(None).stdout.strip() == "10000"
    assert limit("2500").stdout.strip() == "2500"
    refused = limit("0")
    assert refused.returncode != 0
    assert "ADMIN_EXACT_COUNT_LIMIT must be at least 1" in refused.stderr


def test_previous_webhook_secrets_and_the_new_limits_come_from_the_environment():
    """Issue 22: every *_PREVIOUS secret reaches its gateway; bad values refuse."""
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "g = s.GATEWAY_SETTINGS; print(g['coinpayments']['ipn_secret_previous'], "
        "g['mpgs']['webhook_secret_previous'], g['sandbox']['secret_previous'], "
        "g['hyperpay']['webhook_key_previous'], g['stripe']['webhook_secret_previous'], "
        "s.RATE_LIMIT_WEBHOOK_FAILURES, s.REJECTED_DELIVERY_RETENTION_DAYS, "
        "s.GATEWAY_REQUEST_BUDGET_SECONDS, s.STATUS_REFRESH_CONCURRENCY)"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
        "DEBUG": "true",
        "COINPAYMENTS_IPN_SECRET_PREVIOUS": "cp-old",
        "MPGS_WEBHOOK_SECRET_PREVIOUS": "mpgs-old",
        "SANDBOX_WEBHOOK_SECRET_PREVIOUS": "sbx-old",
        "HYPERPAY_WEBHOOK_KEY_PREVIOUS": "ab" * 32,
        "STRIPE_WEBHOOK_SECRET_PREVIOUS": "whsec_old",
        "RATE_LIMIT_WEBHOOK_FAILURES": "30/m",
        "REJECTED_DELIVERY_RETENTION_DAYS": "7",
        "GATEWAY_REQUEST_BUDGET_SECONDS": "8",
        "STATUS_REFRESH_CONCURRENCY": "3",
    }
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "cp-old",
        "mpgs-old",
        "sbx-old",
        "ab" * 32,
        "whsec_old",
        "30/m",
        "7",
        "8.0",
        "3",
    ]
    refused = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**env, "RATE_LIMIT_WEBHOOK_FAILURES": "sixty"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "RATE_LIMIT_WEBHOOK_FAILURES must look like 60/m" in refused.stderr
