"""Business logic: every write to payments, refunds and deliveries happens here.

Views, admin actions, tasks and commands call these functions and nothing
else writes a payment. `core` holds the guarded transition, the only code
that assigns a payment's status.
"""

from .checkout import idempotent_response, payment_create, request_fingerprint
from .core import (
    SYSTEM,
    Actor,
    GatewayDown,
    IllegalTransition,
    RefundNotAllowed,
    payment_transition,
    redact,
)
from .plans import plan_save
from .refunds import refund_finish, refund_request, refund_submit, refundable_amount
from .schedules import schedulable_tasks, schedule_validate
from .staff import payment_add_note, payment_resolve_review
from .status import (
    CHECK_BACKOFF,
    Applied,
    next_check_delay,
    payment_apply_result,
    payment_apply_status,
    payment_claim_refresh,
    payment_expire_overdue,
    payment_ref,
    payment_refresh,
    payment_return,
)
from .webhooks import (
    WebhookOutcome,
    redact_headers,
    webhook_ingest,
    webhook_process,
    webhook_reprocess,
)

__all__ = [
    "CHECK_BACKOFF",
    "SYSTEM",
    "Actor",
    "Applied",
    "GatewayDown",
    "IllegalTransition",
    "RefundNotAllowed",
    "WebhookOutcome",
    "idempotent_response",
    "next_check_delay",
    "payment_add_note",
    "payment_apply_result",
    "payment_apply_status",
    "payment_claim_refresh",
    "payment_create",
    "payment_expire_overdue",
    "payment_ref",
    "payment_refresh",
    "payment_resolve_review",
    "payment_return",
    "payment_transition",
    "plan_save",
    "redact",
    "redact_headers",
    "refund_finish",
    "refund_request",
    "refund_submit",
    "refundable_amount",
    "request_fingerprint",
    "schedulable_tasks",
    "schedule_validate",
    "webhook_ingest",
    "webhook_process",
    "webhook_reprocess",
]
