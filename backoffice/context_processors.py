"""Template context shared by the customer pages and the admin."""

from __future__ import annotations

from django.conf import settings

from payments import selectors


def test_mode(request) -> dict[str, bool]:
    """Say whether a pretend gateway is offered or the providers are simulated.

    Both show the TEST MODE banner; `simulated_providers` adds that every
    provider is the demo's fake (`make run`).
    """
    simulated = bool(settings.DEMO_PROVIDERS_URL)
    return {
        "test_mode": simulated or selectors.test_mode(),
        "simulated_providers": simulated,
    }
