"""System checks on settings that would be dangerous in production."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security)
def sandbox_needs_debug(app_configs, **kwargs) -> list[Error]:
    """Refuse a sandbox (free "payments") with DEBUG off unless staging says so."""
    if (
        settings.SANDBOX_ENABLED
        and not settings.DEBUG
        and not settings.SANDBOX_ALLOW_WITHOUT_DEBUG
    ):
        return [
            Error(
                "SANDBOX_ENABLED is true while DEBUG is off: anyone could pay "
                "with the pretend gateway and get a completed payment.",
                hint=(
                    "Set SANDBOX_ENABLED=false in production. On a staging "
                    "server, set SANDBOX_ALLOW_WITHOUT_DEBUG=true as well; its "
                    "pages then show a TEST MODE banner."
                ),
                id="backoffice.E001",
            )
        ]
    return []


@register(Tags.security)
def demo_providers_need_debug(app_configs, **kwargs) -> list[Error]:
    """Refuse the demo's simulated providers with DEBUG off."""
    if settings.DEMO_PROVIDERS_URL and not settings.DEBUG:
        return [
            Error(
                "DEMO_PROVIDERS_URL is set while DEBUG is off: the gateways "
                "would talk to the demo's fake provider server, not to the "
                "real providers.",
                hint=(
                    "Unset DEMO_PROVIDERS_URL and point the gateways' *_API_* "
                    "settings at the real providers; the fake is for "
                    "`make run` (DEBUG on) only."
                ),
                id="backoffice.E002",
            )
        ]
    return []


@register(Tags.security)
def gateway_urls_over_plain_http(app_configs, **kwargs) -> list[Warning]:
    """Warn about a provider URL that is plain http to another machine.

    Every `*url` setting of every gateway (GATEWAY_SETTINGS, named after its
    environment variable, e.g. HYPERPAY_API_BASE_URL): credentials and
    payments would cross the network unencrypted. Loopback is a fake provider
    on this machine (tests, the demo).
    """
    warnings = []
    for code, values in settings.GATEWAY_SETTINGS.items():
        for key, value in values.items():
            if not key.endswith("url") or not isinstance(value, str):
                continue
            parts = urlsplit(value.strip())
            if parts.scheme != "http" or _is_loopback(parts.hostname or ""):
                continue
            warnings.append(
                Warning(
                    f"{code}_{key}".upper()
                    + f" is plain http ({parts.scheme}://{parts.hostname}): "
                    "credentials and payments would cross the network unencrypted.",
                    hint="Use the provider's https:// URL; plain http is for a "
                    "fake provider on this machine only.",
                    id="backoffice.W001",
                )
            )
    return warnings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
