"""Call budgets of the platform's throttled endpoints, shared by every process.

OPP throttles its status and report calls: 9 a minute per checkout for the
checkout's payment status, 2 a minute for transaction reports (`/query`).
Source (an OPP tenant's table; HyperPay publishes none of its own):
https://support.peachpayments.com/support/solutions/articles/47001220495-throttling-get-query
Past the budget an adapter refuses the call itself (GatewayUnavailable, so
the reconciler backs off) instead of spending the platform's patience.

The count lives in Django's cache (Redis in production, the database cache
otherwise), so web workers and job workers share one budget: a budget of N
is N slots, each taken with an atomic `cache.add` that expires a window after
it was taken, which makes the window slide (no burst of 2N at a minute's
edge, as a fixed per-minute counter would allow).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable

from django.core.cache import BaseCache, caches

WINDOW_SECONDS = 60


class RateLimiter:
    """Allow at most `per_minute` calls per key in any window (0: no limit)."""

    def __init__(
        self,
        per_minute: int,
        *,
        name: str,
        cache: BaseCache | None = None,
        window_seconds: int = WINDOW_SECONDS,
    ) -> None:
        if per_minute < 0:
            raise ValueError("per_minute must be 0 (no limit) or more")
        self.per_minute = per_minute
        self.name = name
        self.window_seconds = window_seconds
        self._cache = cache if cache is not None else caches["default"]

    def acquire(self, key: Hashable) -> bool:
        """Take one call of `key`'s budget; False when it is spent."""
        if not self.per_minute:
            return True
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
        prefix = f"gw-budget:{self.name}:{digest}"
        return any(
            self._cache.add(f"{prefix}:{slot}", 1, timeout=self.window_seconds)
            for slot in range(self.per_minute)
        )
