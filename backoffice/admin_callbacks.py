"""Callbacks named in the UNFOLD settings."""

from django.conf import settings

from payments import selectors


def environment_callback(request) -> list[str]:
    """Show which environment the admin is looking at (TEST MODE first)."""
    if settings.DEMO_PROVIDERS_URL:
        return ["TEST MODE · simulated providers", "danger"]
    if selectors.test_mode():
        return ["TEST MODE", "danger"]
    if settings.DEBUG:
        return ["Development", "warning"]
    return ["Production", "danger"]


def environment_title_prefix(request) -> str:
    """Prefix page titles with [TEST MODE] while the sandbox is offered."""
    simulated = bool(settings.DEMO_PROVIDERS_URL)
    return "[TEST MODE]" if simulated or selectors.test_mode() else ""
