"""Time budgets for provider calls made inside a web request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

from gateways.http import time_budget


@contextmanager
def request_budget() -> Iterator[None]:
    """Bound every provider call of one web request to one total budget.

    GATEWAY_REQUEST_BUDGET_SECONDS covers connect, read and retries of all the
    request's calls together, well inside the server's worker timeout; a
    call past it fails at once (GatewayTimeout) and the janitor asks later.
    Customer-facing refreshes nest their own, shorter budget inside.
    Background jobs run outside any request and keep their own timeouts.
    """
    with time_budget(settings.GATEWAY_REQUEST_BUDGET_SECONDS):
        yield
