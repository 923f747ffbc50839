"""Liveness of what the app depends on: database, cache, task broker."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from ..selectors import last_successful_reconciliation, webhook_silence

logger = logging.getLogger("payments.health")


@dataclass(frozen=True)
class HealthReport:
    """Each check's result ("ok" or what failed) and the reconciler's lag."""

    checks: dict[str, str] = field(default_factory=dict)
    last_reconciliation_age_seconds: float | None = None
    # Worth a look but not an outage (the answer stays 200): e.g. a gateway
    # whose payments complete only through polling (webhook silence).
    warnings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(result == "ok" for result in self.checks.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "unavailable",
            "checks": dict(self.checks),
            "last_reconciliation_age_seconds": self.last_reconciliation_age_seconds,
            "warnings": list(self.warnings),
        }


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = f"health:{secrets.token_hex(8)}"
    cache.set(key, "1", timeout=10)
    if cache.get(key) != "1":
        raise RuntimeError("the cache did not keep a value")
    cache.delete(key)


def _check_broker() -> None:
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if Conf.ORM:
        # The ORM broker's own ping() says True without asking: read its table.
        OrmQ.objects.exists()
    elif not get_broker().ping():
        raise RuntimeError("the broker did not answer")


CHECKS = {"database": _check_database, "cache": _check_cache, "broker": _check_broker}


def health_checks() -> dict[str, str]:
    """Run every check: "ok", or what failed (its error type, never a secret)."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # any failure is a failed check, not a 500
            logger.error("health check %s failed: %s", name, exc)
            results[name] = f"failed: {type(exc).__name__}"
        else:
            results[name] = "ok"
    return results


def system_health() -> HealthReport:
    """Run every check; a failed one is named with its error type, never a secret."""
    results = health_checks()
    age = None
    if results["database"] == "ok":
        try:
            run = last_successful_reconciliation()
        except Exception as exc:
            logger.error("health: reconciliation lookup failed: %s", exc)
            run = None
        if run is not None:
            age = round((timezone.now() - run.finished_at).total_seconds(), 1)
    return HealthReport(
        results, age, _warnings() if results["database"] == "ok" else []
    )


def _warnings() -> list[str]:
    try:
        return [item.warning for item in webhook_silence() if item.silent]
    except Exception as exc:  # a warning lookup never fails the health check
        logger.error("health: webhook silence lookup failed: %s", exc)
        return []
