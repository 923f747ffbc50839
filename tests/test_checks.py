"""System checks on settings, run as an operator would: `manage.py check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import production_env

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=production_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sandbox_without_debug_is_a_check_error():
    result = manage("check", SANDBOX_ENABLED="true")
    assert result.returncode != 0
    assert "backoffice.E001" in result.stderr
    assert "SANDBOX_ENABLED is true while DEBUG is off" in result.stderr
    assert "SANDBOX_ALLOW_WITHOUT_DEBUG=true" in result.stderr  # the hint


def test_sandbox_without_debug_refuses_to_serve(tmp_path):
    """runserver runs the checks first: it stops before it listens."""
    result = subprocess.run(
        [sys.executable, "manage.py", "runserver", "127.0.0.1:0", "--noreload"],
        cwd=ROOT,
        env=production_env(SANDBOX_ENABLED="true"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "backoffice.E001" in result.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"SANDBOX_ENABLED": "true", "SANDBOX_ALLOW_WITHOUT_DEBUG": "true"},
        {"SANDBOX_ENABLED": "false"},
        {"SANDBOX_ENABLED": "true", "DEBUG": "true"},
    ],
    ids=["staging", "production", "development"],
)
def test_sandbox_check_passes_where_it_is_meant(env):
    result = manage("check", **env)
    assert result.returncode == 0, result.stderr
    assert "backoffice.E001" not in result.stderr


def test_deploy_check_is_clean_with_production_settings(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        # What production_env turns off for plain HTTP on loopback comes back:
        # the TLS redirect and secure cookies are the defaults with DEBUG off.
        SECURE_SSL_REDIRECT=None,
        SESSION_COOKIE_SECURE=None,
        CSRF_COOKIE_SECURE=None,
        ALLOWED_HOSTS="backoffice.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_deploy_check_names_a_missing_hsts_subdomains():
    """Without subdomains, the deploy check is not clean (security.W005)."""
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECURE_SSL_REDIRECT="true",
        SESSION_COOKIE_SECURE="true",
        CSRF_COOKIE_SECURE="true",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
    )
    assert result.returncode != 0
    assert "security.W005" in result.stderr


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://oppwa.example.com", True),
        ("http://127.0.0.1:9000", False),  # a fake provider on this machine
        ("http://localhost:9000", False),
        ("https://eu-prod.oppwa.com", False),
    ],
)
def test_a_gateway_url_over_plain_http_is_a_warning(url, warned):
    result = manage("check", HYPERPAY_API_BASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert ("backoffice.W001" in result.stderr) is warned
    if warned:
        assert "HYPERPAY_API_BASE_URL is plain http" in result.stderr


# --- the demo's simulated providers (issue 21) ------------------------------------------


def test_simulated_providers_without_debug_are_a_check_error():
    result = manage("check", DEMO_PROVIDERS_URL="http://127.0.0.1:8001")
    assert result.returncode != 0
    assert "backoffice.E002" in result.stderr
    assert "DEMO_PROVIDERS_URL is set while DEBUG is off" in result.stderr


def test_simulated_providers_with_debug_pass_the_checks():
    result = manage("check", DEMO_PROVIDERS_URL="http://127.0.0.1:8001", DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert "E002" not in result.stderr
