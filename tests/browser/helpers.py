"""Helpers shared by the browser tests: payments, logging in, dialogs, sidebar.

Playwright is imported inside the functions: the package's conftest imports
this module, and conftest must load where Playwright is missing (it then skips).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from payments import services
from payments.models import Payment

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

PASSWORD = "browser-test-pw-2026"
# A fast hasher: PBKDF2 would cost a second to create a user and another to log in.
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sandbox_payment(plan, live_server, email: str) -> Payment:
    """Create a PENDING sandbox payment the way checkout does."""
    return services.payment_create(
        plan=plan, gateway_code="sandbox", email=email, site_url=live_server.url
    )


def login(page: Page, username: str, password: str = PASSWORD) -> Page:
    """Log in through the admin's login form; return the page on the dashboard."""
    page.goto("/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
    return page


def actions_menu(page: Page) -> Locator:
    """The payment page's one "Actions" menu button (unfold's dropdown action group)."""
    return page.locator("a:not([href])", has_text=re.compile(r"\bActions\b"))


def open_actions(page: Page) -> None:
    """Open the payment page's Actions menu (unless it is open already)."""
    from playwright.sync_api import expect

    page.wait_for_load_state()  # htmx and Alpine are set up
    menu = page.locator("nav:has(a[hx-get])").last
    if not menu.is_visible():
        actions_menu(page).click()
        expect(menu).to_be_visible()


def open_dialog(page: Page, action: str) -> Locator:
    """Choose a dialog action (from the Actions menu where there is one); return the dialog."""
    from playwright.sync_api import expect

    url = page.url
    page.wait_for_load_state()
    # The payment page keeps its actions in one menu; other pages (a refund,
    # a user) show their few actions as buttons.
    if actions_menu(page).count():
        open_actions(page)
    action_link(page, action).click()
    dialog = page.locator("#dialog")
    expect(dialog).to_be_visible()
    assert page.url == url  # a modal over the payment page, not a page of its own
    return dialog


def action_link(page: Page, action: str) -> Locator:
    """The link of a payment page's dialog action (its icon's name comes first).

    The actions sit in one menu: open it (`open_actions`) before expecting a
    link to be visible; a link the user may not use is not on the page at all.
    """
    return page.get_by_role("link", name=re.compile(rf"\b{action}$"))


def sidebar_item(page: Page, title: str) -> Locator:
    """The sidebar link whose title is exactly `title` (badge and icon aside)."""
    return page.locator("#nav-sidebar-apps li > a").filter(
        has=page.locator("span:not([class])", has_text=re.compile(rf"^{title}$"))
    )
