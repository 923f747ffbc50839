"""Browser tests: Playwright's sync API driving Debian's Chromium.

Only /usr/bin/chromium is used, never a browser downloaded by Playwright. When
it or the playwright package is missing the package is skipped, except under
CI (CI=true), where a missing browser is a failure.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Playwright's default for actions and navigations is 30 s; a page of this app
# that takes 10 s is a failure worth seeing quickly.
TIMEOUT_MS = 10_000


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing() -> str:
    problems = []
    if importlib.util.find_spec("playwright") is None:
        problems.append("the playwright package is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    return "; ".join(problems)


MISSING = _missing()


class _BrowserMissing(pytest.Module):
    """Stands in for a test module that cannot run here; it is never imported."""

    def collect(self):
        if not _in_ci():
            pytest.skip(
                f"browser tests need Playwright and Debian's Chromium: {MISSING}"
            )
        # Under CI, one failing test per module: the rest of the suite still
        # runs, and -m "not browser" deselects it like the tests it replaces.
        check = _BrowserCheck.from_parent(self, name="browser_is_installed")
        check.add_marker(pytest.mark.browser)
        return [check]


class _BrowserCheck(pytest.Item):
    def runtest(self):
        pytest.fail(f"CI is set and {MISSING}", pytrace=False)

    def reportinfo(self):
        return self.path, None, self.name


def pytest_pycollect_makemodule(module_path, parent):
    # A hook, not a module-level skip: this conftest is imported at start-up
    # when pytest is given tests/browser, and a skip raised then aborts the run.
    if MISSING:
        return _BrowserMissing.from_parent(parent, path=module_path)
    return None


@pytest.fixture(scope="package")
def browser():
    """One headless Chromium for the browser tests.

    From start() to stop(), Playwright's sync API keeps its event loop marked
    as running in this thread, also between its calls, and Django refuses ORM
    calls from such a thread (SynchronousOnlyOperation). So the override lives
    exactly as long as Playwright does, which is why this fixture is scoped to
    this package: the tests that run after it get Django's check back.
    """
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) whose relative URLs hit live_server."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()
    _every_admin_write_is_audited()


def _every_admin_write_is_audited() -> None:
    """Each admin add, change or delete a browser test made has its audit entry.

    Django's admin log (LogEntry) is written by the same admin hooks that
    append to the audit log (audit/admin_hooks.py); a write that reached one
    and not the other, or under another actor, fails the test that made it.
    """
    from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry

    from audit import log
    from audit.models import AuditEntry

    actions = {
        ADDITION: log.ADMIN_ADD,
        CHANGE: log.ADMIN_CHANGE,
        DELETION: log.ADMIN_DELETE,
    }
    audited = set(
        AuditEntry.objects.filter(action__in=actions.values()).values_list(
            "action", "target_model", "target_id", "actor_username"
        )
    )
    for entry in LogEntry.objects.select_related("content_type", "user"):
        model = f"{entry.content_type.app_label}.{entry.content_type.model}"
        wanted = (
            actions[entry.action_flag],
            model,
            entry.object_id,
            entry.user.username,
        )
        assert wanted in audited, f"admin write not in the audit log: {wanted}"


@pytest.fixture
def staff(django_user_model, settings):
    """Create a staff user (not a superuser) holding one role's group."""
    from django.contrib.auth.models import Group

    from payments.roles import roles_setup

    from .helpers import FAST_HASHERS, PASSWORD

    settings.PASSWORD_HASHERS = FAST_HASHERS
    roles_setup()

    def create(role: str):
        user = django_user_model.objects.create_user(
            role.lower(), f"{role.lower()}@example.com", PASSWORD, is_staff=True
        )
        user.groups.add(Group.objects.get(name=role))
        return user

    return create


@pytest.fixture
def completed(plan, sandbox, live_server):
    """A sandbox payment the payer paid (a signed notification applied)."""
    from payments import services
    from payments.models import Payment

    from .helpers import sandbox_payment

    payment = sandbox_payment(plan, live_server, "paid@example.com")
    body, headers = sandbox.choose(payment.gateway_session_id, "paid")
    services.webhook_ingest(
        gateway_code="sandbox", body=body, headers=headers, remote_addr=None
    )
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    return payment
