"""Four-eyes refunds in the browser: one operator asks, another approves, once.

The payment is paid at the fake MPGS over real HTTP; the refund call the
approval makes reaches the fake, which counts it.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import requests
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from payments.approval_limits import parse_approval_limits
from payments.models import Payment, Refund, RefundStatus
from payments.roles import roles_setup
from tests.api import create_payment

from .helpers import FAST_HASHERS, PASSWORD, action_link, login, open_dialog

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture(autouse=True)
def _viewport(page: Page):
    page.set_viewport_size(VIEWPORT)


@pytest.fixture
def staff(django_user_model, settings):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    roles_setup()

    def create(name: str, role: str):
        user = django_user_model.objects.create_user(
            name, f"{name}@example.com", PASSWORD, is_staff=True
        )
        user.groups.add(Group.objects.get(name=role))
        return user

    return create


@pytest.fixture
def mpgs_paid(live_server, plan, providers) -> Payment:
    """A 24.00 EUR payment paid on the fake MPGS's hosted page."""
    created = create_payment(live_server.url, plan, "mpgs", email="kim@example.com")
    payment = Payment.objects.get(ref_id=created["ref_id"])
    hosted = f"{providers.url}/checkout/pay/{payment.gateway_session_id}"
    paid = requests.post(hosted, data={"action": "pay"}, timeout=10)
    assert "Payment received" in paid.text
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    return payment


def forced_post(page: Page, url: str, **fields: str):
    """POST a dialog's form straight to its URL, with the session's CSRF token."""
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    form = {"csrfmiddlewaretoken": token, "_form_submitted": "True", **fields}
    return page.request.post(url, form=form)


def test_a_refund_above_the_limit_waits_for_a_second_operator(
    page: Page, staff, mpgs_paid, providers, settings
):
    settings.REFUND_APPROVAL_LIMITS = parse_approval_limits("EUR:20,*:100")
    staff("alice", "Operator")
    bob = staff("bob", "Operator")
    sent = providers.count("mpgs:refund")

    # Alice asks for a refund at or above the limit: it waits, nothing is sent.
    login(page, "alice")
    page.goto(f"/admin/payments/payment/{mpgs_paid.pk}/change/")
    dialog = open_dialog(page, "Refund")
    dialog.get_by_label("Amount").fill("24.00")
    dialog.get_by_label("Reason").fill("eSIM never installed")
    dialog.get_by_role("button", name="Refund").click()
    expect(page.get_by_text("The refund of 24.00 EUR awaits approval")).to_be_visible()
    waiting = Refund.objects.get()
    assert waiting.status == RefundStatus.AWAITING_APPROVAL
    assert providers.count("mpgs:refund") == sent

    # She cannot approve her own: no button, and a forced POST is refused.
    refund_url = f"/admin/payments/refund/{waiting.pk}/change/"
    page.goto(refund_url)
    expect(page.get_by_text("Awaiting approval").first).to_be_visible()
    expect(action_link(page, "Approve")).to_have_count(0)
    expect(action_link(page, "Reject")).to_have_count(0)
    forced = forced_post(
        page, f"/admin/payments/refund/{waiting.pk}/approve/", reason="mine"
    )
    assert forced.status == 403
    waiting.refresh_from_db()
    assert waiting.status == RefundStatus.AWAITING_APPROVAL
    assert providers.count("mpgs:refund") == sent

    # Bob sees it waiting on the dashboard and approves it: one refund call.
    page.context.clear_cookies()
    login(page, "bob")
    card = page.locator("#kpi-approvals")
    expect(card).to_contain_text("1")
    card.click()
    page.wait_for_url(re.compile(r"/admin/payments/refund/\?status__exact=AWAITING"))
    expect(page.locator("#awaiting-approval")).to_contain_text(
        "1 refund awaits approval"
    )
    page.goto(refund_url)
    dialog = open_dialog(page, "Approve")
    expect(dialog).to_contain_text("Refund of 24.00 EUR requested by alice")
    dialog.get_by_label("Reason").fill("checked: never installed")
    dialog.get_by_role("button", name="Approve and send").click()
    expect(
        page.get_by_text("Approved: the refund of 24.00 EUR is done.")
    ).to_be_visible()

    assert providers.count("mpgs:refund") == sent + 1
    waiting.refresh_from_db()
    mpgs_paid.refresh_from_db()
    assert (waiting.status, waiting.decided_by) == (RefundStatus.SUCCEEDED, bob)
    assert mpgs_paid.status == Payment.Status.REFUNDED
    assert mpgs_paid.amount_refunded == Decimal("24.00")
    # A second click (another tab, a replay) sends nothing more.
    again = forced_post(
        page, f"/admin/payments/refund/{waiting.pk}/approve/", reason="again"
    )
    assert again.status == 403
    assert providers.count("mpgs:refund") == sent + 1


def test_support_sees_the_customer_view_but_no_approval(
    page: Page, staff, mpgs_paid, providers, settings
):
    settings.REFUND_APPROVAL_LIMITS = parse_approval_limits("EUR:20")
    from payments import services

    alice = staff("alice", "Operator")
    waiting = services.refund_request(
        payment_id=mpgs_paid.pk,
        amount=Decimal("20"),
        actor=services.Actor("admin", user=alice),
    )
    assert waiting.status == RefundStatus.AWAITING_APPROVAL
    staff("sam", "Support")
    login(page, "sam")
    expect(page.locator("#kpi-approvals")).to_have_count(0)

    page.goto(f"/admin/payments/payment/{mpgs_paid.pk}/change/")
    page.locator("#customer-link").click()
    page.wait_for_url(re.compile(r"/admin/payments/payment/customer/\?email=kim"))
    totals = page.locator("#customer-totals [data-currency=EUR]")
    expect(totals.locator("[data-total=paid]")).to_have_text("24.00 EUR")
    expect(totals.locator("[data-total=refunded]")).to_have_text("0.00 EUR")
    rows = page.locator("#customer-payments tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Completed")
    rows.first.get_by_role("link", name=mpgs_paid.ref_id).click()
    page.wait_for_url(re.compile(rf"/admin/payments/payment/{mpgs_paid.pk}/change/$"))

    # The search by e-mail on the customer page finds the same customer.
    page.goto("/admin/payments/payment/customer/")
    page.get_by_label("E-mail address").fill("KIM@example.com")
    page.get_by_role("button", name="Show customer").click()
    expect(page.locator("#customer-count")).to_contain_text("1 payment")

    page.goto(f"/admin/payments/refund/{waiting.pk}/change/")
    expect(page.get_by_text("Awaiting approval").first).to_be_visible()
    expect(action_link(page, "Approve")).to_have_count(0)
    expect(action_link(page, "Reject")).to_have_count(0)
