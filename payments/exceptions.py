"""Domain errors of payments.services and selectors; views and the admin map them.

Services never choose HTTP status codes: they raise one of these (or return
an outcome), and `payments.views.errors` turns each into an answer in one
place. Faults from `gateways/` are translated into these at the service
boundary, so callers never import from `gateways/`.
"""

from __future__ import annotations


class PaymentError(Exception):
    """Base class of every error the payment services and selectors raise on purpose."""


class IllegalTransition(PaymentError):
    """Raised when a status change is not in the transition table (states.py)."""


class RefundNotAllowed(PaymentError):
    """Raised when a refund cannot be made: status, amount or provider.

    Nothing was written: no refund row, no event.
    """


class GatewayUnavailable(PaymentError):
    """Raised when a provider could not be asked or gave no usable answer.

    Timeouts, connection errors, 5xx and garbage bodies: retrying later may
    work. `payment` is set when a payment row was kept (FAILED, with the
    reason) because its checkout could not be opened.
    """

    def __init__(self, reason: str, *, payment=None):
        super().__init__(reason)
        self.reason = reason
        self.payment = payment


class GatewayNotConfigured(PaymentError):
    """Raised when a payment's gateway is missing credentials or not offered."""


class IdempotencyConflict(PaymentError):
    """Raised when an Idempotency-Key is reused with different parameters."""


class RequestInProgress(PaymentError):
    """Raised when a request with the same Idempotency-Key has not finished."""


class WebhookNotAccepted(PaymentError):
    """Raised when a stored delivery cannot be re-processed (never verified)."""


class PaymentFilterError(PaymentError, ValueError):
    """Raised when a payment list's query parameter holds a value it cannot filter by.

    `parameter` names the query parameter, for the message and for dropping it.
    """

    def __init__(self, parameter: str, problem: str):
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem
