"""Helpers shared by the public views."""

from __future__ import annotations

import ipaddress

from django.conf import settings

from .errors import json_error

__all__ = ["client_ip", "json_error", "site_url"]


def site_url(request) -> str:
    """Return the public base URL: SITE_URL, else the request's own."""
    return settings.SITE_URL or request.build_absolute_uri("/").rstrip("/")


def client_ip(request) -> str | None:
    """Return the client's address: REMOTE_ADDR, or X-Forwarded-For behind proxies.

    With TRUSTED_PROXY_COUNT = N, the N-th address from the right of
    X-Forwarded-For is the one the outermost trusted proxy saw; addresses left
    of it are whatever the client sent and are never trusted.
    """
    hops = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if hops > 0 and forwarded:
        chain = [part.strip() for part in forwarded.split(",") if part.strip()]
        if chain and _is_ip(chain[-min(hops, len(chain))]):
            return chain[-min(hops, len(chain))]
    return request.META.get("REMOTE_ADDR") or None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
