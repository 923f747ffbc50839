"""Helpers shared by the public views: request bodies, CSRF, addresses."""

from __future__ import annotations

import ipaddress
import json

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent, TooManyFilesSent
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware

from .errors import json_error

__all__ = [
    "FORM_TYPES",
    "BadRequest",
    "client_ip",
    "csrf_rejects",
    "is_form",
    "json_error",
    "read_payload",
    "site_url",
    "wants_json",
]

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class BadRequest(Exception):
    """A request body that cannot be read: its status and what to tell the client."""

    def __init__(self, status: int, message: str, fields=None):
        super().__init__(message)
        self.http_status = status
        self.fields = fields or {}


def read_payload(request) -> tuple[dict, bool]:
    """Return (fields, is_form) from a JSON or form body, or raise BadRequest."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.API_MAX_BODY_BYTES:
        raise BadRequest(
            413, f"request body is over {settings.API_MAX_BODY_BYTES} bytes"
        )
    content_type = request.content_type or ""
    if not request.body.strip():
        raise BadRequest(400, "empty request body: send a JSON object or a form")
    if content_type in FORM_TYPES:
        if len(request.body) > settings.API_MAX_BODY_BYTES:
            raise BadRequest(413, "request body is too large")
        return _form_fields(request), True
    if content_type != "application/json":
        raise BadRequest(
            400,
            "unsupported content type: send application/json or a form",
            {"Content-Type": [f"{content_type or 'missing'} is not accepted"]},
        )
    body = request.body
    if len(body) > settings.API_MAX_BODY_BYTES:
        raise BadRequest(413, "request body is too large")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest(400, "request body is nested too deeply") from exc
    if not isinstance(data, dict):
        raise BadRequest(400, "request body must be a JSON object")
    _refuse_lone_surrogates(data)
    return data, False


def _form_fields(request) -> dict:
    """Read a form body's fields, or raise BadRequest for one Django cannot parse."""
    try:
        return {k: request.POST.get(k) for k in request.POST}
    except TooManyFieldsSent as exc:
        raise BadRequest(
            400,
            f"too many form fields: at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}",
        ) from exc
    except TooManyFilesSent as exc:
        raise BadRequest(400, "the form sends files: none are accepted") from exc
    except MultiPartParserError as exc:
        raise BadRequest(400, f"malformed multipart/form-data body: {exc}") from exc


def _refuse_lone_surrogates(data: dict) -> None:
    r"""Refuse JSON text that is not Unicode: an escaped lone surrogate ("\ud800").

    JSON's escapes can spell one; Python keeps it, and neither database
    driver can encode it (it was a 500).
    """
    for key, value in data.items():
        if not all(_is_unicode(text) for text in _strings({key: value})):
            name = key if _is_unicode(key) else "body"
            raise BadRequest(
                400,
                "request body is not valid Unicode: it escapes a lone surrogate",
                {name: [r"holds a lone surrogate (\ud800-\udfff), which is not text"]},
            )


def _strings(value):
    """Yield every string inside a parsed JSON value (keys included)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_form(request) -> bool:
    """Tell whether a request's body is a form (what a browser's form sends)."""
    return (request.content_type or "") in FORM_TYPES


def wants_json(request) -> bool:
    """Tell whether the client asked for JSON (checkout.js does, a bare form not)."""
    return "application/json" in request.headers.get("Accept", "")


def csrf_rejects(request) -> bool:
    """Tell whether Django's CSRF check refuses a request its view exempted."""
    middleware = CsrfViewMiddleware(lambda r: None)
    return middleware.process_view(request, None, (), {}) is not None


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
