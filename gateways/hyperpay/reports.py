"""Reading HyperPay's answers: transactions, and what they say about a payment.

The checkout status, the transaction reports and the notifications all carry
payment objects (`id`, `paymentType`, `amount`, `currency`, `result`,
`merchantTransactionId`, `referencedId`); this module reads them and maps
what they say about one payment of ours to a canonical status. Sources:
https://hyperpay.docs.oppwa.com/tutorials/integration-guide (payment status),
https://hyperpay.docs.oppwa.com/tutorials/reporting/transaction (reports),
https://docs.latam.ppro.com/manage-payments/backoffice-operations (RF, RV).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..base import (
    GatewayUnavailable,
    ProviderRefund,
    RefundResult,
    RefundStatus,
    Status,
    StatusResult,
)
from ..money import in_range, parse_amount, precision_problem, to_provider
from .codes import Outcome, classify

# Debit (sale): a success code always means captured money. Pre-authorisation
# (PA, later CP) is not offered.
DEBIT = "DB"
REFUND, REVERSAL, CHARGEBACK, CHARGEBACK_REVERSAL = "RF", "RV", "CB", "CR"
DONE = frozenset({Outcome.SUCCESS, Outcome.REVIEW})
OPEN = frozenset({Outcome.PENDING, Outcome.WAITING, Outcome.UNCERTAIN})
# Keys of the payment's gateway data that record where it was paid
# (StatusResult.data): later reports and refunds use that entity.
PAID_ENTITY = "entity_id"
PAID_PAYMENT = "payment_id"


@dataclass(frozen=True)
class Transaction:
    """One transaction of an answer (a payment object), read and classified."""

    entity_id: str
    id: str
    type: str
    code: str
    description: str
    outcome: Outcome
    amount: Decimal | None
    currency: str
    reference: str  # merchantTransactionId
    referenced_id: str  # the payment a refund, reversal or chargeback is about
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def result(self) -> str:
        return f"{self.code} {self.description}".strip()


def paid_through(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """Return the (entity, payment id) a payment was recorded as paid through."""
    entity_id = str(data.get(PAID_ENTITY) or "")
    payment_id = str(data.get(PAID_PAYMENT) or "")
    return (entity_id, payment_id) if entity_id and payment_id else None


def result_of(data: Mapping[str, Any]) -> tuple[str, str]:
    """Return an answer's (result code, description); a fault when it has none."""
    result = data.get("result")
    if not isinstance(result, dict):
        raise GatewayUnavailable("hyperpay: answer without a result")
    return str(result.get("code") or ""), str(result.get("description") or "")


def outcome_of(code: str) -> Outcome | None:
    """Classify a result code; None when it is not one."""
    try:
        return classify(code)
    except ValueError:
        return None


def parse_transaction(entity_id: str, data: Mapping[str, Any]) -> Transaction:
    """Read a payment object; ValueError when it is not one."""
    ident = str(data.get("id") or "")
    if not ident:
        raise ValueError("transaction without an id")
    result = data.get("result") if isinstance(data.get("result"), dict) else {}
    code = str(result.get("code") or "")
    amount = None
    if data.get("amount") is not None:
        amount = parse_amount(data["amount"])
        if not in_range(amount):
            raise ValueError("amount out of range")
    return Transaction(
        entity_id=entity_id,
        id=ident,
        type=str(data.get("paymentType") or ""),
        code=code,
        description=str(result.get("description") or ""),
        outcome=classify(code),
        amount=amount,
        currency=str(data.get("currency") or ""),
        reference=str(data.get("merchantTransactionId") or ""),
        referenced_id=str(data.get("referencedId") or ""),
        raw=dict(data),
    )


def read_transaction(entity_id: str, data: object) -> Transaction:
    """Read a payment object from an answer; a fault when it is garbage."""
    if not isinstance(data, dict):
        raise GatewayUnavailable("hyperpay: a transaction that is not an object")
    try:
        return parse_transaction(entity_id, data)
    except ValueError as exc:
        raise GatewayUnavailable(f"hyperpay: unreadable transaction: {exc}") from exc


def summarise(
    ref_id: str, found: list[Transaction], *, over: bool, linked: bool
) -> StatusResult:
    """Map what the platform reports about one payment to a canonical status.

    `found` lists its transactions newest first (repeats allowed); `over`
    says its checkouts can no longer be paid; `linked` that refunds and
    chargebacks were asked for, so their absence means there are none.
    """
    found = _first_of_each(found)
    debits = [item for item in found if item.type == DEBIT]
    for item in debits:
        if item.reference and item.reference != ref_id:
            raise GatewayUnavailable(
                "hyperpay: answer is about another payment "
                f"(merchantTransactionId {item.reference!r})"
            )
    captured = [i for i in debits if i.outcome in DONE | {Outcome.CHARGEBACK}]
    if captured:
        return _captured(ref_id, found, captured, linked=linked)
    raw = {"transactions": [dict(item.raw) for item in found]}
    by_outcome = {
        outcome: [i for i in debits if i.outcome == outcome] for outcome in OPEN
    }
    if uncertain := by_outcome[Outcome.UNCERTAIN]:
        item = uncertain[0]
        return StatusResult(
            ref_id,
            Status.PENDING,
            message=f"outcome uncertain: {item.result}",
            raw=raw,
            settling=True,
            review=(
                f"HyperPay: outcome of payment {item.id} is uncertain "
                f"({item.result}): confirm with HyperPay whether it was charged"
            ),
        )
    if waiting := by_outcome[Outcome.WAITING]:
        return StatusResult(
            ref_id,
            Status.PENDING,
            message=f"waiting for the payment to complete: {waiting[0].result}",
            raw=raw,
            settling=True,
        )
    if pending := by_outcome[Outcome.PENDING]:
        return StatusResult(
            ref_id, Status.PENDING, message=f"pending: {pending[0].result}", raw=raw
        )
    if debits:
        newest = debits[0]
        if newest.outcome == Outcome.TIMED_OUT:
            message = f"timed out: {newest.result}"
            return StatusResult(ref_id, Status.EXPIRED, message=message, raw=raw)
        message = f"declined: {newest.result}"
        return StatusResult(ref_id, Status.FAILED, message=message, raw=raw)
    if over:
        message = "no payment at HyperPay; the checkout has expired"
        return StatusResult(ref_id, Status.EXPIRED, message=message, raw=raw)
    return StatusResult(ref_id, Status.PENDING, message="not paid yet", raw=raw)


def _captured(
    ref_id: str,
    found: list[Transaction],
    captured: list[Transaction],
    *,
    linked: bool,
) -> StatusResult:
    """Report captured money, with its refunds, reversal and chargebacks."""
    ids = {item.id for item in captured}
    newest = captured[0]
    amounts = [item.amount for item in captured]
    amount = None if None in amounts else sum(amounts, Decimal(0))
    currency = newest.currency
    notes, review = [f"paid: {newest.result}"], []
    if len(captured) > 1:
        review.append(
            f"HyperPay: {len(captured)} captured payments for one reference "
            f"({', '.join(sorted(ids))})"
        )
    review.extend(
        f"HyperPay: payment {item.id} succeeded but is to be reviewed manually "
        f"({item.result})"
        for item in captured
        if item.outcome == Outcome.REVIEW
    )
    linked_to = [i for i in found if i.type != DEBIT and i.referenced_id in ids]
    refunds = tuple(
        ProviderRefund(
            gateway_refund_id=item.reference or item.id,
            amount=item.amount or Decimal(0),
            status=_refund_status(item.outcome),
        )
        for item in linked_to
        if item.type == REFUND
    )
    refunded = sum(
        (r.amount for r in refunds if r.status == RefundStatus.SUCCEEDED), Decimal(0)
    )
    charged_back = _charged_back(found, ids)
    if charged_back is not None:
        review.append(
            f"HyperPay: chargeback of {_money(charged_back, currency)} {currency} "
            f"on payment {newest.id}"
        )
    status = Status.COMPLETED
    if any(i.type == REVERSAL and i.outcome in DONE for i in linked_to):
        status = Status.VOIDED
        notes.append("reversed at HyperPay")
    elif amount is not None and refunded > 0:
        status = Status.REFUNDED if refunded >= amount else Status.PARTIALLY_REFUNDED
        notes.append(f"refunded {_money(refunded, currency)} {currency}")
    return StatusResult(
        ref_id=ref_id,
        status=status,
        amount=amount,
        currency=currency,
        transaction_id=newest.id,
        amount_refunded=refunded if linked else None,
        message="; ".join(notes),
        raw={"transactions": [dict(item.raw) for item in found]},
        refunds=refunds if linked else None,
        amount_charged_back=charged_back,
        review="\n".join(review),
        data={PAID_ENTITY: newest.entity_id, PAID_PAYMENT: newest.id},
    )


def _charged_back(found: list[Transaction], ids: set[str]) -> Decimal | None:
    """Return what chargebacks took back from the captured payments, if any."""
    taken = [
        item
        for item in found
        if (
            item.type == DEBIT and item.id in ids and item.outcome == Outcome.CHARGEBACK
        )
        or (
            item.referenced_id in ids
            and (item.type == CHARGEBACK or item.outcome == Outcome.CHARGEBACK)
        )
    ]
    if not taken:
        return None
    back = sum((item.amount or Decimal(0) for item in taken), Decimal(0))
    reversed_back = sum(
        (
            item.amount or Decimal(0)
            for item in found
            if item.type == CHARGEBACK_REVERSAL
            and item.referenced_id in ids
            and item.outcome in DONE
        ),
        Decimal(0),
    )
    return max(back - reversed_back, Decimal(0))


def refund_result(
    refund_id: str, entity_id: str, data: Mapping[str, Any]
) -> RefundResult:
    """Map a refund's answer (or its transaction in a report) to a result.

    A communication error leaves the outcome unknown: a fault, so that the
    caller looks the refund up later instead of sending it again.
    """
    item = read_transaction(entity_id, data) if data.get("id") else None
    code, description = result_of(data)
    outcome = item.outcome if item else outcome_of(code)
    if outcome is None:
        raise GatewayUnavailable(f"hyperpay: unreadable refund answer {code!r}")
    if outcome == Outcome.UNCERTAIN:
        raise GatewayUnavailable(
            f"hyperpay: refund outcome uncertain: {code} {description}"
        )
    status = _refund_status(outcome)
    message = {
        RefundStatus.SUCCEEDED: f"refund approved ({code})",
        RefundStatus.PENDING: f"refund pending ({code} {description})",
    }.get(status, f"refund refused: {code} {description}")
    return RefundResult(
        refund_id,
        status,
        gateway_refund_id=item.id if item else "",
        message=message,
        raw=dict(data),
    )


def notification_hint(item: Transaction) -> str:
    """Return what a notified debit says on its own (confirmed before use)."""
    return {
        Outcome.SUCCESS: Status.COMPLETED,
        Outcome.REVIEW: Status.COMPLETED,
        Outcome.CHARGEBACK: Status.COMPLETED,
        Outcome.DECLINED: Status.FAILED,
        Outcome.TIMED_OUT: Status.EXPIRED,
    }.get(item.outcome, Status.PENDING)


def _refund_status(outcome: Outcome) -> str:
    if outcome in DONE:
        return RefundStatus.SUCCEEDED
    if outcome in OPEN:
        return RefundStatus.PENDING
    return RefundStatus.FAILED


def _first_of_each(found: list[Transaction]) -> list[Transaction]:
    """Drop repeats of a transaction (two answers may list it), keeping order."""
    seen: set[str] = set()
    kept = []
    for item in found:
        if item.id not in seen:
            seen.add(item.id)
            kept.append(item)
    return kept


def _money(amount: Decimal, currency: str) -> str:
    """Format an amount at its currency's places, unless that would round it."""
    fits = not precision_problem(amount, currency)
    return to_provider(amount, currency) if fits else format(amount, "f")
