"""Enrolment, verification and reset of a staff member's second factor."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from django.db import transaction
from django_otp import devices_for_user
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import log

from . import policy

RECOVERY_CODES = 10
TOTP_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"


class MfaError(Exception):
    """A second-factor change that is not allowed; the message says why."""


def axes_reset(request, user) -> None:
    """Clear django-axes' failures of this username from this address."""
    from axes.utils import reset

    from payments.views.common import client_ip

    reset(ip=client_ip(request), username=user.get_username())


def password_step_passed(sender, request, user, **kwargs) -> None:
    """After a correct password: clear the failure count unless a TOTP step follows.

    AXES_RESET_ON_SUCCESS is off, so that a correct password alone does not
    wipe the failures of someone guessing codes; the count is cleared here, or
    when the TOTP step passes (views.verify).
    """
    if request is None or policy.mode() == "off":
        if request is not None:
            axes_reset(request, user)
        return
    if not (policy.must_enrol(user) or policy.has_device(user)):
        axes_reset(request, user)


def enrolment_device(user) -> TOTPDevice:
    """Return the user's unconfirmed authenticator, made on first call."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_NAME, confirmed=False)
    return device


def secret_text(device: TOTPDevice) -> str:
    """The secret as an authenticator app takes it typed in (base32)."""
    return base64.b32encode(device.bin_key).decode().rstrip("=")


def qr_svg(device: TOTPDevice) -> str:
    """The otpauth:// URL of the device as an SVG QR code."""
    import qrcode
    import qrcode.image.svg

    out = io.BytesIO()
    qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage).save(
        out
    )
    text = out.getvalue().decode()
    return text[text.index("<svg") :]


@dataclass(frozen=True)
class Enrolled:
    device: TOTPDevice
    recovery_codes: list[str]


def mfa_enrol_confirm(*, user, token: str, request=None) -> Enrolled | None:
    """Confirm the user's new authenticator with one code; make recovery codes.

    None when the code is wrong. The codes are returned once, never stored in
    clear anywhere else (django-otp keeps them to check them).
    """
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None or not device.verify_token(token.strip()):
        return None
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        StaticDevice.objects.filter(user=user).delete()
        static = StaticDevice.objects.create(user=user, name=RECOVERY_NAME)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
        StaticToken.objects.bulk_create(
            StaticToken(device=static, token=code) for code in codes
        )
        log.record(
            log.MFA_ENROLLED,
            actor=user,
            request=request,
            target=user,
            detail={"recovery_codes": RECOVERY_CODES},
        )
    return Enrolled(device=device, recovery_codes=codes)


def mfa_reset(*, user, actor, request=None, reason: str = "") -> int:
    """Delete every second-factor device of `user`; return how many.

    `actor` is the superuser resetting, or a text such as "manage.py
    mfa_reset" for the break-glass path. Nobody removes their own last
    device while MFA is required of them.
    """
    if getattr(actor, "pk", None) == user.pk and policy.must_enrol(user):
        raise MfaError(
            "You cannot remove your own second factor while it is required; "
            "ask another superuser."
        )
    with transaction.atomic():
        devices = list(devices_for_user(user, confirmed=None))
        for device in devices:
            device.delete()
        log.record(
            log.MFA_RESET,
            actor=actor,
            request=request,
            target=user,
            reason=reason,
            detail={"devices_removed": len(devices)},
        )
    return len(devices)
