"""Log in, failed log in, lockout and log out, from Django's and django-axes' signals."""

from __future__ import annotations

from django.contrib.auth.signals import (
    user_logged_in,
    user_logged_out,
    user_login_failed,
)

from . import log


def connect() -> None:
    from axes.signals import user_locked_out

    user_logged_in.connect(_logged_in, dispatch_uid="audit-login")
    user_logged_out.connect(_logged_out, dispatch_uid="audit-logout")
    user_login_failed.connect(_login_failed, dispatch_uid="audit-login-failed")
    user_locked_out.connect(_locked_out, dispatch_uid="audit-lockout")


def _logged_in(sender, request, user, **kwargs) -> None:
    if request is None:
        return
    log.record(log.LOGIN, actor=user, request=request, target=user)


def _logged_out(sender, request, user, **kwargs) -> None:
    if user is None:
        return
    log.record(log.LOGOUT, actor=user, request=request, target=user)


def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    # Only the username: the credentials also hold the password.
    username = str((credentials or {}).get("username") or "")[:150]
    step = (credentials or {}).get("step")
    action = log.MFA_FAILED if step == "otp" else log.LOGIN_FAILED
    log.record(action, actor=username or None, request=request)


def _locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    log.record(log.LOCKOUT, actor=str(username or "") or None, request=request)
