"""Callbacks named in the UNFOLD settings."""

from django.conf import settings


def environment_callback(request) -> list[str]:
    """Show which environment the admin is looking at."""
    if settings.DEBUG:
        return ["Development", "warning"]
    return ["Production", "danger"]
