"""Reading Stripe's objects: minor units, charges, refunds, disputes, events.

Plain functions over the dicts the library's objects convert to; no HTTP here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .. import money
from ..base import GatewayUnavailable, RefundResult, RefundStatus

# Where Stripe's API unit differs from ISO 4217 (gateways.money): ISK stays a
# two-decimal currency in the API (100 = 1 krona, whole kronur only) and MGA
# is zero-decimal. Three-decimal currencies need a last digit of 0.
# https://docs.stripe.com/currencies#zero-decimal ,
# https://docs.stripe.com/currencies#special-cases ,
# https://support.stripe.com/questions/deprecation-of-fractional-isk-charges-and-refunds
STRIPE_PLACES = {"ISK": 2, "MGA": 0}
_WHOLE_UNITS = frozenset({"ISK"})
# Refund.status -> ours. `requires_action` waits for the payer's bank details.
# https://docs.stripe.com/api/refunds/object#refund_object-status
REFUND_STATUS = {
    "succeeded": RefundStatus.SUCCEEDED,
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}
# Dispute statuses while the money is contested (open), and the one where the
# payer's bank kept it. https://docs.stripe.com/api/disputes/object#dispute_object-status
_OPEN_DISPUTES = frozenset(
    {
        "warning_needs_response",
        "warning_under_review",
        "needs_response",
        "under_review",
        "appeal_needs_response",
        "appeal_under_review",
    }
)
_LOST_DISPUTE = "lost"
# Keys of Stripe objects that are secrets of their own (a PaymentIntent's
# client_secret confirms it from a browser): never kept on the timeline.
_SECRET_KEYS = frozenset({"client_secret"})


def _places(currency: str) -> int:
    return STRIPE_PLACES.get(currency, money.exponent(currency))


def to_stripe_minor(amount: Decimal, currency: str) -> int:
    """Return an amount in Stripe's minor unit; ValueError if Stripe cannot take it."""
    places = _places(currency)
    minor = money.to_minor(amount, currency, places=places)
    if currency in _WHOLE_UNITS and minor % 100:
        raise ValueError(f"{currency} amounts must be whole units at Stripe")
    if places == 3 and minor % 10:
        raise ValueError(f"{currency} amounts must end in 0 at Stripe (e.g. 5.120)")
    return minor


def read_minor(value: object, currency: str) -> Decimal:
    """Read a minor-unit integer from Stripe; ValueError on anything else."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not a minor-unit amount: {value!r}")
    amount = money.from_minor(value, currency, places=_places(currency))
    if not money.in_range(amount) or amount < 0:
        raise ValueError("amount out of range")
    return amount


def positive(value: object) -> bool:
    """Tell whether a Stripe integer field is above zero."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def refund_result(refund_id: str, refund: Mapping[str, Any]) -> RefundResult:
    """Map a Refund object to our refund outcome."""
    state = str(refund.get("status") or "")
    status = REFUND_STATUS.get(state, RefundStatus.PENDING)
    reason = str(refund.get("failure_reason") or "")
    message = f"refund {state or 'without status'}" + (f" ({reason})" if reason else "")
    return RefundResult(
        refund_id,
        status,
        gateway_refund_id=str(refund.get("id") or ""),
        message=message,
        raw=scrub(refund),
    )


def failure_note(charges: list[dict[str, Any]], intent: Mapping[str, Any]) -> str:
    """Describe the last failed attempt (": code, reason"), or "" if none failed."""
    failed = [c for c in charges if c.get("status") == "failed"]
    if failed:
        last = failed[-1]
        outcome = as_dict(last.get("outcome"))
        words = [
            str(last.get("failure_code") or ""),
            str(outcome.get("reason") or ""),
            str(last.get("failure_message") or ""),
        ]
    else:
        error = as_dict(intent.get("last_payment_error"))
        words = [str(error.get(k) or "") for k in ("code", "decline_code", "message")]
    words = list(dict.fromkeys(filter(None, words)))
    return ": " + ", ".join(words) if words else ""


def dispute_review(disputes: list[dict[str, Any]]) -> str:
    """Say what about a payment's disputes needs a person, or ""."""
    notes = []
    for dispute in disputes:
        state = str(dispute.get("status") or "")
        currency = str(dispute.get("currency") or "").upper()
        try:
            amount = read_minor(dispute.get("amount"), currency)
            money_text = f"{money.to_provider(amount, currency)} {currency}"
        except ValueError:
            money_text = "an unreadable amount"
        ident = str(dispute.get("id") or "")
        reason = str(dispute.get("reason") or "no reason given")
        if state in _OPEN_DISPUTES:
            notes.append(
                f"Stripe: dispute {ident} ({reason}) over {money_text}: answer it "
                "in the Stripe Dashboard"
            )
        elif state == _LOST_DISPUTE:
            notes.append(f"Stripe: dispute {ident} lost: {money_text} charged back")
    return "\n".join(notes)


def charged_back(disputes: list[dict[str, Any]], currency: str) -> Decimal | None:
    """Return what lost disputes took back; None when there is no dispute."""
    if not disputes:
        return None
    total = Decimal(0)
    for dispute in disputes:
        if dispute.get("status") == _LOST_DISPUTE:
            charged = str(dispute.get("currency") or currency).upper()
            try:
                total += read_minor(dispute.get("amount"), charged)
            except ValueError as exc:
                raise GatewayUnavailable("stripe: unreadable dispute amount") from exc
    return total


def event_note(kind: str, obj: Mapping[str, Any]) -> str:
    """Describe an event for the timeline."""
    if kind.startswith("charge.dispute."):
        reason = str(obj.get("reason") or "no reason given")
        return f"event {kind} ({reason}, {obj.get('status') or 'no status'})"
    return f"event {kind}"


def listed(answer: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """Return the objects of a list answer, oldest first.

    Stripe lists newest first ("the most recent appearing first"); its order
    is kept, reversed, since `created` has only whole seconds.
    """
    data = answer.get("data")
    if answer.get("object") != "list" or not isinstance(data, list):
        raise GatewayUnavailable(f"stripe: unreadable {kind} list")
    return [item for item in reversed(data) if isinstance(item, dict)]


def timestamp(value: object) -> datetime | None:
    """Read a Unix timestamp field; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def object_id(value: object) -> str:
    """Return the id of an expandable field (an id string or an object)."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return value if isinstance(value, str) else ""


def as_dict(value: object) -> dict[str, Any]:
    """Return a field that should be an object, or {} for anything else."""
    return value if isinstance(value, dict) else {}


def metadata_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Return an object's metadata (our keys: ref_id, refund_id)."""
    return as_dict(obj.get("metadata"))


def ref_of(obj: Mapping[str, Any]) -> str:
    """Return our ref_id as a session, charge or PaymentIntent carries it."""
    return str(obj.get("client_reference_id") or metadata_of(obj).get("ref_id") or "")


def scrub(value: Any) -> Any:
    """Copy a Stripe object without the keys that are secrets (client_secret)."""
    if isinstance(value, Mapping):
        return {
            k: "[redacted]" if k in _SECRET_KEYS and v else scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
