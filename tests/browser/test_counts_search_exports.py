"""Issue 21 in a browser at 1440x900: true counts, forgiving search, a live export page.

- a filter of 245 payments says 245, and "Select all" says 245;
- a list over ADMIN_EXACT_COUNT_LIMIT says "more than" it (the limit is set
  low here rather than creating 10,001 payments);
- Support finds a payment by its reference typed in upper case, by an
  e-mail domain, and through the Ctrl-K command palette;
- an export job's page follows the job without a reload, then stops asking.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from payments import tasks
from payments.models import ExportStatus
from payments.services import exports
from payments.states import PaymentStatus
from tests.factories import PaymentFactory, move_to

from .helpers import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORT = {"width": 1440, "height": 900}
LIST = "/admin/payments/payment/"


@pytest.fixture(autouse=True)
def _viewport(page: Page):
    page.set_viewport_size(VIEWPORT)


@pytest.fixture
def many(db):
    """245 FAILED payments and 10 PENDING ones."""
    failed = PaymentFactory.create_batch(245, email="f@failed.example")
    move_to(PaymentStatus.FAILED, failed)
    PaymentFactory.create_batch(10, email="p@pending.example")
    return failed


def count_of(page: Page):
    """The list's footer: its pages and its count."""
    return page.locator("[data-result-count]")


def select_all_rows(page: Page) -> None:
    page.locator("#action-toggle").check()


def test_a_filter_of_245_payments_says_245(page: Page, staff, many):
    staff("Finance")
    login(page, "finance")
    page.goto(f"{LIST}?status__exact=FAILED")
    expect(page.locator("#result_list tbody tr")).to_have_count(50)
    expect(count_of(page)).to_have_attribute("data-result-count", "245")
    expect(count_of(page)).to_contain_text("245 payments")
    content = page.content()
    assert "9999999999" not in content
    # 245 rows are more than list_max_show_all (200): no "Show all".
    expect(page.get_by_role("link", name="Show all")).to_have_count(0)
    # Page numbers up to the true last page, 5.
    expect(page.get_by_role("link", name="5", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="6", exact=True)).to_have_count(0)

    select_all_rows(page)
    select_all = page.get_by_role("link", name="Select all 245 payments")
    expect(select_all).to_be_visible()


def test_a_list_over_the_limit_says_more_than_the_limit(
    page: Page, staff, many, settings
):
    settings.ADMIN_EXACT_COUNT_LIMIT = 100
    staff("Finance")
    login(page, "finance")
    page.goto(LIST)
    expect(count_of(page)).to_have_attribute("data-result-count", "more")
    expect(count_of(page)).to_contain_text("more than 100 payments")
    content = page.content()
    assert "9999999999" not in content
    expect(page.get_by_role("link", name="Show all")).to_have_count(0)
    expect(page.get_by_role("link", name="Next")).to_be_visible()

    select_all_rows(page)
    expect(
        page.get_by_role("link", name="Select all more than 100 payments")
    ).to_be_visible()

    # The export form states the same, without a made-up figure.
    page.goto(f"{LIST}export/")
    expect(page.locator("[data-export-row-count]")).to_contain_text(
        "This export will write more than 100 payments"
    )


def test_a_small_filter_offers_show_all_and_shows_every_row(page: Page, staff, db):
    PaymentFactory.create_batch(60, email="s@small.example")
    staff("Finance")
    login(page, "finance")
    page.goto(f"{LIST}?q=%40small.example")
    expect(count_of(page)).to_have_attribute("data-result-count", "60")
    expect(count_of(page)).to_contain_text("60 payments")
    expect(page.locator("#result_list tbody tr")).to_have_count(50)
    page.get_by_role("link", name="Show all").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(60)
    page.goto(f"{LIST}export/?q=%40small.example")
    expect(page.locator("[data-export-row-count]")).to_contain_text(
        "This export will write 60 payments."
    )


def test_support_finds_a_payment_by_upper_case_reference_and_by_domain(
    page: Page, staff, db
):
    wanted = PaymentFactory(email="jo@support-case.example")
    PaymentFactory(email="kim@support-case.example")
    PaymentFactory(email="lee@elsewhere.example")
    staff("Support")
    login(page, "support")

    page.goto(LIST)
    search = page.locator("input[name=q]")
    search.fill(wanted.ref_id.upper())
    search.press("Enter")
    page.wait_for_url(re.compile(rf"/admin/payments/payment/{wanted.pk}/change/$"))
    expect(page.get_by_text(wanted.ref_id, exact=True).first).to_be_visible()

    page.goto(LIST)
    search = page.locator("input[name=q]")
    search.fill("@support-case.example")
    search.press("Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="jo@support-case.example")).to_have_count(1)
    expect(rows.filter(has_text="kim@support-case.example")).to_have_count(1)
    expect(count_of(page)).to_have_attribute("data-result-count", "2")
    expect(count_of(page)).to_contain_text("2 payments")

    # Ctrl-K: unfold's command palette finds the payment by the same rules.
    page.goto("/admin/")
    page.wait_for_load_state()
    page.keyboard.press("Control+k")
    command = page.locator("#search-input-command")
    expect(command).to_be_visible()
    command.press_sequentially(wanted.ref_id.upper())  # htmx asks on keyup
    results = page.locator("#command-results-list")
    result = results.get_by_role("link", name=re.compile(re.escape(wanted.ref_id)))
    expect(result).to_be_visible()
    expect(results).not_to_contain_text("lee@elsewhere.example")
    result.click()
    page.wait_for_url(re.compile(rf"/admin/payments/payment/{wanted.pk}/change/$"))


def test_the_export_page_follows_the_job_then_stops_polling(
    page: Page, staff, db, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path)
    PaymentFactory.create_batch(7)
    finance = staff("Finance")
    job = exports.export_job_create(user=finance, filters="", fmt="csv")
    login(page, "finance")
    asked: list[float] = []
    page.on(
        "request",
        lambda request: (
            asked.append(time.monotonic())
            if f"/exportjob/{job.pk}/state/" in request.url
            else None
        ),
    )
    page.goto(f"/admin/payments/exportjob/{job.pk}/change/")

    def cell(name: str):
        return page.locator(f'[data-export-job="{job.pk}"][data-export-cell="{name}"]')

    expect(cell("status")).to_have_text("Queued")
    expect(cell("rows")).to_have_text("-")
    expect(cell("file")).to_have_text("-")
    expect(cell("finished")).to_have_text("-")
    expect(cell("progress")).to_contain_text("0 %")

    tasks.run_export(job.pk)  # what the cluster runs, here in the test's thread
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE

    # No reload: the same document, its cells brought up to date by polling.
    expect(cell("status")).to_have_text("Done")
    expect(cell("rows")).to_have_text("7")
    expect(cell("progress")).to_contain_text("100 %")
    download = cell("file").get_by_role("link", name="Download")
    expect(download).to_have_attribute(
        "href", f"/admin/payments/exportjob/{job.pk}/download/"
    )
    expect(cell("finished")).not_to_have_text("-")
    expect(cell("status")).to_have_attribute("data-export-running", "0")
    assert asked, "the page never asked for the job's state"

    # Polling has stopped: no request for the state in three intervals.
    stopped_at = len(asked)
    page.wait_for_timeout(6500)
    assert len(asked) == stopped_at
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
