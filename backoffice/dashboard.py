"""The admin dashboard: figures from payments.selectors, shown by permission.

Each block is computed only for a user who may open what it links to, so a
role never sees (or pays for) figures it cannot follow up on. The 30- and
7-day figures cover whole local days: past days from the daily rollups,
today live.
"""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.timezone import localtime

from payments import selectors
from payments.admin.common import (
    PAYMENT_STATUS_COLOURS,
    label,
    money,
    nowrap,
    truncated,
    when,
)
from payments.states import PaymentStatus

# The figures' windows, in whole local days up to today (TIME_ZONE).
DAYS = 30
RECENT_DAYS = 7

# Chart colours by status, from unfold's palette (CSS variables it defines).
STATUS_COLOURS = {
    PaymentStatus.COMPLETED: "var(--color-green-500)",
    PaymentStatus.PENDING: "var(--color-blue-400)",
    PaymentStatus.FAILED: "var(--color-red-500)",
    PaymentStatus.EXPIRED: "var(--color-base-400)",
    PaymentStatus.PARTIALLY_REFUNDED: "var(--color-orange-400)",
    PaymentStatus.REFUNDED: "var(--color-primary-600)",
    PaymentStatus.VOIDED: "var(--color-red-700)",
}
CURRENCY_COLOURS = (
    "var(--color-primary-600)",
    "var(--color-green-500)",
    "var(--color-orange-400)",
    "var(--color-blue-400)",
    "var(--color-red-500)",
    "var(--color-base-400)",
)


# Unfold replaces its chart defaults with these (JSON only, no functions).
_LEGEND = {
    "display": True,
    "position": "bottom",
    "labels": {"boxWidth": 8, "boxHeight": 8, "color": "#9ca3af"},
}
_TICKS = {"color": "#9ca3af"}


def _axis_title(text: str) -> dict:
    return {"display": True, "text": text, "color": "#9ca3af"}


def line_options(currency: str) -> str:
    """Options of one currency's paid-volume chart: both axes named, no legend.

    One chart per currency (small multiples): amounts in different
    currencies never share an axis, so the value axis is named after it.
    """
    return json.dumps(
        {
            "animation": False,
            "responsive": True,
            "maintainAspectRatio": False,
            "plugins": {"legend": {"display": False}},
            "datasets": {"line": {"borderWidth": 2, "pointStyle": False}},
            "scales": {
                "x": {
                    "title": _axis_title("Day (local)"),
                    "ticks": {**_TICKS, "maxTicksLimit": 6},
                    "grid": {"display": False},
                },
                "y": {
                    "title": _axis_title(f"Paid, {currency}"),
                    "ticks": {**_TICKS, "maxTicksLimit": 5},
                    "beginAtZero": True,
                },
            },
        }
    )


BAR_OPTIONS = json.dumps(
    {
        "animation": False,
        "responsive": True,
        "maintainAspectRatio": False,
        "plugins": {"legend": _LEGEND},
        "datasets": {"bar": {"maxBarThickness": 36, "borderRadius": 4}},
        "scales": {
            "x": {
                "title": _axis_title("Gateway"),
                "stacked": True,
                "ticks": _TICKS,
                "grid": {"display": False},
            },
            "y": {
                "title": _axis_title("Payments created"),
                "stacked": True,
                "ticks": _TICKS,
            },
        },
    }
)


def dashboard_callback(request, context: dict) -> dict:
    """Add the dashboard's blocks that this user may follow up on."""
    user = request.user
    now = timezone.now()
    blocks: dict = {
        "title": "Dashboard",
        "bar_options": BAR_OPTIONS,
    }
    sees_payments = user.has_perm("payments.view_payment")
    sees_refunds = user.has_perm("payments.view_refund")
    # Which past days the rollups hold complete, looked up once for all figures.
    rolled_up = (
        selectors.rolled_up_days(days=DAYS, now=now)
        if sees_payments or sees_refunds
        else None
    )
    if sees_payments:
        blocks.update(_payment_blocks(now, rolled_up))
    if sees_refunds:
        blocks["refunds"] = _volumes(
            selectors.refund_volume(days=DAYS, now=now, rolled_up=rolled_up), "refund"
        )
        blocks["refunds_url"] = reverse("admin:payments_refund_changelist")
    if user.has_perm("payments.approve_refund"):
        approvals = _approvals(user)
        # With approvals off (no limits) an empty card would only take room.
        if settings.REFUND_APPROVAL_LIMITS or approvals["count"]:
            blocks["approvals"] = approvals
    if user.has_perm("payments.view_reconciliationrun"):
        blocks["last_run"] = selectors.last_reconciliation_run()
        blocks["runs_url"] = reverse("admin:payments_reconciliationrun_changelist")
    if user.has_perm("payments.view_webhookdelivery"):
        blocks["deliveries"] = _deliveries(now)
    context.update(blocks)
    return context


def review_badge(request) -> str:
    """Count payments flagged for review, for the sidebar ("" when none)."""
    if not request.user.has_perm("payments.view_payment"):
        return ""
    count = selectors.review_badge_count()
    return str(count) if count else ""


def _days(n: int) -> timedelta:
    return timedelta(days=n)


def _payment_blocks(now, rolled_up: frozenset) -> dict:
    paid = selectors.daily_paid_volume(days=DAYS, now=now, rolled_up=rolled_up)
    pending, stuck = selectors.pending_counts(now=now)
    changelist = reverse("admin:payments_payment_changelist")
    stats = selectors.gateway_stats(
        days=DAYS, recent_days=RECENT_DAYS, now=now, rolled_up=rolled_up
    )
    return {
        "paid_today": _volumes(paid.totals(1)),
        "paid_30d": _volumes(paid.totals(DAYS)),
        "pending": pending,
        "pending_url": f"{changelist}?{urlencode({'status__exact': 'PENDING'})}",
        "stuck": stuck,
        "review": selectors.needs_review_count(),
        "review_url": f"{changelist}?{urlencode({'needs_review__exact': '1'})}",
        "success_rates": [_success_rate(s) for s in stats],
        "volume_charts": _volume_charts(paid),
        "status_chart": _status_chart(stats),
        "attention": _attention_table(now),
        "silent_gateways": [
            item.warning for item in selectors.webhook_silence(now=now) if item.silent
        ],
    }


def _success_rate(stats: selectors.GatewayStats) -> dict:
    if stats.success_rate is None:
        return {"gateway": stats.gateway, "rate": 0, "description": "none ended"}
    rate = round(stats.success_rate * 100)
    return {
        "gateway": stats.gateway,
        "rate": rate,
        "description": f"{rate} % of {stats.recent_ended} ended",
    }


def _volumes(volumes: list[selectors.Volume], noun: str = "payment") -> list[dict]:
    return [
        {
            "amount": money(v.amount, v.currency),
            "count": f"{v.count} {noun}{'' if v.count == 1 else 's'}",
        }
        for v in volumes
    ]


def _volume_charts(paid: selectors.PaidDays) -> list[dict]:
    """One small chart per currency paid in the window, the largest total first."""
    labels = [day.strftime("%d %b") for day in paid.dates]
    charts = []
    for i, total in enumerate(paid.totals(len(paid.dates))):
        colour = CURRENCY_COLOURS[i % len(CURRENCY_COLOURS)]
        dataset = {
            "label": total.currency,
            "data": [float(amount) for amount in paid.amounts[total.currency]],
            "borderColor": colour,
            "backgroundColor": colour,
        }
        charts.append(
            {
                "currency": total.currency,
                "total": money(total.amount, total.currency),
                "data": json.dumps({"labels": labels, "datasets": [dataset]}),
                "options": line_options(total.currency),
            }
        )
    return charts


def _status_chart(stats: list[selectors.GatewayStats]) -> str:
    datasets = [
        {
            "label": status.label,
            "data": [s.by_status.get(status.value, 0) for s in stats],
            "backgroundColor": STATUS_COLOURS[status.value],
            "stack": "statuses",
        }
        for status in PaymentStatus
    ]
    return json.dumps({"labels": [s.gateway for s in stats], "datasets": datasets})


def _attention_table(now) -> dict:
    rows = []
    for payment in selectors.payments_needing_attention(now=now):
        url = reverse("admin:payments_payment_change", args=[payment.pk])
        reason = payment.review_reason if payment.needs_review else "pending > 48 h"
        rows.append(
            [
                format_html(
                    '<a class="text-primary-600 whitespace-nowrap" href="{}">{}</a>',
                    url,
                    payment.ref_id,
                ),
                truncated(payment.email),
                nowrap(money(payment.amount, payment.currency)),
                label(
                    payment.status,
                    payment.get_status_display(),
                    PAYMENT_STATUS_COLOURS,
                ),
                truncated(reason, "payments-clip-wide"),
                when(payment.date_created, now=now),
            ]
        )
    return {
        "headers": ["Reference", "E-mail", "Amount", "Status", "Why", "Created"],
        "rows": rows,
    }


def _approvals(user) -> dict:
    """Refunds waiting for a second person: how many, the oldest, which are mine."""
    count, oldest = selectors.refunds_awaiting_approval()
    changelist = reverse("admin:payments_refund_changelist")
    return {
        "count": count,
        "url": f"{changelist}?{urlencode({'status__exact': 'AWAITING_APPROVAL'})}",
        "oldest": [
            {
                "url": reverse("admin:payments_refund_change", args=[r.pk]),
                "amount": money(r.amount, r.currency),
                "payment": r.payment.ref_id,
                "by": r.requested_by.get_username() if r.requested_by else "-",
                # The requester cannot approve their own: say so, not a dead link.
                "own": r.requested_by_id == user.pk,
                "at": localtime(r.date_created),
            }
            for r in oldest
        ],
    }


def _deliveries(now) -> dict:
    failing = selectors.failing_deliveries(since=now - _days(1))
    recent = list(failing.only("pk", "gateway", "outcome", "error", "received_at")[:5])
    base = reverse("admin:payments_webhookdelivery_changelist")
    return {
        "count": failing.count() if len(recent) == 5 else len(recent),
        "recent": [
            {
                "url": reverse("admin:payments_webhookdelivery_change", args=[d.pk]),
                "gateway": d.gateway,
                "outcome": d.get_outcome_display(),
                "error": (d.error or "")[:100],
                "at": localtime(d.received_at),
            }
            for d in recent
        ],
        "url": base,
    }
