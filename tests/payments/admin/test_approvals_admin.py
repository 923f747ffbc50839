"""Four eyes in the admin: refunds awaiting approval, repairs, the customer view."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.urls import reverse

from payments import services
from payments.approval_limits import parse_approval_limits
from payments.models import EventKind, Payment, PaymentRepair, Refund
from payments.roles import roles_setup
from payments.selectors import customer_payments, customer_summary, customer_totals
from tests.factories import PaymentFactory, PlanFactory, move_to, payment_in

from .test_admin import SUBMITTED, action_url, change_url, shown_messages

pytestmark = pytest.mark.django_db
Status = Refund.Status


@pytest.fixture
def login(django_user_model):
    """Return a logged-in client for a new staff user in a role (or with perms)."""
    roles_setup()

    def make(name: str, role: str | None = None, *perms: str, **extra) -> Client:
        user = django_user_model.objects.create_user(name, is_staff=True, **extra)
        if role:
            user.groups.add(Group.objects.get(name=role))
        for perm in perms:
            user.user_permissions.add(Permission.objects.get(codename=perm))
        client = Client()
        client.force_login(user)
        client.user = user
        return client

    return make


@pytest.fixture
def limits(settings):
    settings.REFUND_APPROVAL_LIMITS = parse_approval_limits("USD:5,*:100")


@pytest.fixture
def completed(sandbox):
    plan = PlanFactory(code="gb-10", price=Decimal("10.00"), currency="USD")
    payment = services.payment_create(
        plan=plan, gateway_code="sandbox", email="bob@example.com", site_url="http://t"
    )
    body, headers = sandbox.choose(payment.gateway_session_id, "paid")
    services.webhook_ingest(
        gateway_code="sandbox", body=body, headers=headers, remote_addr=None
    )
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    return payment


def refund_page(refund: Refund) -> str:
    return reverse("admin:payments_refund_change", args=[refund.pk])


def request_refund(client: Client, payment: Payment, amount: str = "8") -> Refund:
    response = client.post(
        action_url("refund", payment),
        {**SUBMITTED, "amount": amount, "reason": "unused data"},
        follow=True,
    )
    assert response.status_code == 200
    assert any("awaits approval" in m for m in shown_messages(response))
    return Refund.objects.get(status=Status.AWAITING_APPROVAL)


def test_the_requester_sees_no_approval_and_a_forced_post_is_refused(
    login, completed, limits
):
    alice = login("alice", "Operator")
    waiting = request_refund(alice, completed)
    assert waiting.requested_by == alice.user

    page = alice.get(refund_page(waiting)).content.decode()
    assert "Awaiting approval" in page
    assert action_url("approve", waiting) not in page
    assert action_url("reject", waiting) not in page
    for name in ("approve", "reject"):
        forced = alice.post(action_url(name, waiting), {**SUBMITTED, "reason": "me"})
        assert forced.status_code == 403
    waiting.refresh_from_db()
    assert waiting.status == Status.AWAITING_APPROVAL


def test_a_superuser_cannot_approve_their_own_refund_either(login, completed, limits):
    root = login("root", None, is_superuser=True)
    waiting = request_refund(root, completed)
    assert (
        action_url("approve", waiting)
        not in root.get(refund_page(waiting)).content.decode()
    )
    forced = root.post(action_url("approve", waiting), {**SUBMITTED, "reason": "me"})
    assert forced.status_code == 403
    waiting.refresh_from_db()
    assert waiting.status == Status.AWAITING_APPROVAL


@pytest.mark.parametrize("role", ["Operator", "Approver"])
def test_another_operator_or_an_approver_approves_and_it_is_sent(
    login, completed, limits, role
):
    waiting = request_refund(login("alice", "Operator"), completed)
    second = login("second", role)
    page = second.get(refund_page(waiting)).content.decode()
    assert action_url("approve", waiting) in page

    response = second.post(
        action_url("approve", waiting),
        {**SUBMITTED, "reason": "usage checked"},
        follow=True,
    )

    assert "Approved: the refund of 8.00 USD is done." in shown_messages(response)
    waiting.refresh_from_db()
    completed.refresh_from_db()
    assert waiting.status == Status.SUCCEEDED and waiting.decided_by == second.user
    assert completed.amount_refunded == Decimal("8.00")


def test_rejecting_needs_a_reason_and_sends_nothing(login, completed, limits):
    waiting = request_refund(login("alice", "Operator"), completed)
    bob = login("bob", "Operator")
    empty = bob.post(action_url("reject", waiting), {**SUBMITTED, "reason": ""})
    assert empty.status_code == 200  # the dialog again, with the field's error
    waiting.refresh_from_db()
    assert waiting.status == Status.AWAITING_APPROVAL

    response = bob.post(
        action_url("reject", waiting), {**SUBMITTED, "reason": "no"}, follow=True
    )
    assert "Rejected the refund of 8.00 USD." in shown_messages(response)
    waiting.refresh_from_db()
    assert waiting.status == Status.REJECTED


def test_approvers_may_approve_and_nothing_else(login, completed, limits):
    waiting = request_refund(login("alice", "Operator"), completed)
    anna = login("anna", "Approver")
    page = anna.get(change_url(completed)).content.decode()
    for name in ("refund", "record_manual_refund", "refresh_from_gateway", "add_note"):
        assert action_url(name, completed) not in page
    refused = anna.post(
        action_url("refund", completed), {**SUBMITTED, "amount": "1", "reason": "x"}
    )
    assert refused.status_code == 403
    assert anna.get(reverse("admin:payments_plan_changelist")).status_code == 403
    assert Refund.objects.count() == 1 and waiting.status == Status.AWAITING_APPROVAL


def test_support_sees_the_waiting_refund_but_cannot_decide(login, completed, limits):
    waiting = request_refund(login("alice", "Operator"), completed)
    sam = login("sam", "Support")
    page = sam.get(refund_page(waiting)).content.decode()
    assert action_url("approve", waiting) not in page
    forced = sam.post(action_url("approve", waiting), {**SUBMITTED, "reason": "x"})
    assert forced.status_code == 403
    listing = sam.get(reverse("admin:payments_refund_changelist")).content.decode()
    assert 'id="awaiting-approval"' not in listing
    assert "Refunds awaiting approval" not in sam.get("/admin/").content.decode()


def test_the_refund_list_and_the_dashboard_show_what_waits_to_approvers(
    login, completed, limits
):
    alice = login("alice", "Operator")
    waiting = request_refund(alice, completed)
    bob = login("bob", "Operator")
    listing = bob.get(reverse("admin:payments_refund_changelist")).content.decode()
    assert "1 refund awaits approval" in listing
    dashboard = bob.get("/admin/").content.decode()
    assert "Refunds awaiting approval" in dashboard
    assert refund_page(waiting) in dashboard
    assert "yours: another person decides" not in dashboard
    own = alice.get("/admin/").content.decode()
    assert "yours: another person decides" in own


def test_with_approvals_off_the_dashboard_has_no_empty_approvals_card(login, settings):
    settings.REFUND_APPROVAL_LIMITS = parse_approval_limits("")
    bob = login("bob", "Operator")
    assert "Refunds awaiting approval" not in bob.get("/admin/").content.decode()


def test_manual_refund_records_wait_in_the_admin_too(login, completed, limits):
    alice = login("alice", "Operator")
    response = alice.post(
        action_url("record_manual_refund", completed),
        {**SUBMITTED, "amount": "1", "reason": "bank transfer 123"},
        follow=True,
    )
    assert any("awaits approval" in m for m in shown_messages(response))
    assert Refund.objects.get().status == Status.AWAITING_APPROVAL


# --- repairs ----------------------------------------------------------------------------


def test_a_repair_is_proposed_by_one_and_confirmed_by_another(login):
    rita = login("rita", "Support", "repair_payment")
    ravi = login("ravi", "Support", "repair_payment")
    payment = PaymentFactory()
    assert (
        action_url("propose_repair", payment)
        in rita.get(change_url(payment)).content.decode()
    )
    response = rita.post(
        action_url("propose_repair", payment),
        {**SUBMITTED, "to_status": "COMPLETED", "reason": "paid: statement line 42"},
        follow=True,
    )
    assert any("a second person must confirm" in m for m in shown_messages(response))
    proposal = PaymentRepair.objects.get()

    own = rita.get(change_url(payment)).content.decode()
    assert action_url("confirm_repair", payment) not in own
    assert action_url("propose_repair", payment) not in own  # one open proposal
    forced = rita.post(action_url("confirm_repair", payment), {**SUBMITTED})
    assert forced.status_code == 403

    other = ravi.get(change_url(payment)).content.decode()
    assert action_url("confirm_repair", payment) in other
    response = ravi.post(
        action_url("confirm_repair", payment), {**SUBMITTED, "reason": ""}, follow=True
    )
    assert "Repaired: the payment is now Completed." in shown_messages(response)
    payment.refresh_from_db()
    proposal.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    assert proposal.decided_by == ravi.user
    timeline = ravi.get(change_url(payment)).content.decode()
    assert "proposed by rita, confirmed by ravi" in timeline


def test_without_repair_payment_there_is_no_repair(login):
    operator = login("olga", "Operator")
    payment = PaymentFactory()
    assert (
        action_url("propose_repair", payment)
        not in operator.get(change_url(payment)).content.decode()
    )
    forced = operator.post(
        action_url("propose_repair", payment),
        {**SUBMITTED, "to_status": "FAILED", "reason": "x"},
    )
    assert forced.status_code == 403
    assert not PaymentRepair.objects.exists()


def test_a_target_outside_the_repair_table_is_refused_in_the_dialog(login):
    rita = login("rita", None, "repair_payment", "view_payment")
    payment = payment_in(Payment.Status.EXPIRED)
    response = rita.post(
        action_url("propose_repair", payment),
        {**SUBMITTED, "to_status": "FAILED", "reason": "x"},
    )
    assert response.status_code == 200  # the dialog again: not a choice
    assert "Select a valid choice" in response.content.decode()
    assert not PaymentRepair.objects.exists()


# --- the customer view --------------------------------------------------------------


def customer_url(email: str, **extra) -> str:
    from django.utils.http import urlencode

    return (
        f"{reverse('admin:payments_customer')}?{urlencode({'email': email, **extra})}"
    )


def test_the_customer_view_totals_per_currency_and_links_every_payment(login):
    usd = PlanFactory(code="usd", price=Decimal("10.00"), currency="USD")
    eur = PlanFactory(code="eur", price=Decimal("24.00"), currency="EUR")
    mine = [
        payment_in(Payment.Status.COMPLETED, plan=usd, email="kim@example.com"),
        payment_in(
            Payment.Status.PARTIALLY_REFUNDED,
            plan=usd,
            email="kim@example.com",
            refunded=Decimal("4.00"),
        ),
        payment_in(Payment.Status.PENDING, plan=eur, email="kim@example.com"),
    ]
    Payment.objects.filter(pk=mine[2].pk).update(needs_review=True)
    payment_in(Payment.Status.COMPLETED, plan=usd, email="other@example.com")

    sam = login("sam", "Support")
    response = sam.get(customer_url("  KIM@example.com "))
    page = response.content.decode()

    assert response.status_code == 200
    for payment in mine:
        assert change_url(payment) in page
    assert "other@example.com" not in page
    assert "3 payments, newest first" in page
    assert "Partially refunded" in page  # the human label
    [eur_totals, usd_totals] = customer_totals("kim@example.com")
    assert (usd_totals.currency, usd_totals.payments) == ("USD", 2)
    assert (usd_totals.paid, usd_totals.refunded) == (Decimal("20"), Decimal("4"))
    assert (eur_totals.paid, eur_totals.open_reviews) == (Decimal("0"), 1)
    assert 'data-total="paid">20.00 USD' in page
    assert 'data-total="refunded">4.00 USD' in page
    assert "1 flagged for review" in page


def test_the_payment_page_links_its_email_to_the_customer_view(login):
    payment = PaymentFactory(email="lee@example.com")
    page = login("sam", "Support").get(change_url(payment)).content.decode()
    assert 'id="customer-link"' in page
    assert customer_url("lee@example.com") in page


def test_the_customer_view_is_paginated_fifty_a_page(login):
    plan = PlanFactory(code="usd", price=Decimal("10.00"), currency="USD")
    PaymentFactory.create_batch(51, plan=plan, email="many@example.com")
    client = login("fay", "Finance")
    first = client.get(customer_url("many@example.com")).content.decode()
    assert first.count("/change/") == 50 and "Page 1 of 2" in first
    second = client.get(customer_url("many@example.com", page=2)).content.decode()
    assert second.count("/change/") == 1 and "Page 2 of 2" in second


def test_the_customer_view_needs_view_payment(login, client):
    assert client.get(customer_url("a@example.com")).status_code == 302  # log in
    nobody = login("nobody")
    assert nobody.get(customer_url("a@example.com")).status_code == 403
    unknown = login("sam", "Support").get(customer_url("nobody@example.com"))
    assert "No payment with the e-mail address nobody@example.com." in (
        unknown.content.decode()
    )


def test_the_customer_queries_use_the_email_index(django_assert_max_num_queries):
    """EXPLAIN of both queries names the e-mail index, among many other rows."""
    plan = PlanFactory(code="usd", price=Decimal("10.00"), currency="USD")
    Payment.objects.bulk_create(
        [
            Payment(plan=plan, email=f"c{n}@example.com", amount=10, currency="USD")
            for n in range(3000)
        ]
    )
    move_to(
        Payment.Status.COMPLETED, [PaymentFactory(plan=plan, email="c7@example.com")]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    for query in (
        customer_payments("c7@example.com")[:50],
        Payment.objects.filter(email="c7@example.com")
        .values("currency")
        .annotate(n=Count("id")),
    ):
        plan_text = query.explain()
        assert "payments_payment_email" in plan_text, plan_text
    with django_assert_max_num_queries(2):  # the totals, then one page
        summary = customer_summary("c7@example.com")
        assert len(list(summary.page)) == 2


def test_the_timeline_records_the_refund_decision(login, completed, limits):
    waiting = request_refund(login("alice", "Operator"), completed)
    login("bob", "Operator").post(
        action_url("approve", waiting), {**SUBMITTED, "reason": "fine"}
    )
    kinds = list(completed.events.values_list("kind", flat=True))
    assert EventKind.REFUND_APPROVED in kinds and EventKind.REFUND_SUCCEEDED in kinds
