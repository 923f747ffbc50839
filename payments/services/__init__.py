"""Business logic: every write to payments, refunds and deliveries happens here.

Views, admin actions, tasks and commands call these functions and nothing
else writes a payment. This package exports only what they call; the other
services talk to each other through their modules. `transitions` holds the
one way a payment changes (`payments_change`); `checks` the janitor's check
schedule; `reconcile` the janitor itself; `rollups` the dashboard's
daily rollups (recounted by a schedule, never by a status change).
"""

from .approvals import (
    may_decide_refund,
    refund_approve,
    refund_reject,
    refunds_lapse_overdue,
)
from .budget import request_budget
from .checkout import (
    StoredAnswer,
    idempotency_abandon,
    idempotency_begin,
    idempotency_finish,
    payment_create,
    request_fingerprint,
)
from .health import health_checks, system_health
from .plans import plan_save
from .reconcile import (
    due_count,
    payment_expire_overdue,
    reconcile_cycle,
    reconciliation_start,
)
from .refunds import (
    approval_limits,
    refund_request,
    refundable_amount,
    refunds_retry_pending,
)
from .repairs import may_repair, repair_confirm, repair_propose, repair_reject
from .rollups import (
    RollupRun,
    rollup_recount,
    rollups_rebuild,
    rollups_refresh,
    rollups_window,
)
from .schedules import schedulable_tasks, schedule_validate
from .staff import payment_add_note, payment_resolve_review
from .status import payment_refresh, payment_refresh_for_customer, payment_return
from .transitions import Actor
from .webhook_batches import webhooks_apply_received
from .webhooks import (
    Intake,
    WebhookOutcome,
    sandbox_choose,
    webhook_ingest,
    webhook_reprocess,
    webhooks_prune_rejected,
)

__all__ = [
    "Actor",
    "approval_limits",
    "may_decide_refund",
    "may_repair",
    "refund_approve",
    "refund_reject",
    "refunds_lapse_overdue",
    "repair_confirm",
    "repair_propose",
    "repair_reject",
    "Intake",
    "RollupRun",
    "StoredAnswer",
    "WebhookOutcome",
    "due_count",
    "health_checks",
    "idempotency_abandon",
    "idempotency_begin",
    "idempotency_finish",
    "payment_add_note",
    "payment_create",
    "payment_expire_overdue",
    "payment_refresh",
    "payment_refresh_for_customer",
    "payment_resolve_review",
    "payment_return",
    "plan_save",
    "reconcile_cycle",
    "reconciliation_start",
    "refund_request",
    "refundable_amount",
    "refunds_retry_pending",
    "request_budget",
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
    "webhook_reprocess",
    "webhooks_apply_received",
    "webhooks_prune_rejected",
]
