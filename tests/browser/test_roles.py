"""The back office for each role: what Support, Operator and Finance see and do."""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from payments.models import Payment, Refund, RefundStatus

from .helpers import (
    action_link,
    login,
    open_actions,
    open_dialog,
    sandbox_payment,
    sidebar_item,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAYMENT_CARDS = (
    "Paid today",
    "Paid, last 30 days",
    "Open payments",
    "Needs review",
    "Success rate, last 7 days",
    "Refunds, last 30 days",
    "Payments needing attention",
)
RECORD_CARDS = ("Last reconciliation", "Webhook problems, last 24 h")
# The whole sidebar of a role: Plans, Schedules, tasks, Users and Groups are left
# out unless the role may open them.
SUPPORT_SIDEBAR = [
    "Dashboard",
    "Payments",
    "Customers",
    "Refunds",
    "Timeline events",
    "Webhook deliveries",
    "Reconciliation runs",
    "Idempotency keys",
]
FINANCE_SIDEBAR = [
    "Dashboard",
    "Payments",
    "Customers",
    "Refunds",
    "Timeline events",
    "Settlement summary",
    "Exports",
    "Plans",
    "Audit log",
]

# Above 1280 px wide, unfold shows the sidebar open; at or below it, folded away.
DESKTOP = {"width": 1400, "height": 900}


@pytest.fixture(autouse=True)
def _desktop(page: Page):
    page.set_viewport_size(DESKTOP)


def sidebar_titles(page: Page):
    """The titles of the sidebar's links (icons and badges left out)."""
    return page.locator("#nav-sidebar-apps li > a > span:not([class])")


@pytest.mark.parametrize(
    ("role", "sees_records"),
    [("Support", True), ("Operator", True), ("Finance", False)],
)
def test_dashboard_and_search_for_each_role(
    page: Page, staff, completed, plan, live_server, role, sees_records
):
    sandbox_payment(plan, live_server, "other@example.com")
    staff(role)
    login(page, role.lower())

    dashboard = page.locator("#dashboard")
    for title in PAYMENT_CARDS:
        expect(dashboard.get_by_role("heading", name=title, exact=True)).to_be_visible()
    for title in RECORD_CARDS:
        card = dashboard.get_by_role("heading", name=title, exact=True)
        expect(card).to_have_count(1 if sees_records else 0)
    expect(dashboard.locator("canvas")).to_have_count(2)  # volume and status charts

    page.goto("/admin/payments/payment/")
    search = page.locator("input[name=q]")
    search.fill("  PAID@EXAMPLE.COM  ")
    search.press("Enter")

    page.wait_for_url(re.compile(rf"/admin/payments/payment/{completed.pk}/change/$"))
    expect(page.get_by_text(completed.ref_id, exact=True).first).to_be_visible()
    expect(page.get_by_text("Timeline", exact=True)).to_be_visible()


def test_operator_refunds_part_of_a_payment(page: Page, staff, completed):
    operator = staff("Operator")
    login(page, "operator")
    page.goto(f"/admin/payments/payment/{completed.pk}/change/")
    timeline = page.locator("#timeline li.timeline-event")
    expect(timeline).to_have_count(4)

    dialog = open_dialog(page, "Refund")
    expect(dialog).to_contain_text("Refundable now: 24.00 EUR")
    dialog.get_by_label("Amount").fill("10.00")
    dialog.get_by_label("Reason").fill("half the data unused")
    dialog.get_by_role("button", name="Refund").click()

    expect(page.get_by_text("Refunded 10.00 EUR.")).to_be_visible()
    expect(timeline.filter(has_text="Refund succeeded")).to_have_count(1)
    expect(page.locator("#refunds-group")).to_contain_text("half the data unused")
    refund = Refund.objects.get()
    assert (refund.status, refund.amount, refund.requested_by) == (
        RefundStatus.SUCCEEDED,
        Decimal("10.00"),
        operator,
    )
    completed.refresh_from_db()
    assert completed.status == Payment.Status.PARTIALLY_REFUNDED
    assert completed.amount_refunded == Decimal("10.00")


def test_support_reads_and_notes_but_cannot_refund(page: Page, staff, completed):
    Payment.objects.filter(pk=completed.pk).update(needs_review=True)
    staff("Support")
    login(page, "support")

    badge = sidebar_item(page, "Payments").locator(".sidebar-badge")
    expect(badge).to_be_visible()
    expect(badge).to_have_text("1")
    expect(sidebar_titles(page)).to_have_text(SUPPORT_SIDEBAR)

    page.goto(f"/admin/payments/payment/{completed.pk}/change/")
    expect(page.get_by_text("Timeline", exact=True)).to_be_visible()
    open_actions(page)
    expect(action_link(page, "Refresh from gateway")).to_be_visible()
    expect(action_link(page, "Add note")).to_be_visible()
    expect(action_link(page, "Refund")).to_have_count(0)
    expect(action_link(page, "Record manual refund")).to_have_count(0)
    expect(action_link(page, "Resolve review")).to_have_count(0)

    for url in (
        "/admin/auth/user/",
        "/admin/payments/plan/",
        "/admin/django_q/schedule/",
    ):
        response = page.goto(url)
        assert response is not None and response.status == 403, url


def test_finance_reads_plans_and_payments_without_actions(
    page: Page, staff, completed, plan
):
    staff("Finance")
    login(page, "finance")
    expect(sidebar_titles(page)).to_have_text(FINANCE_SIDEBAR)
    # Nothing is flagged: the Payments entry shows no badge at all.
    expect(sidebar_item(page, "Payments").locator(".sidebar-badge")).to_have_count(0)

    sidebar_item(page, "Plans").click()
    page.get_by_role("link", name=plan.code, exact=True).click()
    page.wait_for_url(re.compile(rf"/admin/payments/plan/{plan.pk}/change/$"))
    expect(page.get_by_text("Europe 5 GB").first).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Save"))).to_have_count(0)

    page.goto(f"/admin/payments/payment/{completed.pk}/change/")
    expect(page.get_by_text("Timeline", exact=True)).to_be_visible()
    for action in (
        "Refresh from gateway",
        "Add note",
        "Refund",
        "Record manual refund",
    ):
        expect(action_link(page, action)).to_have_count(0)


@pytest.mark.skipif(
    not os.environ.get("SCREENSHOT_DIR"), reason="set SCREENSHOT_DIR to take it"
)
def test_dashboard_screenshot(page: Page, settings):
    """Save the dashboard over demo data as $SCREENSHOT_DIR/dashboard.png."""
    settings.DEBUG = True  # seed_demo creates known passwords only in DEBUG
    call_command("seed_demo", payments=600, verbosity=0)
    login(page, "admin", "demo-admin-2026")
    expect(page.locator("#dashboard canvas")).to_have_count(2)
    page.wait_for_timeout(1000)  # let Chart.js draw both charts
    path = Path(os.environ["SCREENSHOT_DIR"]) / "dashboard.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def test_finance_exports_the_filtered_list_and_support_cannot(
    page: Page, staff, completed, live_server
):
    """Finance sees Export, picks CSV and gets the file; Support sees no Export."""
    staff("Support")
    login(page, "support")
    page.goto("/admin/payments/payment/")
    expect(page.get_by_role("link", name=re.compile(r"Export$"))).to_have_count(0)

    page.context.clear_cookies()
    staff("Finance")
    login(page, "finance")
    page.goto("/admin/payments/payment/?status__exact=COMPLETED")
    export = page.get_by_role("link", name=re.compile(r"Export$"))
    expect(export).to_have_count(1)
    export.click()
    page.wait_for_url(
        re.compile(r"/admin/payments/payment/export/\?status__exact=COMPLETED")
    )
    page.locator("select[name=format]").select_option(label="csv")
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile("Submit|Export")).click()
    text = Path(download.value.path()).read_text()
    assert completed.ref_id in text
    assert text.splitlines()[0].startswith("Reference,Created (UTC)")

    sidebar_item(page, "Settlement summary").click()
    expect(page.get_by_text("Settlement summary").first).to_be_visible()
