"""Security plumbing: the admin's Content-Security-Policy and the debug-page filter."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter
from django.views.decorators.csp import csp_override, csp_report_only_override

# user:password@ in a connection URL (postgres://, redis://, amqp://, https://).
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@/\s]+)@", re.I
)


class AdminContentSecurityPolicyMiddleware:
    """Give every page under the admin SECURE_CSP_ADMIN instead of SECURE_CSP.

    It sits inside django.middleware.csp.ContentSecurityPolicyMiddleware and
    uses Django's per-view override decorators on the rest of the chain, so the
    admin's login, lockout and error pages are covered as well as its views.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        admin = csp_override(settings.SECURE_CSP_ADMIN)(get_response)
        self.admin_response = csp_report_only_override(
            settings.SECURE_CSP_ADMIN_REPORT_ONLY
        )(admin)
        self._prefix: str | None = None

    def __call__(self, request):
        if self._prefix is None:
            self._prefix = reverse("admin:index")
        if request.path_info.startswith(self._prefix):
            return self.admin_response(request)
        return self.get_response(request)


class SettingsExceptionReporterFilter(SafeExceptionReporterFilter):
    """Mask secrets on the debug page and in error reports.

    Besides Django's own list (API, KEY, PASS, SECRET, SIGNATURE, TOKEN), every
    setting or request variable named *_URL is hidden (DATABASE_URL, REDIS_URL,
    Q_BROKER_URL and provider URLs may carry credentials), and a password inside
    any connection URL is masked wherever it appears (CACHES' LOCATION,
    Q_CLUSTER's redis, environment variables under runserver, local variables).
    """

    hidden_settings = re.compile(
        r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|(^|_)URL$|DSN$",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return mask_url_password(str(cleansed), self.cleansed_substitute)
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, self._mask(value))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def _mask(self, value: Any) -> Any:
        if isinstance(value, str):
            return mask_url_password(value, self.cleansed_substitute)
        return value


def mask_url_password(text: str, substitute: str = "********************") -> str:
    """Replace the password of every user:password@ URL in `text`."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}:{substitute}@", text)


def lockout_response(request, original_response=None, credentials=None):
    """Answer a locked-out login with the admin's own page, status 429."""
    from axes.helpers import get_client_username, get_cool_off, get_failure_limit
    from django.contrib import admin
    from django.shortcuts import render

    cool_off = get_cool_off(request)
    context = {
        **admin.site.each_context(request),
        "title": "Too many failed logins",
        "username": get_client_username(request, credentials) or "",
        "failure_limit": get_failure_limit(request, credentials),
        "cooloff_minutes": int(cool_off.total_seconds() // 60) if cool_off else None,
    }
    return render(request, "admin/lockout.html", context, status=429)
