"""The `stripe` library's HTTP client, sending through GatewayHTTP."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import stripe

from ..base import GatewayUnavailable
from ..http import GatewayHTTP

# The operation the adapter is performing, named on the transport's log line
# (set around each library call by the adapter).
operation: ContextVar[str] = ContextVar("stripe_operation", default="api")


class StripeTransport(stripe.HTTPClient):
    """The library's HTTP client, sending through GatewayHTTP.

    GatewayHTTP gives every Stripe call the gateways' connect/read timeouts,
    what is left of a `time_budget` as its total time, pooled connections,
    retries for GETs only and log lines without headers, bodies or query
    strings. Its faults (GatewayUnavailable, with `contacted`) pass through
    the library untouched.
    """

    name = "requests"

    def __init__(self, http: GatewayHTTP):
        super().__init__()
        self._http = http

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        **_: Any,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """Send one request; return (body, status, headers) as the library expects."""
        verb = method.upper()
        response = self._http.request(
            verb,
            url,
            op=operation.get(),
            idempotent=verb == "GET",
            headers=dict(headers or {}),
            data=post_data,
            allow_redirects=False,
        )
        return response.content, response.status_code, response.headers

    def request_stream(self, method, url, headers, post_data=None, **_):
        """Streaming is not used by this adapter."""
        raise GatewayUnavailable("stripe: streamed answers are not supported")

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.session.close()


class _LibraryLogFilter(logging.Filter):
    """Keep the library's own debug/info lines (bodies, query strings) out of logs.

    GatewayHTTP already logs every call without them; warnings pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def quiet_library_logs() -> None:
    """Keep the library's debug and info lines out of the logs (once per process)."""
    library = logging.getLogger("stripe")
    if not any(isinstance(f, _LibraryLogFilter) for f in library.filters):
        library.addFilter(_LibraryLogFilter())
