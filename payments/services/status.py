"""Applying what providers report, and asking them (refresh, return, expiry).

What a report does is looked up in `states.REPORTS`; the change itself is
written by `transitions.payments_change`, the one way a payment changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from typing import Any

from django.conf import settings

from gateways.base import (
    GatewayConfigError,
    GatewayError,
    GatewayTimeout,
    StatusResult,
)
from gateways.http import time_budget
from gateways.money import in_range, quantize
from gateways.registry import get_gateway

from .. import clock
from ..exceptions import GatewayNotConfigured, ProviderTimedOut
from ..models import EventKind, Payment, PaymentEvent
from ..selectors import payment_ref
from ..states import (
    LATE_COMPLETION,
    VOID_BEFORE_CAPTURE,
    PaymentStatus,
    Verdict,
    refunded_status,
    verdict,
)
from .checks import check_updates, payment_claim_refresh
from .refunds import provider_refund_rows
from .transitions import (
    ZERO,
    Actor,
    Change,
    Changed,
    Entry,
    logger,
    money_text,
    payments_change,
)

S = PaymentStatus
REFRESH_ACTOR = Actor("refresh")
RETURN_ACTOR = Actor("return")
STATUS_API_ACTOR = Actor("status-api")
EXPIRY_ACTOR = Actor("expiry")
# gateway_data key listing the declined attempts already on the timeline.
DECLINED_KEY = "declined_attempts"

# Key in `Payment.gateway_data` while the provider holds money that is not
# settled yet (StatusResult.settling); such a payment never expires.
SETTLING = "settling"
# Keys of `Payment.gateway_data` the domain writes itself: what a provider asks
# to keep (StatusResult.data) never overwrites them.
DOMAIN_KEYS = frozenset({SETTLING, DECLINED_KEY})


def report_change(
    payment: Payment,
    result: StatusResult,
    *,
    kind: str = EventKind.REFRESH,
    data: Mapping[str, Any] | None = None,
    checked_at=None,
) -> Change:
    """Decide what a provider's report does to a locked payment (states.REPORTS).

    Captured money always lands in a paid status with `amount_paid` = what
    the provider captured; a shortfall or excess flags the payment with the
    exact figures. Captured money that cannot be booked (another currency,
    no amount) flags it and holds it from expiry. Refunds the provider made
    that nobody here sent become refund rows of their own. A report that
    would move the payment backwards is kept as an ignored event. WEBHOOK and
    RETURN reports always leave an event; a refresh only when something
    happened. `checked_at` records a scheduled check in the same UPDATE. What
    the provider asks a person to look at (`result.review`) flags the payment
    once unless the report is ignored; failed attempts the payer may follow
    with another (`result.declined`) go on the timeline once each; a
    chargeback is recorded when its amount changes; money held at the
    provider (`settling`, or captured but not booked) is kept in
    `gateway_data` (see SETTLING), with a timeline line when it starts; the
    id the provider names the payment by (`result.transaction_id`) is kept;
    what the provider asks to keep (`result.data`, e.g. the merchant entity a
    payment was paid through) is merged into `gateway_data`, whatever the
    verdict, for the adapter's later calls.
    """
    change = _verdict_change(
        payment, result, kind=kind, data=data, checked_at=checked_at
    )
    found = verdict(payment.status, result.status)
    ignored = found == Verdict.IGNORE
    change = _provider_notes(payment, result, change, kind, ignored=ignored)
    change = _provider_id(payment, result, change, ignored=ignored)
    change = _chargeback(payment, result, change)
    change = _keep_provider_data(payment, result, change)
    held = ""
    if payment.status == S.PENDING and change.status is None:
        if found == Verdict.PAY:
            held = f"the provider holds captured money: {change.review}"
        elif result.settling and result.status == S.PENDING:
            held = result.message or "money received, not settled yet"
    return _track_settling(payment, held, change)


def _verdict_change(
    payment: Payment,
    result: StatusResult,
    *,
    kind: str,
    data: Mapping[str, Any] | None,
    checked_at,
) -> Change:
    event_data = {**(data or {}), "provider": dict(result.raw)}
    entries: tuple[Entry, ...] = ()
    if kind != EventKind.REFRESH:
        message = result.message or f"reported {result.status}"
        entries = (Entry(kind, message, event_data),)
    updates = check_updates(payment, checked_at=checked_at) if checked_at else {}
    # The provider's payload is kept once: on the report's own entry if it has
    # one, else on the status change it causes.
    base = Change(
        updates=updates,
        entries=entries,
        data=dict(data or {}) if entries else event_data,
    )
    match verdict(payment.status, result.status):
        case Verdict.KEEP:
            return base
        case Verdict.PAY:
            return _pay(payment, result, base)
        case Verdict.END:
            reason = result.message or str(result.status).lower()
            ended = VOID_BEFORE_CAPTURE if result.status == S.VOIDED else result.status
            return _move(base, ended, {"failure_reason": reason}, reason)
        case Verdict.REFUNDS:
            return _refunds(payment, result, base)
        case Verdict.VOID:
            return _void(payment, result, base)
    return _ignore(payment, result, base)


def _keep_provider_data(
    payment: Payment, result: StatusResult, change: Change
) -> Change:
    """Merge what the provider asks to keep into `gateway_data`, if it is new."""
    current = _gateway_data(payment, change)
    new = {
        key: value
        for key, value in result.data.items()
        if key not in DOMAIN_KEYS and current.get(key) != value
    }
    if not new:
        return change
    return replace(change, updates={**change.updates, "gateway_data": current | new})


def _gateway_data(payment: Payment, change: Change) -> dict[str, Any]:
    """Return the payment's `gateway_data` with what `change` already sets in it."""
    return {**payment.gateway_data, **change.updates.get("gateway_data", {})}


def _track_settling(payment: Payment, held: str, change: Change) -> Change:
    """Record whether the provider holds money not booked here (never expire it)."""
    if bool(held) == (SETTLING in payment.gateway_data):
        return change
    data = {**_gateway_data(payment, change), SETTLING: held}
    entries = change.entries
    if held:
        note = f"not expiring while the money settles: {held}"
        entries = (*entries, Entry(EventKind.REFRESH, note, change.data))
    else:
        del data[SETTLING]
    updates = {**change.updates, "gateway_data": data}
    return replace(change, updates=updates, entries=entries)


def _provider_id(
    payment: Payment, result: StatusResult, change: Change, *, ignored: bool
) -> Change:
    """Keep the id the provider now names the payment by (StatusResult.transaction_id).

    Some providers assign it only once the payer pays (a Stripe PaymentIntent
    after a session id, an MPGS transaction); refunds and notifications that
    name only that id then find the payment. An ignored report changes nothing.
    """
    ident = result.transaction_id
    limit = Payment._meta.get_field("gateway_transaction_id").max_length
    if ignored or not ident or ident == payment.gateway_transaction_id:
        return change
    if len(ident) > limit or "\x00" in ident:
        return change  # not an id a payment can hold: keep the one known
    return replace(change, updates={**change.updates, "gateway_transaction_id": ident})


def _chargeback(payment: Payment, result: StatusResult, change: Change) -> Change:
    """Record a chargeback the provider reports, once per amount."""
    charged_back = result.amount_charged_back
    if charged_back is None or charged_back == payment.amount_charged_back:
        return change
    text = money_text(charged_back, payment.currency)
    entry = Entry(
        EventKind.CHARGEBACK,
        f"the provider reports {text} charged back by the payer's bank",
        change.data,
    )
    return replace(
        change,
        updates={**change.updates, "amount_charged_back": charged_back},
        entries=(*change.entries, entry),
    )


def _provider_notes(
    payment: Payment, result: StatusResult, change: Change, kind: str, *, ignored: bool
) -> Change:
    """Add a provider's review request and new declined attempts to a change."""
    review = "" if ignored else result.review
    if review and (
        review in payment.review_reason
        or PaymentEvent.objects.filter(
            payment=payment, kind=EventKind.REVIEW_FLAGGED, message=review
        ).exists()
    ):
        review = ""  # flagged once already (maybe resolved since): not again
    seen = list(payment.gateway_data.get(DECLINED_KEY) or [])
    new = [attempt for attempt in result.declined if attempt not in seen]
    if not (review or new):
        return change
    updates = dict(change.updates)
    entries = change.entries
    if new:
        updates["gateway_data"] = {
            **_gateway_data(payment, change),
            DECLINED_KEY: seen + new,
        }
        note = f"payment attempt {', '.join(new)} declined"
        if result.status == S.PENDING:
            note += "; the payer may try again until the checkout session ends"
        entries = (*entries, Entry(kind, note, {"declined": new}))
    return replace(
        change,
        updates=updates,
        entries=entries,
        review=_join(change.review, review),
    )


def _join(*reasons: str) -> str:
    return "\n".join(filter(None, reasons))


def _move(base: Change, status, updates: Mapping[str, Any], message: str) -> Change:
    return replace(
        base, status=status, updates={**base.updates, **updates}, message=message
    )


def _pay(payment: Payment, result: StatusResult, base: Change) -> Change:
    """Book captured money: a paid status with what the provider captured."""
    problem = _capture_problem(payment, result)
    if problem:
        return replace(base, review=problem)
    captured = result.amount
    reviews = [_amount_difference(payment, captured)]
    if payment.status in LATE_COMPLETION:
        reviews.append(
            f"late payment: provider reported success after {payment.status}"
        )
    change = _move(
        base,
        S.COMPLETED,
        {"amount_paid": captured, "failure_reason": ""},
        result.message,
    )
    change = replace(change, review=_join(*reviews))
    if result.status in (S.PARTIALLY_REFUNDED, S.REFUNDED) or result.refunds:
        change = _with_provider_refunds(payment, result, change, paid=captured)
    return change


def _refunds(payment: Payment, result: StatusResult, base: Change) -> Change:
    """Take refunds made at the provider (e.g. in its portal) into account."""
    return _with_provider_refunds(payment, result, base, paid=payment.amount_paid)


def _with_provider_refunds(
    payment: Payment, result: StatusResult, change: Change, *, paid: Decimal
) -> Change:
    """Add the provider's refunds that no row records yet to a change.

    Refunds are matched by the provider's transaction id (ours carry our
    refund id there). Without an itemised list, what the provider reports
    beyond the refunds sent from here becomes one row. The refunded total is
    the sum of the payment's refund rows, never above what was paid.
    """
    rows, refunded, review = provider_refund_rows(payment, result, paid=paid)
    change = replace(change, review=_join(change.review, review))
    if not rows:
        return change
    entries = tuple(
        Entry(
            EventKind.REFUND_SUCCEEDED,
            f"refund of {money_text(row.amount, payment.currency)} made at the "
            f"provider, not sent from here"
            + (f" ({row.gateway_refund_id})" if row.gateway_refund_id else ""),
            {"gateway_refund_id": row.gateway_refund_id},
        )
        for row in rows
    )
    status = refunded_status(refunded, paid)
    message = f"provider reports {money_text(refunded, payment.currency)} refunded"
    if change.status is not None:
        message = _join(change.message, message).replace("\n", "; ")
    return replace(
        change,
        status=status,
        updates={**change.updates, "amount_refunded": refunded},
        message=message,
        entries=(*change.entries, *entries),
        refunds=(*change.refunds, *rows),
    )


def _void(payment: Payment, result: StatusResult, base: Change) -> Change:
    """Unbook a capture the provider voided: nothing is paid any more."""
    change = _move(
        base,
        S.VOIDED,
        {"amount_paid": ZERO, "date_paid": None},
        result.message or "voided at the provider",
    )
    return replace(
        change, review="voided at the provider after capture: check delivery"
    )


def _ignore(payment: Payment, result: StatusResult, base: Change) -> Change:
    ignored = Entry(
        EventKind.IGNORED_TRANSITION,
        f"ignored: provider reported {result.status} while payment is {payment.status}",
        base.data,
        from_status=payment.status,
        to_status=result.status,
    )
    review = ""
    if result.status in (S.PARTIALLY_REFUNDED, S.REFUNDED):
        review = f"provider reports {result.status} but payment is {payment.status}"
    return replace(base, entries=(*base.entries, ignored), review=review)


def _capture_problem(payment: Payment, result: StatusResult) -> str:
    """Say why reported captured money cannot be booked as paid, or ""."""
    if result.currency and result.currency.upper() != payment.currency.upper():
        return (
            f"currency mismatch: provider reported {result.currency}, "
            f"payment is in {payment.currency}"
        )
    if result.amount is None:
        return "provider reported success without an amount"
    if not in_range(result.amount):
        return "provider reported an amount out of range"
    if result.amount <= 0:
        return "provider reported success with nothing captured"
    return ""


def _amount_difference(payment: Payment, captured: Decimal) -> str:
    """Describe a capture that differs from the price, exactly, or ""."""
    due = quantize(payment.amount, payment.currency)
    paid = format(captured, "f")
    # Exactly, before any rounding: 9.995 reported for 10.00 is short.
    if captured < payment.amount:
        return f"underpaid: provider reported {paid} of {due} {payment.currency}"
    if captured > payment.amount:
        return (
            f"overpaid: provider reported {paid} for a price of "
            f"{due} {payment.currency}"
        )
    return ""


def payment_apply_status(
    *,
    payment_id: int,
    result: StatusResult,
    actor: Actor,
    kind: str = EventKind.REFRESH,
    data: Mapping[str, Any] | None = None,
    checked_at=None,
) -> Changed:
    """Apply a provider's report to a payment, never moving it backwards.

    What the report did is told by the answer's `changed`, `flagged` and
    `ignored`.
    """

    def decide(payment: Payment) -> Change:
        return report_change(
            payment, result, kind=kind, data=data, checked_at=checked_at
        )

    return payments_change(decisions={payment_id: decide}, actor=actor)[payment_id]


def payment_refresh(
    *,
    payment: Payment,
    actor: Actor = REFRESH_ACTOR,
    kind: str = EventKind.REFRESH,
    data: Mapping[str, Any] | None = None,
    scheduled: bool = False,
    raise_on_timeout: bool = False,
) -> Changed | None:
    """Ask the provider for a payment's status and apply it.

    Return None when the provider could not be asked; the fault goes on the
    timeline for staff-initiated refreshes and returns. Only a `scheduled`
    check (reconciliation, expiry) moves the payment's check schedule.
    Raise GatewayNotConfigured when its gateway has no credentials, and
    ProviderTimedOut (after recording the fault) when `raise_on_timeout` and
    the provider did not answer within the time budget.
    """
    now = clock.now()
    try:
        result = get_gateway(payment.payment_gateway).fetch_status(payment_ref(payment))
    except GatewayConfigError as exc:
        raise GatewayNotConfigured(str(exc)) from exc
    except GatewayError as exc:
        _record_fault(payment, actor, kind, str(exc), now if scheduled else None)
        if raise_on_timeout and isinstance(exc, GatewayTimeout):
            raise ProviderTimedOut(str(exc)) from exc
        return None
    return payment_apply_status(
        payment_id=payment.pk,
        result=result,
        actor=actor,
        kind=kind,
        data=data,
        checked_at=now if scheduled else None,
    )


def _record_fault(payment: Payment, actor: Actor, kind: str, error: str, checked_at):
    logger.warning("refresh of %s failed: %s", payment.ref_id, error)
    noted = actor.user is not None or kind != EventKind.REFRESH
    if not noted and checked_at is None:
        return

    def decide(locked: Payment) -> Change:
        updates = {}
        if checked_at is not None and locked.status == S.PENDING:
            updates = check_updates(locked, checked_at=checked_at)
        entries = (Entry(EventKind.GATEWAY_ERROR, error),) if noted else ()
        return Change(updates=updates, entries=entries)

    payments_change(decisions={payment.pk: decide}, actor=actor)


# Customer-facing refreshes waiting on providers in this process, by the
# STATUS_REFRESH_CONCURRENCY they were made for (a setting tests may change).
_refresh_slots: dict[int, threading.BoundedSemaphore] = {}
_refresh_slots_lock = threading.Lock()


@contextmanager
def customer_refresh_slot() -> Iterator[bool]:
    """Take one of this process's STATUS_REFRESH_CONCURRENCY refresh slots.

    Yield False at once, without waiting, when all are taken: the caller then
    answers the stored status. With threaded workers this keeps most threads
    (and /health/) free while a provider hangs.
    """
    size = settings.STATUS_REFRESH_CONCURRENCY
    with _refresh_slots_lock:
        slots = _refresh_slots.setdefault(size, threading.BoundedSemaphore(size))
    taken = slots.acquire(blocking=False)
    try:
        yield taken
    finally:
        if taken:
            slots.release()


def payment_refresh_for_customer(*, payment: Payment) -> Payment:
    """Refresh a pending payment a customer is looking at, throttled; return it.

    Throttled per payment across workers (STATUS_REFRESH_SECONDS) and to
    STATUS_REFRESH_CONCURRENCY refreshes at once per process; never moves
    the reconciler's schedule. The provider gets STATUS_REFRESH_BUDGET_SECONDS
    in all, without retries: past it, on any fault, or with no slot free, the
    stored status is answered and the reconciler checks later.
    """
    if payment.status != S.PENDING:
        return payment
    with customer_refresh_slot() as free:
        if not free or not payment_claim_refresh(
            payment=payment, min_age_seconds=settings.STATUS_REFRESH_SECONDS
        ):
            return payment
        try:
            with time_budget(settings.STATUS_REFRESH_BUDGET_SECONDS):
                payment_refresh(payment=payment, actor=STATUS_API_ACTOR)
        except GatewayNotConfigured:
            return payment
    payment.refresh_from_db()
    return payment


def payment_return(*, payment: Payment, params: Mapping[str, str]) -> Payment:
    """Confirm server-to-server where a returning payer landed; return the payment.

    Throttled like the status endpoint, and shares its per-process slots.
    The payer's return goes on the timeline once per status it was seen in:
    reloading the result page adds nothing unless the provider reports
    something new.
    """
    if payment.status != S.PENDING:
        return payment
    with customer_refresh_slot() as free:
        if not free:
            return payment
        return _return_refresh(payment, params)


def _return_refresh(payment: Payment, params: Mapping[str, str]) -> Payment:
    if not payment_claim_refresh(payment=payment, min_age_seconds=2):
        return payment
    try:
        gateway = get_gateway(payment.payment_gateway)
    except GatewayConfigError:
        return payment
    note = gateway.return_message(payment_ref(payment), params)
    seen = PaymentEvent.objects.filter(
        payment=payment, kind=EventKind.RETURN, data__status=payment.status
    ).exists()
    with time_budget(settings.STATUS_REFRESH_BUDGET_SECONDS):
        payment_refresh(
            payment=payment,
            actor=RETURN_ACTOR,
            kind=EventKind.REFRESH if seen else EventKind.RETURN,
            data={
                "note": note,
                "cancelled": "cancelled" in params,
                "status": payment.status,
            },
        )
    payment.refresh_from_db()
    return payment
