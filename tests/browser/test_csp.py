"""The Content-Security-Policy in a real browser: nothing the pages need is refused."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from payments import services

from .helpers import FAST_HASHERS, PASSWORD, login, open_dialog

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Chromium reports a refused script, style, frame or connection on the console.
VIOLATION = "Content Security Policy"


@pytest.fixture
def violations(page: Page) -> list[str]:
    """Collect the CSP violations the page reports, console and DOM events alike."""
    seen: list[str] = []
    page.on(
        "console",
        lambda message: (
            seen.append(message.text) if VIOLATION in message.text else None
        ),
    )
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "console.error('Content Security Policy event: ' + e.violatedDirective "
        "+ ' ' + e.blockedURI));"
    )
    return seen


def test_checkout_and_result_pages_run_under_the_policy(
    page: Page, plan, sandbox, violations
):
    page.goto("/checkout/")
    expect(page.locator("#test-mode")).to_be_visible()  # the sandbox is on
    page.get_by_label("E-mail for your eSIM").fill("csp@example.com")
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url("**/sandbox/pay/*/")
    page.get_by_role("button", name="Pay", exact=True).click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    # The page's stylesheet applied: the banner is red, the card is white.
    banner = page.locator("#test-mode")
    assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == (
        "rgb(185, 28, 28)"
    )
    assert violations == []


def test_the_mpgs_pay_page_loads_the_providers_script(
    page: Page, plan, providers, live_server, violations
):
    fake = providers
    payment = services.payment_create(
        plan=plan,
        gateway_code="mpgs",
        email="csp@example.com",
        site_url=live_server.url,
    )
    page.goto(f"/checkout/pay/{payment.ref_id}/")
    # Its inline scripts ran and checkout.min.js (another origin) opened the page.
    page.wait_for_url(f"{fake.url}/checkout/pay/*")
    assert fake.count("mpgs:checkout_js") == 1
    assert violations == []


def test_the_admin_runs_under_its_policy(
    page: Page, django_user_model, settings, completed, violations
):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    login(page, "boss")
    expect(page.locator("#test-mode")).to_be_visible()
    page.goto("/admin/payments/payment/")
    expect(page.get_by_text(completed.ref_id).first).to_be_visible()
    page.goto(f"/admin/payments/payment/{completed.pk}/change/")
    # An unfold dialog needs htmx and Alpine.js: both run.
    dialog = open_dialog(page, "Refund")
    expect(dialog.get_by_label("Amount")).to_be_visible()
    assert violations == []


def test_the_hyperpay_pay_page_runs_the_widget_from_the_providers_origin(
    page: Page, plan, providers, live_server, violations
):
    fake = providers
    fake.hyperpay_webhook_url = None
    payment = services.payment_create(
        plan=plan,
        gateway_code="hyperpay",
        email="csp@example.com",
        site_url=live_server.url,
    )

    page.goto(f"/checkout/pay/{payment.ref_id}/")

    # paymentWidgets.js (another origin) ran and filled the paymentWidgets form.
    expect(page.locator("form.paymentWidgets #wpwl-pay")).to_be_visible()
    assert page.evaluate("window.wpwl.checkoutId") == payment.gateway_session_id
    assert page.evaluate("window.wpwl.brands") == ["VISA", "MASTER"]
    assert fake.count("hyperpay:widget_js") == 1
    # Through the widget to the provider's page and back to our result page.
    page.locator("#wpwl-pay").click()
    page.get_by_role("button", name="Pay", exact=True).click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    assert page.url.startswith(f"{live_server.url}/checkout/return/{payment.ref_id}/")
    assert violations == []


def test_the_hyperpay_pay_page_loads_one_widget_per_method(
    page: Page, plan, providers, gateway_settings, live_server, violations
):
    from gateways import registry

    fake = providers
    gateway_settings["hyperpay"]["mada_entity_id"] = fake.hyperpay_mada_entity_id
    registry.reset()
    payment = services.payment_create(
        plan=plan,
        gateway_code="hyperpay",
        email="csp@example.com",
        site_url=live_server.url,
    )
    mada_checkout = payment.gateway_data["checkouts"][1]["checkout_id"]

    page.goto(f"/checkout/pay/{payment.ref_id}/")
    expect(page.locator("#wpwl-pay")).to_be_visible()
    page.get_by_role("link", name="mada", exact=True).click()

    expect(page.locator(".wpwl-brands")).to_have_text("Pay with MADA")
    assert page.evaluate("window.wpwl.checkoutId") == mada_checkout
    assert page.locator("#methods [aria-current=true]").inner_text() == "mada"
    assert fake.count("hyperpay:widget_js") == 2  # one per page load
    assert violations == []
