"""The TOTP step after the password: who owes it, enrolment, lockout, reset."""

from __future__ import annotations

from io import StringIO

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import log
from audit.models import AuditEntry
from mfa import policy
from payments.roles import roles_setup

pytestmark = pytest.mark.django_db

PASSWORD = "mfa-test-password-2026"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DIALOG = {"_form_submitted": "1"}


@pytest.fixture(autouse=True)
def _required(settings):
    settings.STAFF_MFA = "required"
    settings.PASSWORD_HASHERS = FAST_HASHERS
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


@pytest.fixture
def make_user(django_user_model):
    roles_setup()

    def make(username: str, role: str | None = None, **flags):
        user = django_user_model.objects.create_user(
            username, f"{username}@staff.example", PASSWORD, is_staff=True, **flags
        )
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


def enrol_device(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="app", confirmed=True)


def code_for(device: TOTPDevice, offset: int = 0) -> str:
    value = totp(
        device.bin_key,
        step=device.step,
        t0=device.t0,
        digits=device.digits,
        drift=offset,
    )
    return str(value).zfill(device.digits)


def log_in(client, user) -> None:
    response = client.post(
        reverse("admin:login"),
        {"username": user.username, "password": PASSWORD, "next": "/admin/"},
    )
    assert response.status_code == 302, response.content[:500]


def actions_of(username: str) -> list[str]:
    return list(
        AuditEntry.objects.filter(actor_username=username)
        .order_by("seq")
        .values_list("action", flat=True)
    )


# --- who owes the step ----------------------------------------------------------------


def test_money_powers_and_listed_groups_need_the_step(make_user, settings):
    superuser = make_user("root", is_superuser=True)
    operator = make_user("op", "Operator")
    finance = make_user("fin", "Finance")
    support = make_user("sup", "Support")
    assert policy.must_enrol(superuser)
    assert policy.must_enrol(operator)  # refund_payment
    assert policy.must_enrol(finance)  # export_payment
    assert not policy.must_enrol(support)
    settings.STAFF_MFA_GROUPS = ["Support"]
    assert policy.must_enrol(support)
    settings.STAFF_MFA = "optional"
    assert not policy.must_enrol(operator)
    settings.STAFF_MFA = "off"
    assert not policy.step_needed(operator)


def test_a_required_user_is_held_at_enrolment_before_any_admin_page(client, make_user):
    operator = make_user("op", "Operator")
    log_in(client, operator)

    for url in ("/admin/", reverse("admin:payments_payment_changelist")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:mfa_enrol"))
    # The staff endpoint of the API treats the session as not logged in.
    assert client.post(reverse("payments:update_pending")).status_code == 401


def test_enrolment_shows_the_secret_and_qr_and_confirms_with_one_code(
    client, make_user
):
    operator = make_user("op", "Operator")
    log_in(client, operator)
    page = client.get(reverse("admin:mfa_enrol"))
    content = page.content.decode()
    device = TOTPDevice.objects.get(user=operator, confirmed=False)
    from mfa.services import secret_text

    assert secret_text(device) in content
    assert "<svg" in content

    wrong = client.post(reverse("admin:mfa_enrol"), {"code": "000000"})
    assert "That code is not right" in wrong.content.decode()
    done = client.post(
        reverse("admin:mfa_enrol"), {"code": code_for(device), "next": "/admin/"}
    )

    codes = done.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert code in done.content.decode()
    assert StaticToken.objects.filter(device__user=operator).count() == 10
    device.refresh_from_db()
    assert device.confirmed
    assert client.get("/admin/").status_code == 200
    assert actions_of("op") == [log.LOGIN, log.MFA_FAILED, log.MFA_ENROLLED]
    # Enrolment is once: the page now sends the user on.
    assert client.get(reverse("admin:mfa_enrol")).status_code == 302


def test_an_enrolled_user_passes_the_step_with_a_totp_code(client, make_user):
    root = make_user("root", is_superuser=True)
    device = enrol_device(root)
    log_in(client, root)
    held = client.get("/admin/payments/payment/")
    assert held["Location"] == (
        reverse("admin:mfa_verify") + "?next=%2Fadmin%2Fpayments%2Fpayment%2F"
    )
    page = client.get(held["Location"])
    assert 'name="code"' in page.content.decode()

    response = client.post(
        reverse("admin:mfa_verify"),
        {"code": code_for(device), "next": "/admin/payments/payment/"},
    )

    assert response["Location"] == "/admin/payments/payment/"
    assert client.get("/admin/").status_code == 200
    assert actions_of("root") == [log.LOGIN, log.MFA_VERIFIED]


def test_a_recovery_code_works_once(client, make_user):
    root = make_user("root", is_superuser=True)
    enrol_device(root)
    static = StaticDevice.objects.create(user=root, name="Recovery codes")
    static.token_set.create(token="recover1")
    log_in(client, root)
    client.post(reverse("admin:mfa_verify"), {"code": "recover1"})
    assert client.get("/admin/").status_code == 200
    client.post(reverse("admin:logout"))
    log_in(client, root)
    again = client.post(reverse("admin:mfa_verify"), {"code": "recover1"})
    assert "That code is not right" in again.content.decode()


def test_optional_mode_asks_only_those_who_enrolled(client, make_user, settings):
    settings.STAFF_MFA = "optional"
    op = make_user("op", "Operator")
    log_in(client, op)
    assert client.get("/admin/").status_code == 200
    client.post(reverse("admin:logout"))
    enrol_device(op)
    log_in(client, op)
    assert client.get("/admin/")["Location"].startswith(reverse("admin:mfa_verify"))


def test_off_mode_asks_nobody(client, make_user, settings):
    settings.STAFF_MFA = "off"
    root = make_user("root", is_superuser=True)
    enrol_device(root)
    log_in(client, root)
    assert client.get("/admin/").status_code == 200


# --- lockout ----------------------------------------------------------------------------


def failures(username: str) -> int:
    attempt = AccessAttempt.objects.filter(username=username).first()
    return attempt.failures_since_start if attempt else 0


def test_a_correct_password_keeps_the_failures_until_the_code_passes(client, make_user):
    root = make_user("root", is_superuser=True)
    device = enrol_device(root)
    for _ in range(3):
        client.post(reverse("admin:login"), {"username": "root", "password": "wrong"})
    assert failures("root") == 3
    log_in(client, root)
    assert failures("root") == 3
    client.post(reverse("admin:mfa_verify"), {"code": "000000"})
    assert failures("root") == 4
    client.post(reverse("admin:mfa_verify"), {"code": code_for(device)})
    assert failures("root") == 0


def test_a_password_login_without_a_step_still_clears_the_failures(client, make_user):
    support = make_user("sup", "Support")
    client.post(reverse("admin:login"), {"username": "sup", "password": "wrong"})
    assert failures("sup") == 1
    log_in(client, support)
    assert failures("sup") == 0


def test_ten_wrong_codes_lock_out_like_ten_wrong_passwords(client, make_user, settings):
    root = make_user("root", is_superuser=True)
    device = enrol_device(root)
    log_in(client, root)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(reverse("admin:mfa_verify"), {"code": "000000"})
        assert response.status_code == 200
    response = client.post(reverse("admin:mfa_verify"), {"code": "000000"})

    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    # Logged out, and the password alone no longer gets in.
    assert client.get("/admin/")["Location"].startswith(reverse("admin:login"))
    again = client.post(
        reverse("admin:login"), {"username": "root", "password": PASSWORD}
    )
    assert again.status_code == 429
    assert code_for(device)  # the right code would not help now either
    assert log.LOCKOUT in actions_of("root")
    assert actions_of("root").count(log.MFA_FAILED) == settings.AXES_FAILURE_LIMIT


# --- reset ----------------------------------------------------------------------------


def reset_url(user) -> str:
    return reverse("admin:auth_user_reset_second_factor", args=[user.pk])


def test_a_superuser_resets_another_users_devices(client, make_user, settings):
    settings.STAFF_MFA = "off"  # the resetting superuser's own login is not tested here
    root = make_user("root", is_superuser=True)
    op = make_user("op", "Operator")
    enrol_device(op)
    StaticDevice.objects.create(user=op, name="Recovery codes")
    client.force_login(root)

    client.post(reverse("admin:auth_user_change", args=[op.pk]))
    response = client.post(reset_url(op), {**DIALOG, "reason": "lost phone"})

    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=op).exists()
    assert not StaticDevice.objects.filter(user=op).exists()
    entry = AuditEntry.objects.get(action=log.MFA_RESET)
    assert entry.actor_username == "root"
    assert (entry.target_model, entry.target_id) == ("auth.user", str(op.pk))
    assert entry.reason == "lost phone"
    assert entry.detail == {"devices_removed": 2}


def test_nobody_removes_their_own_last_device_while_required(client, make_user):
    root = make_user("root", is_superuser=True)
    device = enrol_device(root)
    log_in(client, root)
    client.post(reverse("admin:mfa_verify"), {"code": code_for(device)})

    response = client.post(reset_url(root), {**DIALOG, "reason": "mine"}, follow=True)

    assert "cannot remove your own second factor" in response.content.decode()
    assert TOTPDevice.objects.filter(user=root).exists()
    assert not AuditEntry.objects.filter(action=log.MFA_RESET).exists()


def test_others_cannot_reach_the_reset(client, make_user, settings):
    settings.STAFF_MFA = "off"
    op = make_user("op", "Operator")
    victim = make_user("fin", "Finance")
    enrol_device(victim)
    client.force_login(op)
    response = client.post(reset_url(victim), {**DIALOG, "reason": "x"})
    assert response.status_code in (302, 403)
    assert TOTPDevice.objects.filter(user=victim).exists()


def test_break_glass_command_resets_a_sole_superuser(make_user):
    root = make_user("root", is_superuser=True)
    enrol_device(root)
    out = StringIO()
    call_command("mfa_reset", "root", "--reason", "lost the phone", stdout=out)
    assert "removed 1 device(s) of root" in out.getvalue()
    assert not TOTPDevice.objects.filter(user=root).exists()
    entry = AuditEntry.objects.get(action=log.MFA_RESET)
    assert entry.actor_username == "manage.py mfa_reset"
    assert entry.target_id == str(root.pk)
    assert entry.reason == "lost the phone"
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("mfa_reset", "nobody")
