"""Call budgets of the platform's throttled endpoints, kept per process.

OPP throttles its status and report calls: 9 a minute per checkout for the
checkout's payment status, 2 a minute for transaction reports (`/query`).
Source (an OPP tenant's table; HyperPay publishes none of its own):
https://support.peachpayments.com/support/solutions/articles/47001220495-throttling-get-query
Past the budget an adapter refuses the call itself (GatewayUnavailable, so
the reconciler backs off) instead of spending the platform's patience. Each
process keeps its own count; with several processes the platform's own 429
is the backstop (also GatewayUnavailable).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

WINDOW_SECONDS = 60.0
# Keys kept before the ones with no call in the window are dropped.
PRUNE_AT = 4096


class RateLimiter:
    """Allow at most `per_minute` calls per key in any 60 seconds (0: no limit)."""

    def __init__(
        self, per_minute: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_minute < 0:
            raise ValueError("per_minute must be 0 (no limit) or more")
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[Hashable, deque[float]] = {}

    def acquire(self, key: Hashable) -> bool:
        """Take one call of `key`'s budget; False when it is spent."""
        if not self.per_minute:
            return True
        now = self._clock()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and now - calls[0] >= WINDOW_SECONDS:
                calls.popleft()
            if len(calls) >= self.per_minute:
                return False
            calls.append(now)
            if len(self._calls) > PRUNE_AT:
                self._prune(now)
            return True

    def _prune(self, now: float) -> None:
        idle = [
            key
            for key, calls in self._calls.items()
            if not calls or now - calls[-1] >= WINDOW_SECONDS
        ]
        for key in idle:
            del self._calls[key]
