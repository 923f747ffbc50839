"""The one entry point every part of the project calls to audit a staff act.

Interface agreed before the audit log itself lands (issue 23), so the parts
that record acts (refund approvals, repairs, MFA) can call it meanwhile.
"""

from __future__ import annotations

from typing import Any

# Action names: "<object>.<verb>", stable, shown in the audit list's filter.
LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"
LOCKOUT = "auth.lockout"
LOGOUT = "auth.logout"
MFA_ENROLLED = "mfa.enrolled"
MFA_RESET = "mfa.reset"
ADMIN_ADD = "admin.add"
ADMIN_CHANGE = "admin.change"
ADMIN_DELETE = "admin.delete"
ADMIN_ACTION = "admin.action"
PAYMENT_REFRESHED = "payment.refreshed"
REVIEW_RESOLVED = "payment.review_resolved"
REFUND_REQUESTED = "refund.requested"
REFUND_APPROVED = "refund.approved"
REFUND_REJECTED = "refund.rejected"
REFUND_LAPSED = "refund.lapsed"
REPAIR_PROPOSED = "repair.proposed"
REPAIR_CONFIRMED = "repair.confirmed"
REPAIR_REJECTED = "repair.rejected"
EXPORT_REQUESTED = "export.requested"
EXPORT_DOWNLOADED = "export.downloaded"
SCHEDULE_CHANGED = "schedule.changed"
ROLE_CHANGED = "role.changed"


def record(
    action: str,
    *,
    actor: Any = None,
    request: Any = None,
    target: Any = None,
    reason: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit entry.

    ``actor`` is a user (or None for the system), ``request`` the HTTP request
    the act came in (for the client address), ``target`` a model instance or a
    ``(model_label, pk)`` pair, ``detail`` staff-side facts only (changed field
    names, counts, amounts) — never a secret or a customer's personal data.
    """
    # Filled in by the audit log's implementation (issue 23, item 3).
    return None
