"""Business logic: every write to payments, refunds and deliveries happens here.

Views, admin actions, tasks and commands call these functions and nothing
else writes a payment. `transitions` holds the one way a payment changes
(`payments_change` and its one-payment forms); `checks` the janitor's check
schedule; `reconcile` the janitor itself; `rollups` the dashboard's daily
rollups (recounted by a schedule, never by a status change).
"""

from ..exceptions import (
    GatewayNotConfigured,
    GatewayUnavailable,
    IdempotencyConflict,
    IllegalTransition,
    PaymentError,
    RefundNotAllowed,
    RequestInProgress,
    WebhookNotAccepted,
)
from .checkout import (
    StoredAnswer,
    idempotency_abandon,
    idempotency_begin,
    idempotency_finish,
    payment_create,
    request_fingerprint,
)
from .checks import (
    CHECK_BACKOFF,
    next_check_delay,
    payment_claim_refresh,
    payments_record_checks,
)
from .health import HealthReport, system_health
from .plans import plan_save
from .reconcile import (
    claim_due,
    due_count,
    payment_expire_overdue,
    reconcile_cycle,
    reconciliation_start,
)
from .refunds import (
    refund_finish,
    refund_request,
    refund_submit,
    refundable_amount,
    refunds_retry_pending,
)
from .rollups import (
    RollupRun,
    rollup_recount,
    rollups_rebuild,
    rollups_refresh,
    rollups_window,
)
from .schedules import schedulable_tasks, schedule_validate
from .staff import payment_add_note, payment_resolve_review
from .status import (
    Applied,
    payment_apply_status,
    payment_ref,
    payment_refresh,
    payment_refresh_for_customer,
    payment_return,
    report_change,
)
from .transitions import (
    SYSTEM,
    Actor,
    Change,
    Changed,
    Entry,
    money_text,
    payment_add_entry,
    payment_change,
    payment_transition,
    payments_change,
    redact,
)
from .webhook_batches import webhooks_apply_received, webhooks_schedule_apply
from .webhooks import (
    Intake,
    WebhookOutcome,
    redact_headers,
    sandbox_choose,
    webhook_ingest,
    webhook_process,
    webhook_reprocess,
)

__all__ = [
    "CHECK_BACKOFF",
    "SYSTEM",
    "Actor",
    "Applied",
    "Change",
    "Changed",
    "Entry",
    "GatewayNotConfigured",
    "GatewayUnavailable",
    "HealthReport",
    "IdempotencyConflict",
    "IllegalTransition",
    "Intake",
    "PaymentError",
    "RefundNotAllowed",
    "RequestInProgress",
    "RollupRun",
    "StoredAnswer",
    "WebhookNotAccepted",
    "WebhookOutcome",
    "claim_due",
    "due_count",
    "idempotency_abandon",
    "idempotency_begin",
    "idempotency_finish",
    "money_text",
    "next_check_delay",
    "payment_add_entry",
    "payment_add_note",
    "payment_apply_status",
    "payment_change",
    "payment_claim_refresh",
    "payment_create",
    "payment_expire_overdue",
    "payment_ref",
    "payment_refresh",
    "payment_refresh_for_customer",
    "payment_resolve_review",
    "payment_return",
    "payment_transition",
    "payments_change",
    "payments_record_checks",
    "plan_save",
    "reconcile_cycle",
    "reconciliation_start",
    "redact",
    "redact_headers",
    "refund_finish",
    "refund_request",
    "refund_submit",
    "refundable_amount",
    "refunds_retry_pending",
    "report_change",
    "request_fingerprint",
    "rollup_recount",
    "rollups_rebuild",
    "rollups_refresh",
    "rollups_window",
    "sandbox_choose",
    "schedulable_tasks",
    "schedule_validate",
    "system_health",
    "webhook_ingest",
    "webhook_process",
    "webhook_reprocess",
    "webhooks_apply_received",
    "webhooks_schedule_apply",
]
