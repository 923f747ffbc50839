"""The three back-office roles: their groups, and what each may open or do.

The permission matrix below is the contract: every role (and an anonymous
visitor) against every admin page and action, with the status code expected.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.urls import reverse
from django_q.models import Failure, Schedule, Success

from payments import services
from payments.models import (
    IdempotencyRecord,
    Payment,
    PaymentEvent,
    Plan,
    ReconciliationRun,
    Refund,
    WebhookDelivery,
)
from payments.roles import APPROVER, FINANCE, OPERATOR, ROLES, SUPPORT, roles_setup
from payments.states import PaymentStatus

pytestmark = pytest.mark.django_db

SUBMITTED = {"_form_submitted": "True"}
ROLE_NAMES = ("anonymous", "support", "operator", "finance", "superuser")


def group_permissions(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in group.permissions.select_related("content_type")
    }


# --- setup_roles ---------------------------------------------------------------------


def test_setup_roles_creates_the_groups_with_exactly_their_permissions(capsys):
    call_command("setup_roles")
    assert {name: group_permissions(name) for name in ROLES} == {
        "Support": set(SUPPORT),
        "Operator": set(OPERATOR),
        "Finance": set(FINANCE),
        "Approver": set(APPROVER),
    }
    assert "created Support" in capsys.readouterr().out


def test_setup_roles_is_idempotent_and_removes_what_is_not_listed(capsys):
    call_command("setup_roles")
    support = Group.objects.get(name="Support")
    support.permissions.add(Permission.objects.get(codename="change_plan"))
    capsys.readouterr()

    call_command("setup_roles")
    call_command("setup_roles")

    assert Group.objects.filter(name__in=ROLES).count() == 4
    assert group_permissions("Support") == set(SUPPORT)
    output = capsys.readouterr().out
    assert "updated Support: 8 permissions (+0 -1)" in output
    assert "updated Support: 8 permissions (+0 -0)" in output


def test_no_role_may_touch_users_groups_plans_or_schedules():
    for perms in ROLES.values():
        for perm in perms:
            app, codename = perm.split(".")
            # The audit log's view permission is Finance's (issue 23).
            assert app == "payments" or perm == "audit.view_auditentry"
            assert not codename.startswith(("add_", "change_", "delete_")), perm


def test_seed_demo_staff_hold_roles_not_superuser_rights(settings):
    settings.DEBUG = True
    call_command("seed_demo", payments=5)
    users = {u.username: u for u in User.objects.filter(is_staff=True)}
    assert [name for name, u in users.items() if u.is_superuser] == ["admin"]
    for name in ("support", "operator", "finance"):
        assert list(users[name].groups.values_list("name", flat=True)) == [
            name.capitalize()
        ]
    assert users["support"].has_perm("payments.refresh_payment")
    assert not users["support"].has_perm("payments.refund_payment")
    assert users["operator"].has_perm("payments.refund_payment")
    assert users["finance"].has_perm("payments.export_payment")
    assert not users["finance"].has_perm("payments.note_payment")


# --- the permission matrix -------------------------------------------------------------

OK, REDIRECT, FORBIDDEN = 200, 302, 403
#                        anonymous  support    operator   finance    superuser
MATRIX = {
    "dashboard": (REDIRECT, OK, OK, OK, OK),
    "payment list": (REDIRECT, OK, OK, OK, OK),
    "payment page": (REDIRECT, OK, OK, OK, OK),
    "payment add": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "payment edit (POST)": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "payment delete": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "refresh (POST)": (REDIRECT, REDIRECT, REDIRECT, FORBIDDEN, REDIRECT),
    "add note (POST)": (REDIRECT, REDIRECT, REDIRECT, FORBIDDEN, REDIRECT),
    "refund (POST)": (REDIRECT, FORBIDDEN, REDIRECT, FORBIDDEN, REDIRECT),
    "manual refund (POST)": (REDIRECT, FORBIDDEN, REDIRECT, FORBIDDEN, REDIRECT),
    "resolve review (POST)": (REDIRECT, FORBIDDEN, REDIRECT, FORBIDDEN, REDIRECT),
    "refund dialog (GET)": (REDIRECT, FORBIDDEN, OK, FORBIDDEN, OK),
    "event list": (REDIRECT, OK, OK, OK, OK),
    "refund list": (REDIRECT, OK, OK, OK, OK),
    "delivery list": (REDIRECT, OK, OK, FORBIDDEN, OK),
    "delivery page": (REDIRECT, OK, OK, FORBIDDEN, OK),
    "re-process delivery (POST)": (REDIRECT, FORBIDDEN, REDIRECT, FORBIDDEN, REDIRECT),
    "reconciliation runs": (REDIRECT, OK, OK, FORBIDDEN, OK),
    "idempotency keys": (REDIRECT, OK, OK, FORBIDDEN, OK),
    "plan list": (REDIRECT, FORBIDDEN, FORBIDDEN, OK, OK),
    "plan page": (REDIRECT, FORBIDDEN, FORBIDDEN, OK, OK),
    "plan add": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    "plan edit (POST)": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, REDIRECT),
    "plan delete": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    "user list": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    "user add": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    "group list": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    "schedule list": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    "schedule add": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    "successful tasks": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    "failed tasks": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    "successful task add": (REDIRECT, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
}


@pytest.fixture
def world(sandbox, plan):
    """A paid payment flagged for review, its delivery, and one of everything."""
    payment = services.payment_create(
        plan=plan,
        gateway_code="sandbox",
        email="matrix@example.com",
        site_url="http://testserver",
    )
    body, headers = sandbox.choose(payment.gateway_session_id, "paid")
    outcome = services.webhook_ingest(
        gateway_code="sandbox", body=body, headers=headers, remote_addr="127.0.0.1"
    )
    Payment.objects.filter(pk=payment.pk).update(
        needs_review=True, review_reason="matrix check"
    )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    return {
        "payment": payment,
        "delivery": outcome.delivery,
        "run": ReconciliationRun.objects.create(trigger="test"),
        "key": IdempotencyRecord.objects.create(key="k", fingerprint="f"),
    }


def login(client, role: str, django_user_model):
    if role == "anonymous":
        return client
    if role == "superuser":
        user = django_user_model.objects.create_superuser("root", "r@example.com", "x")
    else:
        roles_setup()
        user = django_user_model.objects.create_user(role, is_staff=True)
        user.groups.add(Group.objects.get(name=role.capitalize()))
    client.force_login(user)
    return client


def request_case(client, case: str, world) -> int:
    """Make the request a matrix row names; return the status code."""
    payment, delivery = world["payment"], world["delivery"]
    plan = payment.plan

    def url(model, view, *args):
        opts = model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)

    def action(name):
        return reverse(f"admin:payments_payment_{name}", args=[payment.pk])

    gets = {
        "dashboard": reverse("admin:index"),
        "payment list": url(Payment, "changelist"),
        "payment page": url(Payment, "change", payment.pk),
        "payment add": url(Payment, "add"),
        "payment delete": url(Payment, "delete", payment.pk),
        "refund dialog (GET)": action("refund"),
        "event list": url(PaymentEvent, "changelist"),
        "refund list": url(Refund, "changelist"),
        "delivery list": url(WebhookDelivery, "changelist"),
        "delivery page": url(WebhookDelivery, "change", delivery.pk),
        "reconciliation runs": url(ReconciliationRun, "changelist"),
        "idempotency keys": url(IdempotencyRecord, "changelist"),
        "plan list": url(Plan, "changelist"),
        "plan page": url(Plan, "change", plan.pk),
        "plan add": url(Plan, "add"),
        "plan delete": url(Plan, "delete", plan.pk),
        "user list": url(User, "changelist"),
        "user add": url(User, "add"),
        "group list": url(Group, "changelist"),
        "schedule list": url(Schedule, "changelist"),
        "schedule add": url(Schedule, "add"),
        "successful tasks": url(Success, "changelist"),
        "failed tasks": url(Failure, "changelist"),
        "successful task add": url(Success, "add"),
    }
    refund = {**SUBMITTED, "amount": "1", "reason": "matrix"}
    posts = {
        "payment edit (POST)": (url(Payment, "change", payment.pk), {"email": "x@y.z"}),
        "refresh (POST)": (action("refresh_from_gateway"), SUBMITTED),
        "add note (POST)": (action("add_note"), {**SUBMITTED, "message": "hello"}),
        "refund (POST)": (action("refund"), refund),
        "manual refund (POST)": (action("record_manual_refund"), refund),
        "resolve review (POST)": (
            action("resolve_review"),
            {**SUBMITTED, "message": "checked"},
        ),
        "re-process delivery (POST)": (
            reverse("admin:payments_webhookdelivery_reprocess", args=[delivery.pk]),
            SUBMITTED,
        ),
        "plan edit (POST)": (
            url(Plan, "change", plan.pk),
            {
                "code": plan.code,
                "name": plan.name,
                "price": "25.00",
                "currency": plan.currency,
                "active": "on",
                "sort_order": "0",
                "price_changes-TOTAL_FORMS": "0",
                "price_changes-INITIAL_FORMS": "0",
            },
        ),
    }
    if case in gets:
        return client.get(gets[case]).status_code
    path, data = posts[case]
    return client.post(path, data).status_code


@pytest.mark.parametrize("role", ROLE_NAMES)
@pytest.mark.parametrize("case", MATRIX)
def test_permission_matrix(client, django_user_model, world, role, case):
    expected = MATRIX[case][ROLE_NAMES.index(role)]
    client = login(client, role, django_user_model)
    before = (
        Refund.objects.count(),
        PaymentEvent.objects.count(),
        Plan.objects.get().price,
    )

    status = request_case(client, case, world)

    assert status == expected, f"{role} {case}: {status}, expected {expected}"
    if expected in (FORBIDDEN,) or role == "anonymous":
        # A refused request changes nothing.
        after = (
            Refund.objects.count(),
            PaymentEvent.objects.count(),
            Plan.objects.get().price,
        )
        assert after == before


def test_refused_actions_are_hidden_from_the_payment_page(
    client, django_user_model, world
):
    payment = world["payment"]
    page = reverse("admin:payments_payment_change", args=[payment.pk])
    visible = {}
    for role in ("support", "operator", "finance"):
        client.logout()
        content = login(client, role, django_user_model).get(page).content.decode()
        visible[role] = sorted(
            name
            for name in (
                "refresh_from_gateway",
                "add_note",
                "refund",
                "record_manual_refund",
                "resolve_review",
            )
            if reverse(f"admin:payments_payment_{name}", args=[payment.pk]) in content
        )
    assert visible == {
        "support": ["add_note", "refresh_from_gateway"],
        "operator": [
            "add_note",
            "record_manual_refund",
            "refresh_from_gateway",
            "refund",
            "resolve_review",
        ],
        "finance": [],
    }


def test_operator_refund_is_recorded_against_their_name(
    client, django_user_model, world
):
    payment = world["payment"]
    client = login(client, "operator", django_user_model)
    response = client.post(
        reverse("admin:payments_payment_refund", args=[payment.pk]),
        {**SUBMITTED, "amount": "2.50", "reason": "unused data"},
    )
    assert response.status_code == 302
    refund = Refund.objects.get()
    assert (refund.requested_by.username, refund.amount) == (
        "operator",
        Decimal("2.50"),
    )
    assert payment.events.filter(actor__username="operator").exists()
