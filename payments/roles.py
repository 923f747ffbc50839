"""The back-office roles: which permissions each staff group holds.

`manage.py setup_roles` makes the groups match this table exactly (safe to run
again: it adds what is missing and removes what is not listed). Users,
groups, plans' edits and job schedules are left to superusers: no group gets
a permission on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group, Permission
from django.db import transaction

# Reading what the services record about payments.
RECORDS = (
    "payments.view_payment",
    "payments.view_paymentevent",
    "payments.view_refund",
    "payments.view_webhookdelivery",
    "payments.view_reconciliationrun",
    "payments.view_idempotencyrecord",
)
# Asking providers now: a payment's refresh, and a whole reconciliation run
# (the admin's Run now and `POST /api/payments/update-pending/`).
RECONCILE_PERMISSION = "payments.refresh_payment"
SUPPORT = (*RECORDS, RECONCILE_PERMISSION, "payments.note_payment")
OPERATOR = (
    *SUPPORT,
    "payments.refund_payment",
    "payments.approve_refund",
    "payments.resolve_review_payment",
    "payments.reprocess_webhookdelivery",
)
# Four eyes on refunds at or above REFUND_APPROVAL_LIMITS: approving (or
# rejecting) another person's refund, and reading what it is about. No other
# power. `repair_payment` is in no group: superusers hold it, and grant it
# to named users (two are needed: one proposes, another confirms).
APPROVER = (
    "payments.view_payment",
    "payments.view_paymentevent",
    "payments.view_refund",
    "payments.approve_refund",
)
FINANCE = (
    "payments.view_payment",
    "payments.view_paymentevent",
    "payments.view_refund",
    "payments.export_payment",
    "payments.view_settlement",
    "payments.view_plan",
    "payments.view_planpricechange",
    # The staff audit log: read and download (issue 23).
    "audit.view_auditentry",
)
ROLES: dict[str, tuple[str, ...]] = {
    "Support": SUPPORT,
    "Operator": OPERATOR,
    "Finance": FINANCE,
    "Approver": APPROVER,
}


@dataclass(frozen=True)
class RoleSync:
    """What setting up one group changed."""

    group: str
    created: bool
    added: int
    removed: int


def roles_setup() -> list[RoleSync]:
    """Create the role groups and give each exactly its listed permissions."""
    wanted = {perm for perms in ROLES.values() for perm in perms}
    found = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in Permission.objects.select_related("content_type").filter(
            codename__in={perm.split(".", 1)[1] for perm in wanted}
        )
    }
    missing = sorted(wanted - found.keys())
    if missing:
        raise LookupError(
            f"permissions not found (run migrate first): {', '.join(missing)}"
        )
    changes = []
    with transaction.atomic():
        for name, perms in ROLES.items():
            group, created = Group.objects.get_or_create(name=name)
            target = {found[perm].pk for perm in perms}
            current = set(group.permissions.values_list("pk", flat=True))
            group.permissions.remove(*(current - target))
            group.permissions.add(*(target - current))
            changes.append(
                RoleSync(name, created, len(target - current), len(current - target))
            )
    return changes
