"""Second factor and audit log in a real browser: TOTP login, enrolment, lockout,
and every admin write of these tests found in the audit log with its actor."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Page, expect

from audit import chain, log
from audit.models import AuditEntry
from payments.models import Plan
from payments.roles import roles_setup

from .helpers import FAST_HASHERS, PASSWORD, open_dialog, sidebar_item

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture(autouse=True)
def _mfa_required(page: Page, settings):
    page.set_viewport_size(VIEWPORT)
    settings.STAFF_MFA = "required"
    settings.PASSWORD_HASHERS = FAST_HASHERS
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


@pytest.fixture
def staff(django_user_model):
    roles_setup()

    def create(username: str, role: str | None = None, **flags):
        user = django_user_model.objects.create_user(
            username, f"{username}@staff.example", PASSWORD, is_staff=True, **flags
        )
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return create


def current_code(device: TOTPDevice) -> str:
    device.refresh_from_db()
    value = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    return str(value).zfill(device.digits)


def code_from_secret(secret: str) -> str:
    import base64

    padded = secret + "=" * (-len(secret) % 8)
    return str(totp(base64.b32decode(padded))).zfill(6)


def password_step(page: Page, username: str) -> None:
    page.goto("/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def writes_by(username: str) -> list[tuple[str, str, str]]:
    return list(
        AuditEntry.objects.filter(actor_username=username)
        .exclude(action__in=(log.LOGIN, log.LOGOUT, log.MFA_VERIFIED))
        .order_by("seq")
        .values_list("action", "target_model", "target_id")
    )


def test_operator_logs_in_with_password_and_totp_and_their_writes_are_audited(
    page: Page, staff, completed
):
    operator = staff("operator", "Operator")
    device = TOTPDevice.objects.create(user=operator, name="app", confirmed=True)

    password_step(page, "operator")
    page.wait_for_url(re.compile(r"/admin/mfa/verify/"))
    expect(page.get_by_role("heading", name="Second factor")).to_be_visible()
    # No admin page before the code: the dashboard sends back to the step.
    page.goto("/admin/payments/payment/")
    page.wait_for_url(re.compile(r"/admin/mfa/verify/\?next="))
    page.get_by_label("Code").fill(current_code(device))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(r"/admin/payments/payment/$"))

    page.goto(f"/admin/payments/payment/{completed.pk}/change/")
    dialog = open_dialog(page, "Add note")
    dialog.get_by_label("Note").fill("Called the bank")
    dialog.get_by_role("button", name="Add note").click()
    expect(page.get_by_text("Note added.")).to_be_visible()

    dialog = open_dialog(page, "Refresh from gateway")
    dialog.get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("listitem").filter(has_text="Refreshed:")).to_be_visible()

    assert writes_by("operator") == [
        (log.ADMIN_ACTION, "payments.payment", str(completed.pk)),
        (log.PAYMENT_REFRESHED, "payments.payment", str(completed.pk)),
    ]
    verified = AuditEntry.objects.get(action=log.MFA_VERIFIED)
    assert (verified.actor_username, verified.actor_user_id) == (
        "operator",
        operator.pk,
    )
    assert verified.ip == "127.0.0.1"


def test_a_user_without_a_device_is_sent_to_enrolment(page: Page, staff):
    staff("finance", "Finance")

    password_step(page, "finance")

    page.wait_for_url(re.compile(r"/admin/mfa/enrol/"))
    expect(page.locator("#mfa-qr svg")).to_be_visible()
    secret = page.locator("#mfa-secret").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    page.get_by_label("Code").fill(code_from_secret(secret))
    page.get_by_role("button", name="Confirm").click()

    codes = page.locator("#recovery-codes li")
    expect(codes).to_have_count(10)
    page.get_by_role("link", name=re.compile("continue")).click()
    page.wait_for_url(re.compile(r"/admin/$"))
    expect(sidebar_item(page, "Audit log")).to_be_visible()
    assert [e.action for e in AuditEntry.objects.filter(action=log.MFA_ENROLLED)] == [
        log.MFA_ENROLLED
    ]


def test_ten_wrong_codes_lock_out_like_ten_wrong_passwords(page: Page, staff, settings):
    root = staff("root", is_superuser=True)
    TOTPDevice.objects.create(user=root, name="app", confirmed=True)
    password_step(page, "root")
    page.wait_for_url(re.compile(r"/admin/mfa/verify/"))

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        page.get_by_label("Code").fill("000000")
        page.get_by_role("button", name="Verify").click()
        expect(page.get_by_text("That code is not right")).to_be_visible()
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Verify").click()

    expect(page.locator("#lockout")).to_contain_text(
        f"blocked after {settings.AXES_FAILURE_LIMIT} failed attempts"
    )
    # The password alone no longer gets in either.
    password_step(page, "root")
    expect(page.locator("#lockout")).to_be_visible()
    assert AuditEntry.objects.filter(action=log.LOCKOUT, actor_username="root").exists()


def test_superuser_writes_from_the_admin_appear_in_the_audit_log(page: Page, staff):
    root = staff("root", is_superuser=True)
    device = TOTPDevice.objects.create(user=root, name="app", confirmed=True)
    operator = staff("operator", "Operator")
    TOTPDevice.objects.create(user=operator, name="app", confirmed=True)

    password_step(page, "root")
    page.get_by_label("Code").fill(current_code(device))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(r"/admin/$"))

    # Add a plan through the admin form.
    page.goto("/admin/payments/plan/add/")
    page.locator("#id_code").fill("br-3gb")
    page.locator("#id_name").fill("Brazil 3 GB")
    page.locator("#id_price").fill("9.00")
    page.locator("#id_currency").fill("USD")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text(re.compile("was added successfully"))).to_be_visible()
    plan = Plan.objects.get(code="br-3gb")

    # Reset the operator's second factor from their user page.
    page.goto(f"/admin/auth/user/{operator.pk}/change/")
    dialog = open_dialog(page, "Reset second factor")
    dialog.get_by_label("Reason").fill("Lost phone, ticket 42")
    dialog.get_by_role("button", name="Reset").click()
    expect(
        page.get_by_text("Removed 1 second-factor device(s) of operator.")
    ).to_be_visible()
    assert not TOTPDevice.objects.filter(user=operator).exists()

    assert writes_by("root") == [
        (log.ADMIN_ADD, "payments.plan", str(plan.pk)),
        (log.MFA_RESET, "auth.user", str(operator.pk)),
    ]

    # The audit log shows them, with their actor, and the chain holds.
    page.goto("/admin/audit/auditentry/")
    rows = page.locator("#result_list tbody tr")
    expect(rows.filter(has_text="mfa.reset")).to_contain_text(f"root (#{root.pk})")
    expect(rows.filter(has_text="admin.add")).to_contain_text("payments.plan")
    assert chain.verify().ok
