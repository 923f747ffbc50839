"""Domain errors of payments.services and selectors; views and the admin map them.

Services never choose HTTP status codes: they raise one of these (or return
an outcome), each carrying a `PaymentErrorCode`, and `payments.views.errors`
turns a code into an answer in one table. Faults from `gateways/` are
translated into these at the service boundary, so callers never import from
`gateways/`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class PaymentErrorCode(StrEnum):
    """What went wrong, in words a view or the admin can map to an answer."""

    ILLEGAL_TRANSITION = "illegal_transition"
    REFUND_NOT_ALLOWED = "refund_not_allowed"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_TIMEOUT = "provider_timeout"
    GATEWAY_NOT_CONFIGURED = "gateway_not_configured"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    REQUEST_IN_PROGRESS = "request_in_progress"
    WEBHOOK_NOT_ACCEPTED = "webhook_not_accepted"
    INVALID_FILTER = "invalid_filter"
    APPROVAL_NOT_ALLOWED = "approval_not_allowed"
    REPAIR_NOT_ALLOWED = "repair_not_allowed"


class PaymentError(Exception):
    """Base class of every error the payment services and selectors raise on purpose.

    Each subclass names its `code`; the base class is never raised itself.
    """

    code: ClassVar[PaymentErrorCode]


class IllegalTransition(PaymentError):
    """Raised when a status change is not in the transition table (states.py)."""

    code = PaymentErrorCode.ILLEGAL_TRANSITION


class RefundNotAllowed(PaymentError):
    """Raised when a refund cannot be made: status, amount or provider.

    Nothing was written: no refund row, no event.
    """

    code = PaymentErrorCode.REFUND_NOT_ALLOWED


class ApprovalNotAllowed(PaymentError):
    """Raised when a refund awaiting approval cannot be decided by this user now.

    The requester deciding on their own refund, a user without
    `approve_refund`, a refund already decided, or (on approval) a payment
    that can no longer be refunded by that much. Nothing was written.
    """

    code = PaymentErrorCode.APPROVAL_NOT_ALLOWED


class RepairNotAllowed(PaymentError):
    """Raised when a repair cannot be proposed, confirmed or rejected.

    No reason, a target the repair table does not allow, the proposer
    deciding on their own proposal, a user without `repair_payment`, or a
    payment that changed since the proposal. Nothing was written.
    """

    code = PaymentErrorCode.REPAIR_NOT_ALLOWED


class ProviderUnavailable(PaymentError):
    """Raised when a provider could not be asked or gave no usable answer.

    The domain's side of `gateways.base.GatewayUnavailable` (timeouts,
    connection errors, 5xx and garbage bodies): retrying later may work.
    `payment` is set when a payment row was kept (FAILED, with the reason)
    because its checkout could not be opened.
    """

    code = PaymentErrorCode.PROVIDER_UNAVAILABLE

    def __init__(self, reason: str, *, payment=None):
        super().__init__(reason)
        self.reason = reason
        self.payment = payment


class ProviderTimedOut(PaymentError):
    """Raised when a provider did not answer within the request's time budget.

    What was asked is recorded (a fault on the timeline; a refund stays
    PENDING, `refund` set) and the janitor asks again: nothing is half-written.
    """

    code = PaymentErrorCode.PROVIDER_TIMEOUT
    MESSAGE = "the provider did not answer in time; the janitor will retry"

    def __init__(self, detail: str = "", *, refund=None):
        super().__init__(self.MESSAGE)
        self.detail = detail
        self.refund = refund


class GatewayNotConfigured(PaymentError):
    """Raised when a payment's gateway is missing credentials or not offered."""

    code = PaymentErrorCode.GATEWAY_NOT_CONFIGURED


class IdempotencyConflict(PaymentError):
    """Raised when an Idempotency-Key is reused with different parameters."""

    code = PaymentErrorCode.IDEMPOTENCY_CONFLICT


class RequestInProgress(PaymentError):
    """Raised when a request with the same Idempotency-Key has not finished."""

    code = PaymentErrorCode.REQUEST_IN_PROGRESS


class WebhookNotAccepted(PaymentError):
    """Raised when a stored delivery cannot be re-processed (never verified)."""

    code = PaymentErrorCode.WEBHOOK_NOT_ACCEPTED


class PaymentFilterError(PaymentError, ValueError):
    """Raised when a payment list's query parameter holds a value it cannot filter by.

    `parameter` names the query parameter, for the message and for dropping it.
    """

    code = PaymentErrorCode.INVALID_FILTER

    def __init__(self, parameter: str, problem: str):
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem
