"""STAFF_MFA's defaults, read in fresh interpreters (no pytest in sys.modules)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import STRONG_SECRET_KEY
from tests.test_settings import ROOT

PROBE = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.STAFF_MFA, s.AXES_RESET_ON_SUCCESS, s.AUDIT_RETENTION_DAYS)"
)


def probe(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "STAFF_MFA", "DEBUG"}
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "backoffice.settings",
            "SECRET_KEY": STRONG_SECRET_KEY,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "false"}, "required False 400"),
        ({"DEBUG": "true"}, "optional False 400"),
        # Empty, as .env.example has it: the default.
        ({"DEBUG": "false", "STAFF_MFA": ""}, "required False 400"),
        ({"DEBUG": "false", "STAFF_MFA": "off"}, "off False 400"),
    ],
)
def test_staff_mfa_defaults_follow_debug(env, expected):
    result = probe(**env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_a_wrong_staff_mfa_refuses_to_start():
    result = probe(DEBUG="false", STAFF_MFA="sometimes")
    assert result.returncode != 0
    assert "STAFF_MFA must be 'required', 'optional' or 'off'" in result.stderr
