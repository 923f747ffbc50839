"""The back office in a real browser: timeline, unfold dialog actions, search."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from payments import services
from payments.models import EventKind, Payment, Refund, RefundStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-test-pw-2026"


def sandbox_payment(plan, live_server, email: str) -> Payment:
    return services.payment_create(
        plan=plan, gateway_code="sandbox", email=email, site_url=live_server.url
    )


@pytest.fixture
def completed(plan, sandbox, live_server) -> Payment:
    """A sandbox payment the payer paid (a signed notification applied)."""
    payment = sandbox_payment(plan, live_server, "paid@example.com")
    body, headers = sandbox.choose(payment.gateway_session_id, "paid")
    services.webhook_ingest(
        gateway_code="sandbox", body=body, headers=headers, remote_addr=None
    )
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    return payment


@pytest.fixture
def staff_page(page: Page, django_user_model, settings) -> Page:
    """A browser logged in to the admin, through its login form, as a superuser."""
    # A fast hasher: PBKDF2 would cost a second to create the user and log in.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    page.goto("/admin/")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
    return page


def open_dialog(page: Page, action: str):
    """Click a payment action; return its unfold dialog once it is shown."""
    page.wait_for_load_state()  # htmx and Alpine are set up
    url = page.url
    page.get_by_role("link", name=re.compile(rf"\b{action}$")).click()
    dialog = page.locator("#dialog")
    expect(dialog).to_be_visible()
    assert page.url == url  # a modal over the payment page, not a page of its own
    return dialog


def test_refund_and_note_from_the_payment_page(staff_page: Page, completed, plan):
    page = staff_page
    page.goto(f"/admin/payments/payment/{completed.pk}/change/")
    expect(page.get_by_text(completed.ref_id, exact=True).first).to_be_visible()
    expect(page.get_by_text("Timeline", exact=True)).to_be_visible()
    timeline = page.locator("#events-group tr.form-row")
    expect(timeline).to_have_count(4)
    status_change = timeline.filter(has_text="Status change")
    expect(status_change).to_contain_text("PENDING → COMPLETED")

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

    search = page.locator("input[name=q]")
    search.fill(completed.ref_id)
    search.press("Enter")

    page.wait_for_url(re.compile(rf"\?q={re.escape(completed.ref_id)}"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("paid@example.com")
    expect(page.get_by_text(other.ref_id)).to_have_count(0)
    rows.first.get_by_role("link", name=completed.ref_id).click()
    page.wait_for_url(re.compile(rf"/admin/payments/payment/{completed.pk}/change/"))
    expect(page.get_by_text("Timeline", exact=True)).to_be_visible()
