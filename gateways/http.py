"""One pooled, time-limited, redacting HTTP session per gateway."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout

from .base import GatewayTimeout, GatewayUnavailable

logger = logging.getLogger("gateways.http")

# The monotonic time by which every provider call in the current context must
# be over (see `time_budget`); None: each call has only its own timeouts.
_deadline: ContextVar[float | None] = ContextVar("gateway_deadline", default=None)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Bound the provider calls made inside to `seconds` in total, without retries.

    Each call gets what is left of the budget as its total connect + read
    time (urllib3's `Timeout(total=...)`); once it is spent, a call fails at
    once with GatewayTimeout(contacted=False). A budget inside another ends no
    later than the outer one. For web requests: a hanging provider must not
    hold a web worker past its timeout.
    """
    deadline = time.monotonic() + max(0.0, seconds)
    outer = _deadline.get()
    if outer is not None:
        deadline = min(deadline, outer)
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


class GatewayHTTP:
    """A `requests.Session` with timeouts, pooling and safe logging.

    Retries happen only for idempotent calls (`idempotent=True`) and only on
    connection errors and 502/503/504; a non-idempotent call is made once and
    its fault reported with `contacted` so the caller can tell "never sent"
    from "outcome unknown". Logs carry method, host, path, status and time:
    never headers, bodies or query strings, which may hold keys and HMACs.
    """

    def __init__(
        self,
        name: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        pool_size: int = 16,
        retries: int = 2,
    ):
        self.name = name
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "magic-esim-backoffice/1.0"
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=0.2,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD"}),
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        self._retrying = HTTPAdapter(
            pool_connections=4, pool_maxsize=pool_size, max_retries=retry
        )
        self._single = HTTPAdapter(
            pool_connections=4, pool_maxsize=pool_size, max_retries=0
        )
        self._single_session = requests.Session()
        self._single_session.headers.update(self.session.headers)
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, self._retrying)
            self._single_session.mount(prefix, self._single)

    def request(
        self,
        method: str,
        url: str,
        *,
        op: str,
        idempotent: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request; raise GatewayUnavailable on any transport fault."""
        session = self.session if idempotent else self._single_session
        kwargs.setdefault("timeout", self.timeout)
        started = time.monotonic()
        where = _safe_url(url)
        deadline = _deadline.get()
        if deadline is not None:
            remaining = deadline - started
            if remaining <= 0:
                self._log(op, method, where, "budget-spent", started)
                raise GatewayTimeout(f"{self.name}: time budget spent", contacted=False)
            session = self._single_session
            connect, read = self.timeout
            kwargs["timeout"] = Timeout(
                total=remaining,
                connect=min(connect, remaining),
                read=min(read, remaining),
            )
        try:
            response = session.request(method, url, **kwargs)
        except requests.exceptions.ConnectTimeout as exc:
            self._log(op, method, where, "connect-timeout", started)
            raise GatewayTimeout(
                f"{self.name}: connect timeout", contacted=False
            ) from exc
        except requests.exceptions.ReadTimeout as exc:
            self._log(op, method, where, "read-timeout", started)
            raise GatewayTimeout(f"{self.name}: read timeout") from exc
        except requests.exceptions.ConnectionError as exc:
            self._log(op, method, where, "connection-error", started)
            raise GatewayUnavailable(
                f"{self.name}: connection error", contacted=not _never_sent(exc)
            ) from exc
        except requests.exceptions.RequestException as exc:
            self._log(op, method, where, "error", started)
            raise GatewayUnavailable(f"{self.name}: {type(exc).__name__}") from exc
        self._log(op, method, where, response.status_code, started)
        if response.status_code == 429 or response.status_code >= 500:
            raise GatewayUnavailable(
                f"{self.name}: HTTP {response.status_code} from provider"
            )
        return response

    def _log(self, op: str, method: str, where: str, outcome: object, started: float):
        logger.info(
            "%s %s %s %s -> %s in %.0f ms",
            self.name,
            op,
            method,
            where,
            outcome,
            (time.monotonic() - started) * 1000,
        )


def json_body(response: requests.Response, name: str) -> Any:
    """Decode a JSON answer; garbage (HTML, truncated JSON) is a fault."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayUnavailable(
            f"{name}: unreadable answer (HTTP {response.status_code}, "
            f"{response.headers.get('Content-Type', 'no content type')})"
        ) from exc


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}"


def _never_sent(exc: Exception) -> bool:
    text = repr(exc)
    return any(
        marker in text
        for marker in (
            "NewConnectionError",
            "NameResolutionError",
            "Connection refused",
        )
    )
