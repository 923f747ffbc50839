"""The public payment API called over real HTTP, as the checkout page calls it."""

from __future__ import annotations

import requests


def create_payment(
    base_url: str,
    plan,
    gateway: str,
    *,
    email: str = "buyer@example.com",
    http: requests.Session | None = None,
    **extra,
) -> dict:
    """POST /api/payments/ and return the created payment's JSON (201 asserted)."""
    response = (http or requests).post(
        f"{base_url}/api/payments/",
        json={"plan": plan.code, "payment_gateway": gateway, "email": email, **extra},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()
