"""Refunds: balance checks under the payment lock, idempotent provider calls."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum

from gateways.base import (
    GatewayConfigError,
    GatewayError,
    GatewayTimeout,
    NotSupported,
    RefundRequest,
    RefundResult,
    StatusResult,
)
from gateways.base import RefundStatus as GatewayRefundStatus
from gateways.base import Status as ReportedStatus
from gateways.money import quantize
from gateways.registry import get_gateway

from .. import clock
from ..approval_limits import approval_limit, parse_approval_limits
from ..exceptions import IllegalTransition, ProviderTimedOut, RefundNotAllowed
from ..models import EventKind, Payment, Refund, RefundStatus, new_refund_id
from ..states import (
    REFUND_ENDED_WITHOUT_MONEY,
    REFUNDABLE_STATUSES,
    can_move_refund,
    refunded_status,
)
from ..states import refundable_amount as refundable_formula
from .transitions import (
    SYSTEM,
    ZERO,
    Actor,
    Change,
    Entry,
    ProviderRefundRow,
    money_text,
    payments_change,
)

DONE = (RefundStatus.SUCCEEDED, RefundStatus.MANUAL)
# Refunds the provider has, or may have, made (ours sent, and its own).
AT_PROVIDER = (RefundStatus.SUCCEEDED, RefundStatus.PENDING)
PROVIDER_REFUND_REASON = "refunded at the provider, not from the back office"
# Refunds of one payment counted together against the approval limit.
APPROVAL_WINDOW = timedelta(hours=24)


def refund_totals(payment: Payment) -> dict[str, Decimal]:
    """Sum a payment's refund rows by status (one query)."""
    totals = payment.refunds.aggregate(
        succeeded=Sum("amount", filter=Q(status=RefundStatus.SUCCEEDED)),
        pending=Sum("amount", filter=Q(status=RefundStatus.PENDING)),
        awaiting=Sum("amount", filter=Q(status=RefundStatus.AWAITING_APPROVAL)),
        manual=Sum("amount", filter=Q(status=RefundStatus.MANUAL)),
    )
    return {name: value or ZERO for name, value in totals.items()}


def refundable_amount(payment: Payment, *, leaving_out: Decimal = ZERO) -> Decimal:
    """Return what may still be refunded (states.refundable_amount's formula).

    `leaving_out` is an awaiting refund's own amount, when that refund is the
    one being approved: the others still count against the balance.
    """
    totals = refund_totals(payment)
    return refundable_formula(
        paid=payment.amount_paid,
        succeeded=totals["succeeded"],
        pending=totals["pending"],
        awaiting=totals["awaiting"] - leaving_out,
        manual=totals["manual"],
        charged_back=payment.amount_charged_back,
    )


def approval_limits() -> dict[str, Decimal]:
    """Return REFUND_APPROVAL_LIMITS as {currency: limit} (empty: approval off)."""
    limits = settings.REFUND_APPROVAL_LIMITS
    return parse_approval_limits(limits) if isinstance(limits, str) else limits


def approval_needed(payment: Payment, amount: Decimal, *, manual: bool) -> str:
    """Say why a refund of `amount` must wait for a second person, or "".

    With limits set, a manual-refund record always waits; another refund
    waits when it and the payment's refunds of the last 24 hours (those not
    failed, rejected or lapsed) reach its currency's limit, so splitting a
    refund does not get round it. Call under the payment's lock.
    """
    limits = approval_limits()
    if not limits:
        return ""
    if manual:
        return "a manual-refund record is always approved by a second person"
    limit = approval_limit(limits, payment.currency)
    if limit is None:
        return ""
    since = clock.now() - APPROVAL_WINDOW
    recent = (
        payment.refunds.filter(date_created__gte=since)
        .exclude(status__in=REFUND_ENDED_WITHOUT_MONEY)
        .aggregate(total=Sum("amount"))["total"]
        or ZERO
    )
    total = recent + amount
    if total < limit:
        return ""
    return (
        f"{money_text(total, payment.currency)} refunded within 24 hours reaches "
        f"the approval limit of {money_text(limit, payment.currency)}"
    )


def refund_move(refund: Refund, to_status: str, **fields) -> Refund:
    """Move a refund to a status the refund table allows; return it re-read.

    The one write of a refund's status after it is created; the caller holds
    a lock on it (its row, or its payment's row for decisions on approval).
    The UPDATE is conditional on the status read, so a move that lost a race
    raises instead of overwriting. `fields` are other columns to set with it.
    """
    if not can_move_refund(refund.status, to_status):
        raise IllegalTransition(f"refund {refund.status} -> {to_status} is not allowed")
    moved = Refund.objects.filter(pk=refund.pk, status=refund.status).update(
        status=to_status, date_updated=clock.now(), **fields
    )
    if moved != 1:
        raise IllegalTransition(f"refund {refund.idempotency_id} changed meanwhile")
    refund.refresh_from_db()
    return refund


def provider_refund_rows(
    payment: Payment, result: StatusResult, *, paid: Decimal
) -> tuple[tuple[ProviderRefundRow, ...], Decimal, str]:
    """Return the provider's refunds no row records yet, the new total, a review.

    A listed refund whose provider id is one of ours (our refund id, sent as
    the provider's transaction id, or the id it gave back) is ours; the rest
    were made elsewhere (its portal). Without a list, what the provider
    reports beyond the refunds it has from here becomes one row. New rows
    never take the total past `paid`; a report that would is flagged.
    """
    ours = list(
        payment.refunds.values_list(
            "idempotency_id", "gateway_refund_id", "status", "amount"
        )
    )
    done = sum((amount for *_, status, amount in ours if status in DONE), ZERO)
    amounts: list[tuple[Decimal, str]] = []
    review = []
    if result.refunds is not None:
        known = {
            ident: status for ident, gid, status, _ in ours for ident in (ident, gid)
        }
        known.pop("", None)
        for item in result.refunds:
            if item.status != RefundStatus.SUCCEEDED or item.amount <= 0:
                continue
            if item.gateway_refund_id in known:
                if known[item.gateway_refund_id] == RefundStatus.FAILED:
                    review.append(
                        f"provider reports refund {item.gateway_refund_id} "
                        f"succeeded; it is recorded here as failed"
                    )
                continue
            amounts.append((item.amount, item.gateway_refund_id))
    else:
        reported = result.amount_refunded
        if reported is None:
            reported = paid if result.status == ReportedStatus.REFUNDED else ZERO
        at_provider = sum(
            (amount for *_, status, amount in ours if status in AT_PROVIDER), ZERO
        )
        if reported > at_provider:
            amounts.append((reported - at_provider, ""))
    room = paid - done
    rows = []
    for amount, ident in amounts:
        if amount > room:
            review.append(
                f"provider reports more refunded than was paid: "
                f"{money_text(done + sum(a for a, _ in amounts), payment.currency)} "
                f"of {money_text(paid, payment.currency)}"
            )
            amount = room
        if amount > 0:
            rows.append(ProviderRefundRow(amount, ident, PROVIDER_REFUND_REASON))
            room -= amount
    added = sum((row.amount for row in rows), ZERO)
    return tuple(rows), done + added, "\n".join(dict.fromkeys(review))


def refund_request(
    *,
    payment_id: int,
    amount: Decimal,
    actor: Actor,
    reason: str = "",
    manual: bool = False,
    raise_on_timeout: bool = False,
) -> Refund:
    """Refund part or all of a paid payment; over-refunding is impossible.

    The balance check and the refund row are written under the payment's row
    lock, so two operators cannot both pass the check. The provider call
    happens after that commit, keyed by our refund id. `manual` records money
    returned outside the provider (e.g. crypto) and never needs the gateway.
    A refund at or above REFUND_APPROVAL_LIMITS (and, with limits set, every
    manual record) is stored AWAITING_APPROVAL and sent to nobody until a
    second person approves it (services.approvals).
    Raise RefundNotAllowed, writing nothing, when the refund cannot be made,
    and (with `raise_on_timeout`) ProviderTimedOut when the provider did not
    answer in time: the refund is then kept PENDING for the janitor.
    """
    refund_id = new_refund_id()
    gateway_problem = "" if manual else _refund_gateway_problem(payment_id)

    def check(payment: Payment) -> Change:
        value = _refund_value(payment, amount)
        if gateway_problem:
            raise RefundNotAllowed(gateway_problem)
        waits = approval_needed(payment, value, manual=manual)
        kind = "manual refund" if manual else "refund"
        message = f"{kind} of {money_text(value, payment.currency)}"
        message += f" awaits approval ({waits})" if waits else ""
        message += f": {reason}" if reason else ""
        data = {"refund": refund_id, "awaiting_approval": bool(waits)}
        return Change(entries=(Entry(EventKind.REFUND_REQUESTED, message, data),))

    with transaction.atomic():
        changed = payments_change(decisions={payment_id: check}, actor=actor)
        payment = changed[payment_id].payment
        waits = changed[payment_id].change.entries[0].data["awaiting_approval"]
        status = RefundStatus.MANUAL if manual else RefundStatus.PENDING
        refund = Refund.objects.create(
            payment=payment,
            idempotency_id=refund_id,
            amount=quantize(Decimal(amount), payment.currency),
            currency=payment.currency,
            reason=reason,
            requested_by=actor.user,
            manual=manual,
            status=RefundStatus.AWAITING_APPROVAL if waits else status,
        )
        if manual and not waits:
            _record_manual(refund, actor)
        if waits or manual:
            return refund
    return refund_submit(
        refund_id=refund.pk, actor=actor, raise_on_timeout=raise_on_timeout
    )


def _record_manual(refund: Refund, actor: Actor) -> None:
    """Book a manual refund as done when it is recorded, never before its creation."""
    refund.date_completed = refund.date_created
    refund.save(update_fields=["date_completed"])
    book_refunds(refund, actor, ())


def _refund_value(payment: Payment, amount: Decimal) -> Decimal:
    """Return the refund amount at the currency's precision, or raise."""
    if payment.status not in REFUNDABLE_STATUSES:
        raise RefundNotAllowed(
            f"a {payment.get_status_display().lower()} payment cannot be refunded"
        )
    value = quantize(Decimal(amount), payment.currency)
    if value <= 0:
        raise RefundNotAllowed("the refund amount must be positive")
    available = refundable_amount(payment)
    if value > available:
        charged_back = payment.amount_charged_back
        note = (
            f" ({money_text(charged_back, payment.currency)} was charged back)"
            if charged_back > 0
            else ""
        )
        raise RefundNotAllowed(
            f"at most {money_text(available, payment.currency)} can be refunded" + note
        )
    return value


def _refund_gateway_problem(payment_id: int) -> str:
    """Say why a payment's gateway cannot refund it, or ""."""
    code = Payment.objects.values_list("payment_gateway", flat=True).get(pk=payment_id)
    try:
        gateway = get_gateway(code)
    except GatewayConfigError:
        return f"gateway {code} is not configured: record a manual refund"
    if not gateway.supports_refunds:
        return f"{gateway.display_name} has no refund API: record a manual refund"
    return ""


def refunds_retry_pending(*, min_age_seconds: int, actor: Actor = SYSTEM) -> int:
    """Look up or resend refunds whose provider answer was lost; count the settled."""
    cutoff = clock.now() - timedelta(seconds=min_age_seconds)
    pending = Refund.objects.filter(
        status=RefundStatus.PENDING, date_created__lt=cutoff
    ).values_list("pk", flat=True)[:1000]
    settled = 0
    for refund_id in pending:
        refund = refund_submit(refund_id=refund_id, actor=actor)
        settled += refund.status != RefundStatus.PENDING
    return settled


def refund_submit(
    *, refund_id: int, actor: Actor = SYSTEM, raise_on_timeout: bool = False
) -> Refund:
    """Send a pending refund to the provider, safely after a lost answer.

    A refund that was sent before is looked up first, so a retry after a
    timeout never refunds twice. With `raise_on_timeout`, a provider that did
    not answer in time raises ProviderTimedOut (the refund stays PENDING).
    """
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    payment = refund.payment
    request = RefundRequest(
        ref_id=payment.ref_id,
        refund_id=refund.idempotency_id,
        amount=refund.amount,
        currency=refund.currency,
        transaction_id=payment.gateway_transaction_id,
        reason=refund.reason,
        data=payment.gateway_data,
    )
    try:
        gateway = get_gateway(payment.payment_gateway)
        result = gateway.fetch_refund(request) if refund.attempts else None
        if result is None:
            Refund.objects.filter(pk=refund.pk).update(attempts=F("attempts") + 1)
            result = gateway.refund(request)
    except NotSupported as exc:
        result = RefundResult(
            refund.idempotency_id, GatewayRefundStatus.FAILED, message=str(exc)
        )
    except GatewayError as exc:
        message = f"refund {refund.idempotency_id} not confirmed: {exc}; will retry"
        add_entry(payment.pk, actor, Entry(EventKind.GATEWAY_ERROR, message))
        refund.refresh_from_db()
        if raise_on_timeout and isinstance(exc, GatewayTimeout):
            raise ProviderTimedOut(str(exc), refund=refund) from exc
        return refund
    return refund_finish(refund_id=refund.pk, result=result, actor=actor)


def refund_finish(
    *, refund_id: int, result: RefundResult, actor: Actor = SYSTEM
) -> Refund:
    """Record a provider's final refund answer once, and book a success."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if (
            refund.status != RefundStatus.PENDING
            or result.status == GatewayRefundStatus.PENDING
        ):
            return refund
        succeeded = result.status == GatewayRefundStatus.SUCCEEDED
        refund = refund_move(
            refund,
            RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED,
            gateway_refund_id=result.gateway_refund_id if succeeded else "",
            failure_reason="" if succeeded else result.message,
            date_completed=clock.now(),
        )
        amount = money_text(refund.amount, refund.currency)
        data = {"refund": refund.idempotency_id, "provider": dict(result.raw)}
        if succeeded:
            entry = Entry(
                EventKind.REFUND_SUCCEEDED, f"refund of {amount} succeeded", data
            )
            book_refunds(refund, actor, (entry,))
        else:
            message = f"refund of {amount} failed: {result.message}"
            entry = Entry(EventKind.REFUND_FAILED, message, data)
            add_entry(refund.payment_id, actor, entry)
    return refund


def book_refunds(refund: Refund, actor: Actor, entries: tuple[Entry, ...]) -> None:
    """Add finished refunds to their payment's total and status, under its lock."""

    def decide(payment: Payment) -> Change:
        done = payment.refunds.filter(status__in=DONE).aggregate(t=Sum("amount"))["t"]
        refunded = min(done or ZERO, payment.amount_paid)
        if refunded == payment.amount_refunded:
            return Change(entries=entries)
        return Change(
            status=refunded_status(refunded, payment.amount_paid),
            updates={"amount_refunded": refunded},
            message=f"{money_text(refunded, payment.currency)} refunded in total",
            data={"refund": refund.idempotency_id},
            entries=entries,
        )

    payments_change(decisions={refund.payment_id: decide}, actor=actor)


def add_entry(payment_id: int, actor: Actor, entry: Entry) -> None:
    """Add one line to a payment's timeline, under its row lock."""
    change = Change(entries=(entry,))
    payments_change(decisions={payment_id: lambda _payment: change}, actor=actor)
