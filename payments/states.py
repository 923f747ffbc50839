"""Canonical payment statuses, the only transitions between them, money rules.

Everything that decides a payment's status reads this module: the transition
table, which statuses may be refunded, how refund totals map to a status, and
what to do with a provider's report in each status (REPORTS).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from django.db import models

from gateways.base import Status as ProviderStatus


class PaymentStatus(models.TextChoices):
    """A payment's status: the same words the gateways report (gateways.base)."""

    PENDING = ProviderStatus.PENDING, "Pending"
    COMPLETED = ProviderStatus.COMPLETED, "Completed"
    FAILED = ProviderStatus.FAILED, "Failed"
    EXPIRED = ProviderStatus.EXPIRED, "Expired"
    PARTIALLY_REFUNDED = ProviderStatus.PARTIALLY_REFUNDED, "Partially refunded"
    REFUNDED = ProviderStatus.REFUNDED, "Refunded"
    VOIDED = ProviderStatus.VOIDED, "Voided"


# Shorthand for the tables below, as in the services: always PaymentStatus.
S = PaymentStatus


# Captured money already partly or wholly refunded at the provider (e.g. in
# its portal) may be the first news of a payment: it lands in a paid status.
_CAPTURED = frozenset({S.COMPLETED, S.PARTIALLY_REFUNDED, S.REFUNDED})

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.FAILED, S.EXPIRED}) | _CAPTURED,
    S.EXPIRED: _CAPTURED,  # late payment: also needs review
    S.FAILED: _CAPTURED,  # provider later reports success: review
    # VOIDED: the provider voided the capture (same-day void); flagged.
    S.COMPLETED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.VOIDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.REFUNDED: frozenset(),
    S.VOIDED: frozenset(),
}

# Statuses in which money has been received.
PAID_STATUSES = _CAPTURED
# Statuses in which (part of) the money can still be given back.
REFUNDABLE_STATUSES = frozenset({S.COMPLETED, S.PARTIALLY_REFUNDED})
# Statuses the reconciler keeps asking the provider about.
OPEN_STATUSES = frozenset({S.PENDING})
# Reaching a paid status from these needs a human to look.
LATE_COMPLETION = frozenset({S.EXPIRED, S.FAILED})
# Ended without money kept.
ENDED_UNPAID = frozenset({S.FAILED, S.EXPIRED, S.VOIDED})
# What a report of VOIDED ends a payment that was never captured as.
VOID_BEFORE_CAPTURE = S.FAILED


def can_transition(from_status: str, to_status: str) -> bool:
    """Tell whether the table allows a move."""
    return to_status in TRANSITIONS.get(from_status, frozenset())


def refunded_status(refunded: Decimal, paid: Decimal) -> str:
    """Return the status a paid payment has once `refunded` of `paid` went back."""
    return S.REFUNDED if refunded >= paid else S.PARTIALLY_REFUNDED


def refundable_amount(
    *,
    paid: Decimal,
    succeeded: Decimal,
    pending: Decimal,
    awaiting: Decimal,
    manual: Decimal,
    charged_back: Decimal,
) -> Decimal:
    """Return what may still be refunded: the one formula every caller uses.

    Paid, less refunds the provider made (ours and the provider's own), less
    refunds still on their way, less refunds awaiting a second person's
    approval, less money returned by hand, less what the payer's bank took
    back. Never below zero.
    """
    left = paid - succeeded - pending - awaiting - manual - charged_back
    return max(left, Decimal(0))


# A payment the provider cannot settle (an id it no longer knows, a lost
# order) may be repaired by two people (services.repairs): from a status that
# is not final in money terms to an ending the transition table allows.
# Refund statuses are never repair targets: they need refund rows.
REPAIR_TARGETS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.COMPLETED, S.FAILED, S.EXPIRED}),
    S.EXPIRED: frozenset({S.COMPLETED}),
    S.FAILED: frozenset({S.COMPLETED}),
}


def repair_targets(status: str) -> frozenset[str]:
    """Return the statuses a payment in `status` may be repaired to."""
    targets = REPAIR_TARGETS.get(status, frozenset())
    return frozenset(t for t in targets if can_transition(status, t))


class RefundStatus(models.TextChoices):
    """A refund's status; the moves between them are REFUND_TRANSITIONS."""

    AWAITING_APPROVAL = "AWAITING_APPROVAL", "Awaiting approval"
    PENDING = "PENDING", "Pending"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    MANUAL = "MANUAL", "Manual (recorded)"
    REJECTED = "REJECTED", "Rejected"
    LAPSED = "LAPSED", "Lapsed (not approved in time)"


R = RefundStatus
# The only moves of a refund's status (services.refunds.refund_move checks them).
REFUND_TRANSITIONS: dict[str, frozenset[str]] = {
    R.AWAITING_APPROVAL: frozenset({R.PENDING, R.MANUAL, R.REJECTED, R.LAPSED}),
    R.PENDING: frozenset({R.SUCCEEDED, R.FAILED}),
    R.SUCCEEDED: frozenset(),
    R.FAILED: frozenset(),
    R.MANUAL: frozenset(),
    R.REJECTED: frozenset(),
    R.LAPSED: frozenset(),
}
# Refunds that never returned money and never will: left out of every total.
REFUND_ENDED_WITHOUT_MONEY = frozenset({R.FAILED, R.REJECTED, R.LAPSED})


def can_move_refund(from_status: str, to_status: str) -> bool:
    """Tell whether the refund table allows a move."""
    return to_status in REFUND_TRANSITIONS.get(from_status, frozenset())


class Verdict(StrEnum):
    """What a provider's report means for a payment in a given status."""

    KEEP = "keep"  # nothing to change
    PAY = "pay"  # captured money: a paid status with what was captured
    END = "end"  # move it to the reported FAILED or EXPIRED
    REFUNDS = "refunds"  # take the provider's refunds into account
    VOID = "void"  # the provider voided the capture: nothing is paid any more
    IGNORE = "ignore"  # it would move the payment backwards: record, never apply


# (current status, reported status) -> verdict; any pair missing is IGNORE.
# A report of None ("still pending", "unknown") always keeps.
REPORTS: dict[tuple[str, str], Verdict] = {
    (S.PENDING, S.PENDING): Verdict.KEEP,
    (S.PENDING, S.COMPLETED): Verdict.PAY,
    (S.PENDING, S.PARTIALLY_REFUNDED): Verdict.PAY,
    (S.PENDING, S.REFUNDED): Verdict.PAY,
    (S.PENDING, S.FAILED): Verdict.END,
    (S.PENDING, S.EXPIRED): Verdict.END,
    (S.PENDING, S.VOIDED): Verdict.END,  # an authorisation voided: FAILED
    (S.FAILED, S.FAILED): Verdict.KEEP,
    (S.FAILED, S.VOIDED): Verdict.KEEP,
    (S.FAILED, S.COMPLETED): Verdict.PAY,
    (S.FAILED, S.PARTIALLY_REFUNDED): Verdict.PAY,
    (S.FAILED, S.REFUNDED): Verdict.PAY,
    (S.EXPIRED, S.EXPIRED): Verdict.KEEP,
    (S.EXPIRED, S.VOIDED): Verdict.KEEP,
    (S.EXPIRED, S.COMPLETED): Verdict.PAY,
    (S.EXPIRED, S.PARTIALLY_REFUNDED): Verdict.PAY,
    (S.EXPIRED, S.REFUNDED): Verdict.PAY,
    (S.COMPLETED, S.COMPLETED): Verdict.KEEP,
    (S.COMPLETED, S.PARTIALLY_REFUNDED): Verdict.REFUNDS,
    (S.COMPLETED, S.REFUNDED): Verdict.REFUNDS,
    (S.COMPLETED, S.VOIDED): Verdict.VOID,
    (S.PARTIALLY_REFUNDED, S.COMPLETED): Verdict.KEEP,
    (S.PARTIALLY_REFUNDED, S.PARTIALLY_REFUNDED): Verdict.REFUNDS,
    (S.PARTIALLY_REFUNDED, S.REFUNDED): Verdict.REFUNDS,
    (S.REFUNDED, S.COMPLETED): Verdict.KEEP,
    (S.REFUNDED, S.PARTIALLY_REFUNDED): Verdict.KEEP,
    (S.REFUNDED, S.REFUNDED): Verdict.KEEP,
    (S.VOIDED, S.VOIDED): Verdict.KEEP,
}


def verdict(current: str, reported: str | None) -> Verdict:
    """Look up what a provider's report means for a payment in `current`."""
    if reported is None:
        return Verdict.KEEP
    return REPORTS.get((current, reported), Verdict.IGNORE)
