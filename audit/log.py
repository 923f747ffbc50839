"""The one entry point every part of the project calls to audit a staff act.

Interface agreed before the audit log itself lands (issue 23), so the parts
that record acts (refund approvals, repairs, MFA) can call it meanwhile.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

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
MFA_VERIFIED = "mfa.verified"
MFA_FAILED = "mfa.failed"
AUDIT_DOWNLOADED = "audit.downloaded"
# Written by retention (audit.chain.prune): where the chain now starts.
ANCHOR = "audit.anchor"


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
    from . import chain

    username, user_id = _actor(actor, request)
    target_model, target_id = _target(target)
    chain.append(
        action=action,
        actor_username=username,
        actor_user_id=user_id,
        ip=_client_ip(request),
        target_model=target_model,
        target_id=target_id,
        reason=reason,
        detail=detail,
    )


def _actor(actor: Any, request: Any) -> tuple[str, int | None]:
    """Return the actor's username and id: a user, an Actor with .user, a name."""
    if actor is None and request is not None:
        actor = getattr(request, "user", None)
    actor = getattr(actor, "user", actor) if not _is_user(actor) else actor
    if isinstance(actor, str):
        return actor, None
    if _is_user(actor) and actor.is_authenticated:
        return actor.get_username(), actor.pk
    return "", None


def _is_user(value: Any) -> bool:
    return hasattr(value, "get_username") and hasattr(value, "is_authenticated")


def _target(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, Model):
        return target._meta.label_lower, str(target.pk if target.pk is not None else "")
    if isinstance(target, type) and issubclass(target, Model):
        return target._meta.label_lower, ""
    if isinstance(target, tuple) and len(target) == 2:
        label, pk = target
        return str(label).lower(), "" if pk is None else str(pk)
    return str(target), ""


def _client_ip(request: Any) -> str | None:
    if request is None or not hasattr(request, "META"):
        return None
    from payments.views.common import client_ip

    return client_ip(request)
