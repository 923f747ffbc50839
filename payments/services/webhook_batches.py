"""Queued webhook intake: store and acknowledge now, apply in batches in a task.

With `WEBHOOK_APPLY=queued` a verified notification is stored as RECEIVED
(its event id unique, so a re-send is a DUPLICATE at once) and acknowledged
(`webhooks.webhook_enqueue`); a django-q2 task applies the stored deliveries many per transaction. A task
is queued when none is pending (a cache key), and it clears that key before
each look for work, so a delivery stored after its last look queues the next
task: applied state follows within the broker's poll. The reconciler applies
any delivery left RECEIVED (a lost task), so nothing is lost.
"""

from __future__ import annotations

from datetime import timedelta
from time import sleep

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from gateways.base import GatewayConfigError, WebhookRejected
from gateways.registry import get_gateway

from ..models import Payment, WebhookDelivery
from .transitions import Actor, payments_change
from .webhooks import (
    APPLY_KEY,
    Outcome,
    event_decision,
    event_lookup,
    event_outcome,
    event_result,
    store_delivery,
    webhook_process,
)

BATCH = 200
# Seconds the queued task waits after a short batch for more to arrive.
APPLY_LINGER_SECONDS = 0.1


def webhooks_apply_received(*, min_age_seconds: int = 0, linger: float = 0.0) -> int:
    """Apply stored RECEIVED deliveries, a batch per transaction; count them.

    With `linger` (the queued task's way), a batch shorter than BATCH is
    followed by a pause of that many seconds while this applier holds the
    queue key: notifications stored meanwhile join its next batch instead of
    queuing tasks of their own. The key is released before the last look, so
    a delivery stored after that look queues the next task.
    """
    applied = 0
    holding = linger > 0
    while True:
        if holding:
            cache.set(APPLY_KEY, 1, timeout=30)
        else:
            cache.delete(APPLY_KEY)  # a delivery stored from now on queues a task
        found = _apply_batch(timezone.now() - timedelta(seconds=min_age_seconds))
        applied += found
        if not found:
            if not holding:
                return applied
            holding = False  # release the key, then look once more
            continue
        holding = linger > 0
        if holding and found < BATCH:
            sleep(linger)


def _apply_batch(cutoff) -> int:
    """Apply up to BATCH deliveries received by `cutoff` in one transaction."""
    with transaction.atomic():
        deliveries = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(outcome=Outcome.RECEIVED, received_at__lte=cutoff)
            .order_by("pk")[:BATCH]
        )
        for group in _groups(deliveries):
            _apply_group(group)
    return len(deliveries)


def _groups(deliveries: list[WebhookDelivery]):
    """Yield ((gateway, field), {value: (delivery, event, result)}), one per payment."""
    groups: dict[tuple[str, str], dict[str, tuple]] = {}
    for delivery in deliveries:
        try:
            gateway = get_gateway(delivery.gateway)
            event = gateway.parse_webhook(
                delivery.body.encode(), delivery.headers, verified=True
            )
        except (GatewayConfigError, WebhookRejected) as exc:
            store_delivery(delivery, Outcome.ERROR, error=str(exc))
            continue
        if event.confirm or not (event.ref_id or event.transaction_id):
            # Asks the provider first, or names no payment: the one-by-one path.
            webhook_process(delivery=delivery, event=event)
            continue
        field, value = event_lookup(event)
        group = groups.setdefault((delivery.gateway, field), {})
        if value in group:  # a second report for one payment: next round
            continue
        group[value] = (delivery, event, event_result(gateway, delivery, event))
    yield from groups.items()


def _apply_group(group) -> None:
    (code, field), items = group
    known = set(
        Payment.objects.filter(
            payment_gateway=code, **{f"{field}__in": list(items)}
        ).values_list(field, flat=True)
    )
    for value in set(items) - known:
        store_delivery(items[value][0], Outcome.UNMATCHED, error="no payment matches")
    if not known:
        return
    done = payments_change(
        decisions={v: event_decision(items[v][1], items[v][2]) for v in known},
        actor=Actor(f"webhook:{code}"),
        key=field,
        scope={"payment_gateway": code},
    )
    _record_outcomes(
        [
            (
                items[value][0].pk,
                event_outcome(changed, items[value][1]),
                changed.payment.pk,
            )
            for value, changed in done.items()
        ]
    )


def _record_outcomes(rows: list[tuple[int, str, int]]) -> None:
    """Write a batch's delivery outcomes and payments in one UPDATE.

    Raw SQL: the ORM's per-row CASE expressions (`bulk_update`) cost more CPU
    than the rest of the batch. Only integers and outcome codes are bound.
    """
    if not rows:
        return
    table = connection.ops.quote_name(WebhookDelivery._meta.db_table)
    cases = " ".join(["WHEN %s THEN %s"] * len(rows))
    marks = ", ".join(["%s"] * len(rows))
    # Only the quoted table name and placeholders are interpolated.
    sql = (
        f"UPDATE {table} SET outcome = CASE id {cases} END, "  # noqa: S608
        f"payment_id = CASE id {cases} END, processed_at = %s "
        f"WHERE id IN ({marks})"
    )
    params = [
        *(value for pk, outcome, _p in rows for value in (pk, outcome)),
        *(value for pk, _o, payment in rows for value in (pk, payment)),
        timezone.now(),
        *(pk for pk, _o, _p in rows),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
