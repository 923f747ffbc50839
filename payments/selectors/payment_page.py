"""What the payment page shows above its fields: the timeline beside the summary."""

from __future__ import annotations

from django.db.models import QuerySet

from ..models import PaymentEvent

# The payment page lists this many of a payment's latest events; the timeline
# list (PaymentEvent admin, filtered by the reference) has them all.
TIMELINE_LIMIT = 100


def payment_timeline(*, payment_id: int, limit: int = TIMELINE_LIMIT) -> list:
    """Return a payment's latest `limit` events, oldest first, with their actors."""
    latest: QuerySet = (
        PaymentEvent.objects.filter(payment_id=payment_id)
        .select_related("actor")
        .order_by("-created_at", "-id")[:limit]
    )
    return list(reversed(latest))


def payment_event_count(*, payment_id: int) -> int:
    """Count a payment's events (the page says when it shows only the latest)."""
    return PaymentEvent.objects.filter(payment_id=payment_id).count()
