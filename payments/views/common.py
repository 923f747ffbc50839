"""Helpers shared by the public views."""

from __future__ import annotations

from django.conf import settings

from .errors import json_error

__all__ = ["client_ip", "json_error", "site_url"]


def site_url(request) -> str:
    """Return the public base URL: SITE_URL, else the request's own."""
    return settings.SITE_URL or request.build_absolute_uri("/").rstrip("/")


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None
