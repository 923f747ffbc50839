"""Every staff act reaches the audit log: logins, admin writes and actions, exports.

And the log's own admin: read-only, for superusers and Finance, downloadable.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse

from audit import chain, log
from audit.models import AuditEntry
from payments import services
from payments.models import Plan
from payments.roles import roles_setup
from tests.factories import PlanFactory

pytestmark = pytest.mark.django_db

PASSWORD = "audit-test-password-2026"
SUBMITTED = {"_form_submitted": "True"}


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser(
        "root", "root@staff.example", PASSWORD
    )


@pytest.fixture
def staff(django_user_model):
    roles_setup()

    def make(username: str, role: str):
        user = django_user_model.objects.create_user(
            username, f"{username}@staff.example", PASSWORD, is_staff=True
        )
        user.groups.add(Group.objects.get(name=role))
        return user

    return make


def entries(action: str | None = None):
    """The entries of one action, or all but the logins (force_login records one)."""
    rows = AuditEntry.objects.order_by("seq")
    if action:
        return list(rows.filter(action=action))
    return list(rows.exclude(action=log.LOGIN))


def all_text() -> str:
    return "\n".join(
        f"{e.actor_username} {e.target_model} {e.target_id} {e.reason} {e.detail}"
        for e in entries()
    )


# --- logging in and out ---------------------------------------------------------------


def test_login_failed_login_and_logout_are_recorded(client, root):
    client.post(reverse("admin:login"), {"username": "root", "password": "nope"})
    client.post(reverse("admin:login"), {"username": "root", "password": PASSWORD})
    client.post(reverse("admin:logout"))

    everything = AuditEntry.objects.order_by("seq")
    recorded = [(e.action, e.actor_username, e.actor_user_id) for e in everything]
    assert recorded == [
        (log.LOGIN_FAILED, "root", None),
        (log.LOGIN, "root", root.pk),
        (log.LOGOUT, "root", root.pk),
    ]
    assert all(e.ip == "127.0.0.1" for e in everything)
    assert "nope" not in all_text() and PASSWORD not in all_text()


def test_a_lockout_is_recorded(client, root, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("admin:login"), {"username": "root", "password": "x"})
    lockouts = entries(log.LOCKOUT)
    assert len(lockouts) == 1
    assert lockouts[0].actor_username == "root"


# --- admin writes -------------------------------------------------------------------------


def test_admin_add_change_and_delete_are_recorded_with_field_names(client, root):
    client.force_login(root)
    form = {
        "code": "eu-1gb",
        "name": "Europe 1 GB",
        "description": "",
        "price": "5.00",
        "currency": "EUR",
        "active": "on",
        "sort_order": "0",
        "price_changes-TOTAL_FORMS": "0",
        "price_changes-INITIAL_FORMS": "0",
    }
    response = client.post(reverse("admin:payments_plan_add"), form)
    assert response.status_code == 302, response.content[:400]
    plan = Plan.objects.get(code="eu-1gb")
    client.post(
        reverse("admin:payments_plan_change", args=[plan.pk]),
        {**form, "name": "Europe 1 GB (new)", "price": "6.00"},
    )
    client.post(reverse("admin:payments_plan_delete", args=[plan.pk]), {"post": "yes"})

    recorded = [
        (e.action, e.actor_username, e.target_model, e.target_id) for e in entries()
    ]
    target = ("payments.plan", str(plan.pk))
    assert recorded == [
        (log.ADMIN_ADD, "root", *target),
        (log.ADMIN_CHANGE, "root", *target),
        (log.ADMIN_DELETE, "root", *target),
    ]
    assert entries(log.ADMIN_CHANGE)[0].detail == {"fields": ["Name", "Price"]}
    # Field names only, never values.
    assert "Europe 1 GB (new)" not in all_text() and "6.00" not in all_text()


def test_a_password_change_records_no_hash(client, root, django_user_model):
    other = django_user_model.objects.create_user("op", password=PASSWORD)
    client.force_login(root)
    new = "another-strong-password-77"
    response = client.post(
        reverse("admin:auth_user_password_change", args=[other.pk]),
        {"password1": new, "password2": new, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content[:400]
    other.refresh_from_db()
    change = entries(log.ADMIN_CHANGE)[-1]
    assert change.target_id == str(other.pk)
    assert other.password not in all_text()
    assert new not in all_text()
    assert "md5$" not in all_text()


def test_group_membership_is_a_role_change(client, root, staff):
    op = staff("op", "Operator")
    client.force_login(root)
    page = client.get(reverse("admin:auth_user_change", args=[op.pk]))
    assert page.status_code == 200
    finance = Group.objects.get(name="Finance")
    data = {
        "username": "op",
        "first_name": "",
        "last_name": "",
        "email": "op@staff.example",
        "is_active": "on",
        "is_staff": "on",
        "groups": [str(finance.pk)],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    response = client.post(reverse("admin:auth_user_change", args=[op.pk]), data)
    assert response.status_code == 302, response.content[:600]
    role = entries(log.ROLE_CHANGED)
    assert len(role) == 1
    assert role[0].actor_username == "root"
    assert role[0].target_id == str(op.pk)
    assert "Groups" in role[0].detail["fields"]


def test_a_changelist_action_is_recorded_with_its_objects(client, root):
    plans = [PlanFactory(code=f"p{n}") for n in range(3)]
    client.force_login(root)
    url = reverse("admin:payments_plan_changelist")
    ids = [str(plan.pk) for plan in plans[:2]]
    # The confirmation page of a delete is not a deletion.
    client.post(url, {"action": "delete_selected", "_selected_action": ids})
    assert entries() == []
    client.post(
        url, {"action": "delete_selected", "_selected_action": ids, "post": "yes"}
    )
    deleted = entries(log.ADMIN_DELETE)
    assert sorted(e.target_id for e in deleted) == sorted(ids)
    assert entries(log.ADMIN_ACTION) == []


def test_an_import_records_each_row(rf, root):
    from tablib import Dataset

    from payments.resources import PlanResource

    data = Dataset(
        headers=[
            "code",
            "name",
            "description",
            "price",
            "currency",
            "active",
            "sort_order",
        ]
    )
    data.append(["jp", "Japan", "", "1500", "JPY", "1", "2"])
    result = PlanResource().import_data(
        data, dry_run=False, user=root, retain_instance_in_row_result=True
    )
    request = rf.post("/admin/payments/plan/import/")
    request.user = root
    admin.site._registry[Plan].generate_log_entries(result, request)
    added = entries(log.ADMIN_ADD)
    assert [(e.target_id, e.detail) for e in added] == [
        (str(Plan.objects.get(code="jp").pk), {"via": "import"})
    ]


def test_a_schedule_change_is_recorded(client, root):
    client.force_login(root)
    response = client.post(
        reverse("admin:django_q_schedule_add"),
        {
            "name": "nightly-expiry",
            "func": "payments.tasks.expire_overdue",
            "hook": "",
            "args": "",
            "kwargs": "",
            "schedule_type": "D",
            "minutes": "",
            "repeats": "-1",
            "next_run_0": "2026-12-08",
            "next_run_1": "00:00:00",
            "cron": "",
            "cluster": "",
            "intended_date_kwarg": "",
        },
    )
    assert response.status_code == 302, response.content[:800]
    assert [e.action for e in entries()] == [log.ADMIN_ADD, log.SCHEDULE_CHANGED]
    assert entries(log.SCHEDULE_CHANGED)[0].target_model == "django_q.schedule"


def test_setup_commands_record_schedule_and_role_changes():
    from io import StringIO

    from django.core.management import call_command

    call_command("setup_roles", stdout=StringIO())
    call_command("setup_schedules", stdout=StringIO())
    roles = entries(log.ROLE_CHANGED)
    assert {e.target_id for e in roles} == {
        "Support",
        "Operator",
        "Finance",
        "Approver",
    }
    assert all(e.actor_username == "manage.py setup_roles" for e in roles)
    assert len(entries(log.SCHEDULE_CHANGED)) == 8
    # Run again: the roles are unchanged, so nothing more is recorded for them.
    call_command("setup_roles", stdout=StringIO())
    assert len(entries(log.ROLE_CHANGED)) == 4


# --- payment actions and exports ------------------------------------------------------


@pytest.fixture
def payment(sandbox):
    plan = PlanFactory(price=Decimal("10.00"), currency="USD")
    return services.payment_create(
        plan=plan,
        gateway_code="sandbox",
        email="customer@example.com",
        site_url="http://testserver",
    )


def test_refresh_and_review_resolution_are_recorded_without_customer_data(
    client, root, payment
):
    client.force_login(root)
    refresh = reverse("admin:payments_payment_refresh_from_gateway", args=[payment.pk])
    client.post(refresh, SUBMITTED)
    refreshed = entries(log.PAYMENT_REFRESHED)
    assert [(e.actor_username, e.target_id) for e in refreshed] == [
        ("root", str(payment.pk))
    ]
    assert "customer@example.com" not in all_text()


def test_an_export_download_records_filter_names_only(client, root, payment):
    client.force_login(root)
    url = reverse("admin:payments_payment_export")
    response = client.post(
        f"{url}?q=customer%40example.com",
        {"format": "0", "resource": "0", "export_items": [str(payment.pk)]},
    )
    assert response.status_code == 200, response.content[:400]
    downloaded = entries(log.EXPORT_DOWNLOADED)
    assert len(downloaded) == 1
    assert downloaded[0].actor_username == "root"
    assert "customer@example.com" not in all_text()


# --- the audit log's own admin ------------------------------------------------------------


def test_nobody_adds_changes_or_deletes_an_entry_from_the_admin(client, root):
    log.record(log.LOGIN, actor=root)
    entry = AuditEntry.objects.get()
    client.force_login(root)
    assert client.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert (
        client.get(
            reverse("admin:audit_auditentry_delete", args=[entry.pk])
        ).status_code
        == 403
    )
    client.post(
        reverse("admin:audit_auditentry_change", args=[entry.pk]),
        {"reason": "edited"},
    )
    entry.refresh_from_db()
    assert entry.reason == ""
    assert chain.verify().ok


def test_finance_reads_the_log_and_support_does_not(client, staff):
    finance = staff("fin", "Finance")
    support = staff("sup", "Support")
    log.record(log.LOGIN, actor=finance)
    client.force_login(finance)
    page = client.get(reverse("admin:audit_auditentry_changelist"))
    assert page.status_code == 200
    assert "fin (#" in page.content.decode()
    client.force_login(support)
    assert client.get(reverse("admin:audit_auditentry_changelist")).status_code == 403
    assert client.get(reverse("admin:audit_auditentry_csv")).status_code == 403


def test_the_csv_download_is_filtered_streamed_and_formula_safe(client, root):
    log.record(log.LOGIN, actor="alice")
    log.record(log.LOGIN, actor="bob", reason='=HYPERLINK("http://evil")')
    log.record(log.LOGOUT, actor="bob")
    client.force_login(root)
    url = reverse("admin:audit_auditentry_csv")

    response = client.get(f"{url}?actor_username__icontains=bob&action=auth.login")

    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["seq", "created_at", "actor"]
    assert [(r[2], r[5]) for r in rows[1:]] == [("bob", "auth.login")]
    assert rows[1][8] == '\'=HYPERLINK("http://evil")'
    downloaded = entries(log.AUDIT_DOWNLOADED)
    assert downloaded[0].actor_username == "root"


def test_the_list_filters_by_actor_action_object_and_date(client, root):
    log.record(log.LOGIN, actor="alice", target=("auth.user", 7))
    log.record(log.ADMIN_CHANGE, actor="bob", target=("payments.plan", 3))
    client.force_login(root)
    url = reverse("admin:audit_auditentry_changelist")
    page = client.get(
        f"{url}?action=admin.change&target_model__icontains=plan"
        "&created_at_from=2020-01-01"
    )
    assert page.status_code == 200
    result = list(page.context["cl"].result_list)
    assert [e.actor_username for e in result] == ["bob"]
    assert 'id="audit-csv"' in page.content.decode()


def test_a_settlement_download_is_recorded(client, root):
    client.force_login(root)
    url = reverse("admin:payments_settlement")
    response = client.get(f"{url}?start=2026-01-01&end=2026-01-31&format=csv")
    assert response.status_code == 200
    (entry,) = entries(log.EXPORT_DOWNLOADED)
    assert (entry.actor_username, entry.target_model) == ("root", "payments.settlement")
    assert entry.detail == {"format": "csv", "start": "2026-01-01", "end": "2026-01-31"}
