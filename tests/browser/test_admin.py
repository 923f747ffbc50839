"""The back office in a real browser: timeline, unfold dialog actions, search."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from payments.models import EventKind, Payment, Refund, RefundStatus

from .helpers import FAST_HASHERS, PASSWORD, login, open_dialog, sandbox_payment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff_page(page: Page, django_user_model, settings) -> Page:
    """A browser logged in to the admin, through its login form, as a superuser."""
    settings.PASSWORD_HASHERS = FAST_HASHERS
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    return login(page, "boss")


def test_refund_and_note_from_the_payment_page(staff_page: Page, completed, plan):
    page = staff_page
    page.goto(f"/admin/payments/payment/{completed.pk}/change/")
    expect(page.get_by_text(completed.ref_id, exact=True).first).to_be_visible()
    expect(page.get_by_text("Timeline", exact=True)).to_be_visible()
    timeline = page.locator("#timeline li.timeline-event")
    expect(timeline).to_have_count(4)
    status_change = timeline.filter(has_text="Status change")
    expect(status_change).to_contain_text("Pending → Completed")

    dialog = open_dialog(page, "Refund")
    expect(dialog.get_by_role("heading")).to_have_text("Refund through the gateway")
    expect(dialog).to_contain_text("Refundable now: 24.00 EUR")
    dialog.get_by_label("Amount").fill("4.50")
    dialog.get_by_label("Reason").fill("two days unused")
    dialog.get_by_role("button", name="Refund").click()

    expect(page.get_by_text("Refunded 4.50 EUR.")).to_be_visible()
    expect(dialog).to_be_hidden()
    refund = Refund.objects.get()
    assert (refund.status, refund.amount, refund.reason) == (
        RefundStatus.SUCCEEDED,
        Decimal("4.50"),
        "two days unused",
    )
    assert refund.requested_by.username == "boss"
    completed.refresh_from_db()
    assert completed.status == Payment.Status.PARTIALLY_REFUNDED
    assert completed.amount_refunded == Decimal("4.50")
    expect(page.locator("#refunds-group")).to_contain_text("two days unused")
    expect(timeline.filter(has_text="Refund succeeded")).to_have_count(1)

    dialog = open_dialog(page, "Add note")
    dialog.get_by_label("Note").fill("customer asked by phone")
    dialog.get_by_role("button", name="Add note").click()

    expect(page.get_by_text("Note added.")).to_be_visible()
    note = timeline.filter(has_text="customer asked by phone")
    expect(note).to_have_count(1)
    expect(note).to_contain_text("boss (admin)")
    assert completed.events.filter(
        kind=EventKind.NOTE, message="customer asked by phone"
    ).exists()


def test_search_payments_by_reference(staff_page: Page, completed, plan, live_server):
    page = staff_page
    other = sandbox_payment(plan, live_server, "other@example.com")
    page.goto("/admin/payments/payment/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)

    # One match: the search opens that payment's page instead of a one-row list.
    search = page.locator("input[name=q]")
    search.fill(f" {completed.ref_id} ")
    search.press("Enter")

    page.wait_for_url(re.compile(rf"/admin/payments/payment/{completed.pk}/change/$"))
    expect(page.get_by_text(completed.ref_id, exact=True).first).to_be_visible()
    expect(page.get_by_text("Timeline", exact=True)).to_be_visible()
    expect(page.get_by_text(other.ref_id)).to_have_count(0)


def test_search_matching_several_payments_lists_them(
    staff_page: Page, completed, plan, live_server
):
    page = staff_page
    other = sandbox_payment(plan, live_server, "paid.again@example.com")
    third = sandbox_payment(plan, live_server, "someone@example.com")
    page.goto("/admin/payments/payment/")
    search = page.locator("input[name=q]")
    search.fill("PAID")
    search.press("Enter")

    page.wait_for_url(re.compile(r"/admin/payments/payment/\?q=PAID$"))
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text=completed.ref_id)).to_contain_text("paid@example.com")
    expect(rows.filter(has_text=other.ref_id)).to_contain_text("paid.again@")
    expect(page.get_by_text(third.ref_id)).to_have_count(0)
    rows.get_by_role("link", name=completed.ref_id).click()
    page.wait_for_url(re.compile(rf"/admin/payments/payment/{completed.pk}/change/"))
    expect(page.get_by_text("Timeline", exact=True)).to_be_visible()


def test_the_filter_panel_lists_and_exports_the_selectors_rows(
    staff_page: Page, completed, plan, live_server
):
    """The panel's own fields, as the browser sends them, read by the selector."""
    from pathlib import Path
    from urllib.parse import urlsplit

    from django.utils import timezone

    from payments import selectors

    page = staff_page
    pending = sandbox_payment(plan, live_server, "pending@example.com")
    today = timezone.localdate().strftime("%d/%m/%Y")
    page.goto("/admin/payments/payment/")
    page.wait_for_load_state()
    page.locator("a.filter-open-button").click()
    panel = page.locator("#filter-form")
    panel.locator("#select2-id_status__exact-container").click()
    page.locator(".select2-results__option", has_text=re.compile("^Completed$")).click()
    panel.locator("label[for=id_needs_review__exact_2]").click()  # No
    panel.locator("#id_date_created_from").fill(today)
    panel.get_by_role("button", name=re.compile("Apply Filters")).click()

    page.wait_for_url(re.compile(r"status__exact=COMPLETED"))
    query = urlsplit(page.url).query
    filters = selectors.payment_filters_from_query(query)
    assert filters.statuses == ("COMPLETED",)
    assert (filters.needs_review, filters.created_from) == (False, timezone.localdate())
    listed = list(
        selectors.payment_list(filters=filters).values_list("ref_id", flat=True)
    )
    assert listed == [completed.ref_id]
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(completed.ref_id)
    expect(page.get_by_text(pending.ref_id)).to_have_count(0)

    page.get_by_role("link", name=re.compile(r"Export$")).click()
    page.wait_for_url(re.compile(r"/admin/payments/payment/export/\?"))
    page.locator("select[name=format]").select_option(label="csv")
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile("Submit|Export")).click()
    lines = Path(download.value.path()).read_text().splitlines()
    # A reference starting with "-" is written with a leading ' (formula-safe).
    exported = [line.split(",")[0].removeprefix("'") for line in lines[1:]]
    assert exported == listed


def test_a_date_the_list_cannot_read_is_dropped_with_a_message(
    staff_page: Page, completed
):
    page = staff_page
    page.goto("/admin/payments/payment/")
    page.wait_for_load_state()
    page.locator("a.filter-open-button").click()
    page.locator("#id_date_created_to").fill("31/02/2026")
    page.get_by_role("button", name=re.compile("Apply Filters")).click()

    expect(
        page.get_by_text("Filter not applied: date_created_to: '31/02/2026' is not")
    ).to_be_visible()
    assert "date_created_to" not in page.url
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
