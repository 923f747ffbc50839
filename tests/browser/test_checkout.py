"""The customer's checkout in a real browser: checkout.js, hosted pages, results."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from payments import services
from payments.models import EventKind, IdempotencyRecord, Payment
from tests.factories import PlanFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

Status = Payment.Status
SANDBOX = "Sandbox (test card)"
CRYPTO = "Crypto (CoinPayments)"
CARD = "Card (Mastercard Gateway)"


@pytest.fixture
def plans(plan):
    """Two plans on sale; the cheaper one is listed, and preselected, first."""
    PlanFactory(code="world-1gb", name="World 1 GB", price=Decimal("5.00"))
    return plan


def open_checkout(page: Page) -> None:
    page.goto("/checkout/")
    expect(page.get_by_role("heading", name="Choose your plan")).to_be_visible()


def fill_and_continue(page: Page, email: str) -> str:
    """Type the e-mail, press Continue; return the Idempotency-Key checkout.js sent."""
    page.get_by_label("E-mail for your eSIM").fill(email)
    with page.expect_request(
        lambda r: r.method == "POST" and r.url.endswith("/api/payments/")
    ) as sent:
        page.get_by_role("button", name="Continue to payment").click()
    # checkout.js posted it; a plain form post would reach the same end.
    assert sent.value.resource_type == "fetch"
    return sent.value.headers.get("idempotency-key", "")


def return_url(ref_id: str) -> re.Pattern[str]:
    return re.compile(rf"/checkout/return/{re.escape(ref_id)}/(\?.*)?$")


@pytest.mark.parametrize(
    ("button", "heading", "status"),
    [
        ("Pay", "Payment received", Status.COMPLETED),
        ("Decline", "Payment failed", Status.FAILED),
    ],
    ids=["pay", "decline"],
)
def test_sandbox_checkout(page: Page, plans, sandbox, button, heading, status):
    open_checkout(page)
    page.get_by_role("radio", name="Europe 5 GB").check()
    expect(page.get_by_role("radio", name=SANDBOX)).to_be_checked()

    key = fill_and_continue(page, "Buyer@Example.com")

    page.wait_for_url("**/sandbox/pay/*/")
    expect(page.get_by_role("heading", name="Sandbox payment page")).to_be_visible()
    expect(page.get_by_text("24.00 EUR")).to_be_visible()
    page.get_by_role("button", name=button, exact=True).click()

    payment = Payment.objects.get()
    page.wait_for_url(return_url(payment.ref_id))
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    expect(page.locator("code")).to_have_text(payment.ref_id)

    payment.refresh_from_db()
    assert (payment.plan, payment.amount, payment.currency) == (
        plans,
        Decimal("24.00"),
        "EUR",
    )
    assert payment.email == "buyer@example.com"
    assert payment.status == status
    change = payment.events.get(kind=EventKind.STATUS_CHANGE)
    assert (change.from_status, change.to_status) == ("PENDING", status)
    # checkout.js sent a fresh Idempotency-Key, and the server kept its answer.
    assert key
    assert IdempotencyRecord.objects.get(key=key).payment == payment


def test_invalid_email_shows_the_api_error(page: Page, plan, sandbox):
    open_checkout(page)
    first_key = fill_and_continue(page, "not-an-email")

    error = page.get_by_role("alert")
    expect(error).to_be_visible()
    expect(error).to_contain_text("invalid request")
    expect(error).to_contain_text("email: Enter a valid email address.")
    expect(page.get_by_role("button", name="Continue to payment")).to_be_enabled()
    assert page.url.endswith("/checkout/")
    assert not Payment.objects.exists()

    # Corrected, the same form goes through, under a new Idempotency-Key.
    assert fill_and_continue(page, "fixed@example.com") not in ("", first_key)
    page.wait_for_url("**/sandbox/pay/*/")
    assert Payment.objects.get().email == "fixed@example.com"


def test_coin_picker_and_coinpayments_payment(page: Page, plan, providers):
    fake = providers
    open_checkout(page)
    coin = page.get_by_label("Coin", exact=True)
    expect(coin).to_be_hidden()

    page.get_by_role("radio", name=CRYPTO).check()
    expect(coin).to_be_visible()
    expect(coin.locator("option")).to_have_text(["BTC", "LTC"])
    page.get_by_role("radio", name=SANDBOX).check()
    expect(coin).to_be_hidden()

    page.get_by_role("radio", name=CRYPTO).check()
    coin.select_option("LTC")
    fill_and_continue(page, "crypto@example.com")

    page.wait_for_url(f"{fake.url}/cp/checkout/*")
    expect(page.get_by_role("heading")).to_have_text(re.compile(r"^Pay [0-9.]+ LTC$"))
    page.get_by_role("button", name="Pay", exact=True).click()

    payment = Payment.objects.get()
    page.wait_for_url(return_url(payment.ref_id))
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.crypto_currency == "LTC" and payment.crypto_address
    assert fake.cp_transaction(payment.gateway_transaction_id)["currency2"] == "LTC"


def test_card_payment_through_the_mpgs_checkout_script(
    page: Page, plan, providers, live_server
):
    fake = providers
    visited: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: visited.append(frame.url) if frame == page.main_frame else None,
    )
    open_checkout(page)
    page.get_by_role("radio", name=CARD).check()
    expect(page.get_by_label("Coin", exact=True)).to_be_hidden()
    fill_and_continue(page, "card@example.com")

    # Our pay page loads the provider's checkout.min.js, which opens its page.
    page.wait_for_url(f"{fake.url}/checkout/pay/*")
    assert fake.count("mpgs:checkout_js") == 1
    expect(page.get_by_text("24.00 EUR")).to_be_visible()
    page.get_by_role("button", name="Pay", exact=True).click()

    payment = Payment.objects.get()
    page.wait_for_url(
        re.compile(rf"/checkout/return/{re.escape(payment.ref_id)}/\?resultIndicator=")
    )
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    assert visited[-3:] == [
        f"{live_server.url}/checkout/pay/{payment.ref_id}/",
        f"{fake.url}/checkout/pay/{payment.gateway_session_id}",
        page.url,
    ]
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
    assert payment.amount_paid == Decimal("24.00")


def test_result_page_updates_itself(page: Page, plan, sandbox, settings, live_server):
    settings.STATUS_REFRESH_SECONDS = 1  # the page polls every 2 s at the least
    payment = services.payment_create(
        plan=plan,
        gateway_code="sandbox",
        email="waiting@example.com",
        site_url=live_server.url,
    )
    page.goto(f"/checkout/return/{payment.ref_id}/")
    expect(page.get_by_role("heading", name="Waiting for confirmation")).to_be_visible()
    expect(page.locator("#status-text")).to_have_text("Pending")

    body, headers = sandbox.choose(payment.gateway_session_id, "paid")
    services.webhook_ingest(
        gateway_code="sandbox", body=body, headers=headers, remote_addr=None
    )

    expect(page.get_by_role("heading", name="Payment received")).to_be_visible(
        timeout=15_000
    )
    assert page.url.endswith(f"/checkout/return/{payment.ref_id}/")
    payment.refresh_from_db()
    assert payment.status == Status.COMPLETED
