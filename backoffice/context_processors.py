"""Template context shared by the customer pages and the admin."""

from __future__ import annotations

from payments import selectors


def test_mode(request) -> dict[str, bool]:
    """Say whether a pretend gateway is offered, for the TEST MODE banner."""
    return {"test_mode": selectors.test_mode()}
