"""Reads for views, the admin and tasks, by topic.

With `services`, the only modules of `payments` that reach `gateways/`:
`checkout` (plans, gateways offered, a payment's public view), `dashboard`
(its figures and the review badge), `monitoring` (/metrics and /health/) and
`settlement` (the settlement summary).
"""

from .checkout import (
    UNAVAILABLE,
    checkout_gateways,
    gateway_choices,
    gateway_options,
    gateway_problem,
    money_text,
    pay_page,
    pay_page_script_origins,
    payment_public,
    sandbox_charge,
    sellable_plans,
    test_mode,
)
from .dashboard import (
    STUCK_AFTER,
    GatewayStats,
    PaidDays,
    S,
    Volume,
    daily_paid_volume,
    failing_deliveries,
    forget_review_badge,
    gateway_stats,
    last_reconciliation_run,
    needs_review_count,
    paid_volume,
    payments_needing_attention,
    pending_counts,
    refund_volume,
    review_badge_count,
)
from .monitoring import (
    PENDING_AGE_BUCKETS,
    PENDING_AGE_OLDEST,
    GatewayNotifications,
    MonitoringSnapshot,
    last_successful_reconciliation,
    monitoring_snapshot,
    webhook_silence,
)
from .settlement import (
    SETTLEMENT_HEADERS,
    SettlementRow,
    paid_between,
    settlement_summary,
    settlement_totals,
)

__all__ = [
    "GatewayNotifications",
    "GatewayStats",
    "MonitoringSnapshot",
    "PENDING_AGE_BUCKETS",
    "PENDING_AGE_OLDEST",
    "PaidDays",
    "S",
    "SETTLEMENT_HEADERS",
    "STUCK_AFTER",
    "SettlementRow",
    "UNAVAILABLE",
    "Volume",
    "checkout_gateways",
    "daily_paid_volume",
    "failing_deliveries",
    "forget_review_badge",
    "gateway_choices",
    "gateway_options",
    "gateway_problem",
    "gateway_stats",
    "last_reconciliation_run",
    "last_successful_reconciliation",
    "money_text",
    "monitoring_snapshot",
    "needs_review_count",
    "paid_between",
    "paid_volume",
    "pay_page",
    "pay_page_script_origins",
    "payment_public",
    "payments_needing_attention",
    "pending_counts",
    "refund_volume",
    "review_badge_count",
    "sandbox_charge",
    "sellable_plans",
    "settlement_summary",
    "settlement_totals",
    "test_mode",
    "webhook_silence",
]
