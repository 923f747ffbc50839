"""Per-client-IP request limits for the public API, counted in the shared cache."""

from __future__ import annotations

import functools
import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from .common import client_ip
from .errors import json_error

PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    """At most `count` requests per `seconds`, per client IP."""

    count: int
    seconds: int


@functools.lru_cache(maxsize=32)
def parse_rate(text: str) -> Rate | None:
    """Read "20/m" or "100/10m"; None when empty (no limit)."""
    if not text.strip():
        return None
    match = re.match(settings.RATE_LIMIT_PATTERN, text)
    if match is None:
        raise ValueError(f"not a rate: {text!r}")
    count, multiplier, unit = match.groups()
    return Rate(int(count), int(multiplier or 1) * PERIOD_SECONDS[unit])


def rate_limit_wait(*, scope: str, rate: Rate, client: str) -> int:
    """Count one request; return 0 when allowed, else the seconds until the next.

    A fixed window per client: `cache.add` starts it (a no-op when it exists)
    and `cache.incr` counts atomically in the shared cache, so every web worker
    sees the same count.
    """
    now = time.time()
    window = int(now // rate.seconds)
    key = f"ratelimit:{scope}:{client}:{window}"
    cache.add(key, 0, timeout=rate.seconds + 1)
    try:
        count = cache.incr(key)
    except ValueError:
        # The window expired between add and incr: this request opens the next.
        cache.add(key, 1, timeout=rate.seconds + 1)
        count = 1
    if count <= rate.count:
        return 0
    return max(1, math.ceil((window + 1) * rate.seconds - now))


def rate_limited(setting: str, scope: str):
    """Answer 429 JSON with Retry-After past the rate named by `setting`."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            rate = parse_rate(getattr(settings, setting, ""))
            if rate is not None:
                wait = rate_limit_wait(
                    scope=scope, rate=rate, client=client_ip(request) or "unknown"
                )
                if wait:
                    response = json_error(
                        429, f"too many requests: try again in {wait} s"
                    )
                    response["Retry-After"] = str(wait)
                    return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
