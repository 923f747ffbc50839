"""The one interface every payment provider adapter implements.

Adapters take and return the frozen dataclasses below; they never see a Django
model. A decline is a result; exceptions are for faults.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar


class Status:
    """Canonical payment statuses shared by every adapter and the domain."""

    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    # The provider voided captured money (e.g. an MPGS same-day VOID): nothing
    # is paid any more. Reported for a payment never captured, it ends it.
    VOIDED = "VOIDED"

    ALL = (PENDING, COMPLETED, FAILED, EXPIRED, PARTIALLY_REFUNDED, REFUNDED, VOIDED)


class RefundStatus:
    """Outcome of a refund at the provider."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


# --- faults -----------------------------------------------------------------


class GatewayError(Exception):
    """Base class of every gateway fault."""


class GatewayUnavailable(GatewayError):
    """The provider could not be reached or answered garbage; retryable.

    `contacted` is False when the request certainly never reached the provider
    (connection refused, DNS, connect timeout): only then is a non-idempotent
    call safe to repeat blindly.
    """

    def __init__(self, message: str, *, contacted: bool = True):
        super().__init__(message)
        self.contacted = contacted


class GatewayTimeout(GatewayUnavailable):
    """The provider did not answer in time (its timeouts, or a time budget)."""


class GatewayConfigError(GatewayError):
    """Credentials or settings are missing or wrong."""


class WebhookRejected(GatewayError):
    """A notification failed verification (signature, merchant, shape)."""


class NotSupported(GatewayError):
    """The provider has no API for this operation (e.g. CoinPayments refunds)."""


# --- boundary types -----------------------------------------------------------


@dataclass(frozen=True)
class CheckoutRequest:
    ref_id: str
    amount: Decimal
    currency: str
    email: str
    description: str
    return_url: str
    cancel_url: str
    notify_url: str
    site_url: str
    crypto_currency: str = ""


@dataclass(frozen=True)
class CheckoutSession:
    payment_url: str
    transaction_id: str = ""
    session_id: str = ""
    expires_at: datetime | None = None
    crypto_address: str = ""
    crypto_amount: Decimal | None = None
    crypto_currency: str = ""
    # Provider values kept with the payment but never shown to clients
    # (e.g. MPGS successIndicator, CoinPayments status_url).
    data: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentRef:
    """What an adapter needs to look a payment up at the provider."""

    ref_id: str
    transaction_id: str = ""
    session_id: str = ""
    amount: Decimal | None = None
    currency: str = ""
    created_at: datetime | None = None
    expires_at: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderRefund:
    """One refund the provider reports on a payment, whoever asked for it.

    `gateway_refund_id` is the provider's id of the refund transaction; for a
    refund sent from here it is our own refund id where the provider keeps
    it (MPGS), so ours are matched and the rest (e.g. made in the provider's
    portal) are told apart.
    """

    gateway_refund_id: str
    amount: Decimal
    status: str = "SUCCEEDED"  # RefundStatus


@dataclass(frozen=True)
class StatusResult:
    """The provider's view of one payment, already mapped to a canonical status."""

    ref_id: str
    status: str
    amount: Decimal | None = None
    currency: str = ""
    # The provider's id of the payment as it names it now. Providers that
    # assign it only once the payer pays (an MPGS transaction, a Stripe
    # PaymentIntent) name it here: the domain then keeps it as the payment's
    # transaction id, so later refunds and notifications find the payment.
    transaction_id: str = ""
    amount_refunded: Decimal | None = None
    message: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)
    # Money has reached the provider but is not captured or settled yet (coins
    # waiting for confirmations, a card authorisation holding the payer's
    # funds): the payment must not expire meanwhile, and is polled on.
    settling: bool = False
    # The refunds the provider lists one by one (None: it reports only the
    # total `amount_refunded`, or nothing).
    refunds: tuple[ProviderRefund, ...] | None = None
    # What the payer's bank took back (a chargeback); None: not reported.
    amount_charged_back: Decimal | None = None
    # Something a person must look at whatever the status (coins received for
    # a payment the provider then timed out, a dispute, a chargeback); the
    # domain flags the payment with it once, unless the report is ignored.
    review: str = ""
    # Provider ids of failed attempts the payer may follow with another one
    # (MPGS Hosted Checkout): each goes on the timeline once; the status stays.
    declined: tuple[str, ...] = ()
    # Provider values to keep with the payment, e.g. which of several merchant
    # accounts (HyperPay entities) it was paid through and the provider's id
    # of the captured transaction: merged into the payment's gateway data and
    # handed back in every later PaymentRef.data and RefundRequest.data. Keys
    # the domain keeps there itself are never overwritten.
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundRequest:
    ref_id: str
    refund_id: str  # our idempotency id, sent as the provider's transaction id
    amount: Decimal
    currency: str
    transaction_id: str = ""
    reason: str = ""
    # The payment's gateway data, as in PaymentRef.data (what the checkout
    # session and later StatusResult.data asked to keep).
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    status: str  # RefundStatus
    gateway_refund_id: str = ""
    message: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookEvent:
    """A verified notification.

    `confirm` asks the caller to confirm the news with `fetch_status` before
    acting on it: the body alone must not change money state (MPGS).
    `status` is None when the event carries no usable status.
    """

    event_id: str
    ref_id: str = ""
    transaction_id: str = ""
    status: str | None = None
    amount: Decimal | None = None
    currency: str = ""
    confirm: bool = False
    message: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)
    # As in StatusResult: money received but not settled, and what a person
    # must look at.
    settling: bool = False
    review: str = ""
    # Which configured secret verified it (SECRET_CURRENT or SECRET_PREVIOUS);
    # "" when it was not verified here (a stored delivery read again).
    secret_used: str = ""


@dataclass(frozen=True)
class WebhookReply:
    """The HTTP answer a provider expects for an accepted notification."""

    status: int = 200
    body: str = "OK"
    content_type: str = "text/plain"


# --- the interface --------------------------------------------------------------


class Gateway:
    """Base class for provider adapters."""

    code: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    logo: ClassVar[str] = ""  # static path
    supports_refunds: ClassVar[bool] = False
    batch_size: ClassVar[int] = 1  # ids per fetch_status_many call
    # Header names whose values are secrets and must never be stored or logged.
    secret_headers: ClassVar[tuple[str, ...]] = ()
    # A configured gateway may still ask for a coin at checkout.
    choices_field: ClassVar[str] = ""
    # A pretend provider (no real money): pages show a TEST MODE banner.
    test_mode: ClassVar[bool] = False

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = dict(settings)

    # public API ----------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """Start a payment at the provider and return where to send the payer."""
        raise NotImplementedError

    def fetch_status(self, ref: PaymentRef) -> StatusResult:
        """Ask the provider for the current state of one payment."""
        raise NotImplementedError

    def fetch_status_many(self, refs: Iterable[PaymentRef]) -> dict[str, StatusResult]:
        """Ask for many payments at once, keyed by ref_id.

        Adapters with a batch API override this; at most `batch_size` refs per
        call. A ref missing from the answer had no usable result.
        """
        return {ref.ref_id: self.fetch_status(ref) for ref in refs}

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund part or all of a payment, idempotently on `refund_id`."""
        raise NotSupported(f"{self.display_name} has no refund API")

    def fetch_refund(self, request: RefundRequest) -> RefundResult | None:
        """Look a refund up by our id; None when the provider never saw it."""
        raise NotSupported(f"{self.display_name} has no refund API")

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], *, verified: bool = False
    ) -> WebhookEvent:
        """Verify a notification (unless already verified) and parse it."""
        raise NotImplementedError

    def webhook_reply(self, event: WebhookEvent | None) -> WebhookReply:
        """Return the answer the provider expects after a stored notification."""
        return WebhookReply()

    def return_message(self, ref: PaymentRef, params: Mapping[str, str]) -> str:
        """Check the payer's return parameters; return a note for the timeline.

        The return never decides the outcome: the caller always confirms with
        `fetch_status` afterwards.
        """
        return ""

    def pay_page(self, ref: PaymentRef) -> tuple[str, dict[str, Any]] | None:
        """Return (template, context) for our own /checkout/pay/<ref_id>/ page.

        Providers whose hosted page must be opened by a script of theirs
        (MPGS) render it through this page; others return None.
        """
        return None

    def pay_page_script_origins(self) -> tuple[str, ...]:
        """Return the origins (scheme://host) whose scripts pay_page loads."""
        return ()

    def checkout_options(self) -> list[str]:
        """Return the extra choices the checkout offers (e.g. coins)."""
        return []


def constant_time_equal(expected: str, given: str | None) -> bool:
    """Compare two secrets without leaking their common prefix length."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def header(headers: Mapping[str, str], name: str) -> str:
    """Read a header case-insensitively from any mapping."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


# --- webhook secret rotation ----------------------------------------------------------

SECRET_CURRENT = "current"
SECRET_PREVIOUS = "previous"


def rotating_secrets[T](
    current: T | None, previous: T | None
) -> tuple[tuple[str, T], ...]:
    """Return the set webhook secrets, the current one first, each with its name.

    `previous` (a `*_PREVIOUS` setting) lets a secret be rotated at the provider
    and here without rejecting the deliveries signed in between.
    """
    named = ((SECRET_CURRENT, current), (SECRET_PREVIOUS, previous))
    return tuple((name, value) for name, value in named if value)


def verify_with_secrets[T, R](
    secrets: Sequence[tuple[str, T]], check: Callable[[T], R]
) -> tuple[str, R]:
    """Verify with each secret in turn; return the name of the one that did.

    `check` raises WebhookRejected when a secret does not verify the delivery;
    when none does, the current secret's rejection is raised.
    """
    rejected: WebhookRejected | None = None
    for name, secret in secrets:
        try:
            return name, check(secret)
        except WebhookRejected as exc:
            rejected = rejected or exc
    raise rejected or WebhookRejected("no webhook secret is set")
