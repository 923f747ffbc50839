"""The one way a payment changes: lock, decide, write, record — in one transaction.

`payments_change` locks the payments it is given (in primary-key order), asks
each caller-supplied `decide` function what to do with the locked, freshly
read row, checks any status move against `states.TRANSITIONS`, writes the
explicit field updates in one UPDATE per payment and every timeline entry in
one INSERT. It is the one public function that changes a payment: a change
to one payment is a batch of one. `_write_status` is the only code that
assigns `Payment.status`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction

from gateways.money import to_provider

from .. import clock, selectors
from ..exceptions import IllegalTransition
from ..models import (
    EventKind,
    PaidVia,
    Payment,
    PaymentEvent,
    Refund,
    RefundSource,
    RefundStatus,
    new_refund_id,
)
from ..states import PAID_STATUSES, PaymentStatus, can_transition

logger = logging.getLogger("payments")
ZERO = Decimal("0")
SECRET_MARKERS = (
    "secret",
    "password",
    "hmac",
    "signature",
    "authorization",
    "private",
    "indicator",
)


@dataclass(frozen=True)
class Actor:
    """Who causes a change: a staff user, or a named system source."""

    source: str = "system"
    user: Any = None


SYSTEM = Actor()
# How a payment was learned to be paid, by the source of the change.
PAID_VIA = {
    "return": PaidVia.RETURN,
    "status-api": PaidVia.CUSTOMER_POLL,
    "reconcile": PaidVia.RECONCILER,
    "expiry": PaidVia.RECONCILER,
    "refresh": PaidVia.STAFF,
    "admin": PaidVia.STAFF,
}


def paid_via(actor: Actor) -> str:
    """Tell how a change made by `actor` learned of a payment (PaidVia)."""
    if actor.source.startswith("webhook:"):
        return PaidVia.NOTIFICATION
    return PAID_VIA.get(actor.source, PaidVia.OTHER)


@dataclass(frozen=True)
class Entry:
    """One timeline line to add (a status change adds its own)."""

    kind: str
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    from_status: str = ""
    to_status: str = ""


@dataclass(frozen=True)
class ProviderRefundRow:
    """A refund the provider made that nobody here sent: to be stored as a row."""

    amount: Decimal
    gateway_refund_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Change:
    """What to do to one locked payment; every field written is named here.

    `status` is checked against the transition table (None: keep it);
    `updates` are other fields to set; `entries` go on the timeline before
    the status change; `review` flags the payment with that reason (once);
    `refunds` are stored as the payment's refund rows (source: the provider).
    """

    status: str | None = None
    updates: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    entries: tuple[Entry, ...] = ()
    review: str = ""
    refunds: tuple[ProviderRefundRow, ...] = ()


@dataclass(frozen=True)
class Changed:
    """What `payments_change` did to one payment, and the change it applied."""

    payment: Payment
    change: Change
    flagged: bool

    @property
    def changed(self) -> bool:
        """Tell whether the status was set (a refund total counts too)."""
        return self.change.status is not None

    @property
    def ignored(self) -> bool:
        """Tell whether a provider report was kept but not applied."""
        return any(e.kind == EventKind.IGNORED_TRANSITION for e in self.change.entries)


Decide = Callable[[Payment], Change]


def payments_change(
    *,
    decisions: Mapping[Any, Decide],
    actor: Actor,
    key: str = "pk",
    scope: Mapping[str, Any] | None = None,
    then: Callable[[dict[Any, Changed]], None] | None = None,
) -> dict[Any, Changed]:
    """Lock the payments, let each decide its change, write all in one transaction.

    `decisions` are keyed by `key` (the primary key, or e.g. `ref_id`), within
    `scope` (e.g. one gateway's payments); `then` runs last in the same
    transaction (e.g. to record the notification that caused the change).
    Raise Payment.DoesNotExist when a key matches no payment, IllegalTransition
    when a decided status move is not in the table, or whatever `decide`
    raises; nothing is written then.
    """
    now = clock.now()
    events: list[PaymentEvent] = []
    refunds: list[Refund] = []
    rows: list[tuple[Payment, set[str]]] = []
    done: dict[Any, Changed] = {}
    with transaction.atomic():
        locked = Payment.objects.select_for_update().filter(
            **{f"{key}__in": list(decisions)}, **(scope or {})
        )
        for payment in locked.order_by("pk"):
            name = getattr(payment, key)
            change = decisions[name](payment)
            fields, entries = _apply(payment, change, now, actor)
            refunds += [_refund_row(payment, row, now) for row in change.refunds]
            if fields:
                rows.append((payment, fields))
            events += [timeline_entry(payment, entry, actor) for entry in entries]
            flagged = any(e.kind == EventKind.REVIEW_FLAGGED for e in entries)
            done[name] = Changed(payment, change, flagged)
        missing = set(decisions) - done.keys()
        if missing:
            raise Payment.DoesNotExist(f"no payment with {key} {sorted(missing)}")
        _write_rows(rows, now)
        Refund.objects.bulk_create(refunds)
        PaymentEvent.objects.bulk_create(events)
        if then is not None:
            then(done)
    return done


def _refund_row(payment: Payment, row: ProviderRefundRow, now) -> Refund:
    return Refund(
        payment=payment,
        amount=row.amount,
        currency=payment.currency,
        status=RefundStatus.SUCCEEDED,
        source=RefundSource.PROVIDER,
        idempotency_id=new_refund_id(),
        gateway_refund_id=row.gateway_refund_id,
        reason=row.reason,
        date_completed=now,
    )


def _apply(
    payment: Payment, change: Change, now, actor: Actor = SYSTEM
) -> tuple[set[str], list[Entry]]:
    """Apply a change to a locked payment in memory; return the fields and entries."""
    if "status" in change.updates:
        raise IllegalTransition("a status is changed through Change.status only")
    fields = set(change.updates)
    for name, value in change.updates.items():
        setattr(payment, name, value)
    entries = list(change.entries)
    if change.status is not None:
        from_status = payment.status
        fields |= _write_status(payment, change.status, now, actor)
        entries.append(
            Entry(
                EventKind.STATUS_CHANGE,
                change.message,
                change.data,
                from_status=from_status,
                to_status=change.status,
            )
        )
    if change.review and not (
        payment.needs_review and change.review in payment.review_reason
    ):
        payment.needs_review = True
        payment.review_reason = "\n".join(
            filter(None, [payment.review_reason, change.review])
        )
        fields |= {"needs_review", "review_reason"}
        entries.append(Entry(EventKind.REVIEW_FLAGGED, change.review, change.data))
    return fields, entries


def _write_rows(rows: list[tuple[Payment, set[str]]], now) -> None:
    """Write changed payments: one UPDATE per distinct set of new values.

    A batch of payments completed by one provider answer mostly shares its new
    values, so this is a handful of statements instead of one per payment.
    """
    groups: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for payment, fields in rows:
        payment.date_updated = now
        values = {name: getattr(payment, name) for name in sorted(fields)}
        values["date_updated"] = now
        groups.setdefault(repr(sorted(values.items())), (values, []))[1].append(
            payment.pk
        )
    for values, ids in groups.values():
        Payment.objects.filter(pk__in=ids).update(**values)
        if "needs_review" in values:
            # The sidebar's badge counts flagged payments: recount it now, and
            # again after commit in case another request counted in between.
            selectors.forget_review_badge()
            transaction.on_commit(selectors.forget_review_badge)


def _write_status(payment: Payment, to_status: str, now, actor: Actor) -> set[str]:
    """Assign a status the table allows; the only assignment of it anywhere."""
    if not can_transition(payment.status, to_status):
        raise IllegalTransition(f"{payment.status} -> {to_status} is not allowed")
    payment.status = to_status
    fields = {"status"}
    if to_status in PAID_STATUSES and payment.date_paid is None:
        payment.date_paid = now
        payment.paid_via = paid_via(actor)
        fields |= {"date_paid", "paid_via"}
    if to_status != PaymentStatus.PENDING and payment.next_check_at is not None:
        payment.next_check_at = None
        fields.add("next_check_at")
    return fields


def timeline_entry(payment: Payment, entry: Entry, actor: Actor) -> PaymentEvent:
    """Build (not save) the event for one timeline entry, its data redacted."""
    return PaymentEvent(
        payment=payment,
        kind=entry.kind,
        actor=actor.user,
        source=actor.source,
        message=entry.message[:2000],
        data=redact(dict(entry.data)),
        from_status=entry.from_status,
        to_status=entry.to_status,
    )


def money_text(amount: Decimal, currency: str) -> str:
    """Format an amount at its currency's precision, e.g. "10.00 USD"."""
    return f"{to_provider(amount, currency)} {currency}"


def redact(data: Any) -> Any:
    """Replace values under secret-looking keys, recursively."""
    if isinstance(data, Mapping):
        return {
            str(k): "[redacted]"
            if any(marker in str(k).lower() for marker in SECRET_MARKERS)
            else redact(v)
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return [redact(v) for v in data]
    if isinstance(data, Decimal):
        return str(data)
    return data
