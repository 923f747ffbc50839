"""JSON answers for everything under /api/, outages included."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http.multipartparser import MultiPartParserError

from . import services
from .views.errors import (
    api_path,
    json_error,
    outage_exceptions,
    outage_response,
    plain_message,
)

logger = logging.getLogger("payments.api")


class ApiErrorMiddleware:
    """Make every error under /api/ a JSON `{"error": ...}` answer.

    A database or cache outage (raised by a view) is a 503 with Retry-After;
    a request Django calls malformed a 400; any other unexpected exception a
    JSON 500. Django's own error answers (405 from `require_POST`, a DEBUG
    404 page, a 400 for a bad request) are rewritten with their status and
    headers kept. The checkout page's own
    form POST is the one HTML answer left under /api/: it re-renders the page
    with the error (`response.renders_page`).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not api_path(request.path) or response.status_code < 400:
            return response
        if getattr(response, "renders_page", False) or _is_json(response):
            return response
        rewritten = json_error(
            response.status_code, plain_message(response.status_code)
        )
        # Keep Allow, Retry-After and the security headers set further in.
        for header, value in response.items():
            if header.lower() not in ("content-type", "content-length"):
                rewritten[header] = value
        for cookie in response.cookies.values():
            rewritten.cookies[cookie.key] = cookie
        return rewritten

    def process_exception(self, request, exception):
        if not api_path(request.path):
            return None
        if isinstance(exception, outage_exceptions()):
            logger.error(
                "%s %s: %s: %s",
                request.method,
                request.path,
                type(exception).__name__,
                exception,
            )
            return outage_response()
        if isinstance(exception, RequestDataTooBig):
            return json_error(413, "request body is too large")
        if isinstance(exception, (SuspiciousOperation, MultiPartParserError)):
            # A request Django itself calls malformed (too many fields, a
            # broken multipart body): Django logs it and answers 400 through
            # handler400, JSON under /api/. Never a 500.
            return None
        if settings.DEBUG:
            return None  # the middleware rewrites the debug page's status as JSON
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, plain_message(500))


def _is_json(response) -> bool:
    content_type = response.get("Content-Type", "")
    if not content_type.startswith("application/json"):
        return False
    try:
        return isinstance(json.loads(response.content), dict)
    except (ValueError, AttributeError):
        return False


class GatewayBudgetMiddleware:
    """Give every provider call one web request makes one total time budget.

    GATEWAY_REQUEST_BUDGET_SECONDS, connect, read and retries together, so a
    hanging provider ends an admin refresh, a refund or a webhook's
    confirmation well before the server's worker timeout kills the worker.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with services.request_budget():
            return self.get_response(request)
