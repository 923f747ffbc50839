"""Who must pass a second factor, and whether this session has passed it.

STAFF_MFA: "required" — every holder of a money power (superusers, and anyone
with one of MONEY_PERMISSIONS, whatever their group) and every member of
STAFF_MFA_GROUPS enrols and passes a TOTP step after the password;
"optional" — only users who enrolled are asked; "off" — nobody is asked.
"""

from __future__ import annotations

from django.conf import settings

MONEY_PERMISSIONS = (
    "payments.refund_payment",
    "payments.approve_refund",
    "payments.export_payment",
    "payments.repair_payment",
)
MODES = ("required", "optional", "off")


def mode() -> str:
    return settings.STAFF_MFA


def holds_money_power(user) -> bool:
    """Tell whether a user may move or export money (a permission that may not exist is False)."""
    if user.is_superuser:
        return True
    return any(user.has_perm(perm) for perm in MONEY_PERMISSIONS)


def must_enrol(user) -> bool:
    """Tell whether MFA is required of this user: an active staff member with a money power or a listed group."""
    if mode() != "required" or not (user.is_authenticated and user.is_active):
        return False
    if not user.is_staff and not user.is_superuser:
        return False
    if holds_money_power(user):
        return True
    groups = set(settings.STAFF_MFA_GROUPS)
    return bool(groups) and user.groups.filter(name__in=groups).exists()


def has_device(user) -> bool:
    from django_otp import user_has_device

    return user_has_device(user, confirmed=True)


def step_needed(user) -> bool:
    """Tell whether a logged-in user still owes the TOTP step in this session."""
    if mode() == "off" or not getattr(user, "is_authenticated", False):
        return False
    verified = getattr(user, "is_verified", None)
    if verified is not None and verified():
        return False
    return must_enrol(user) or has_device(user)
