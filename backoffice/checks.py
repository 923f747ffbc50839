"""System checks on settings that would be dangerous in production."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register


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
