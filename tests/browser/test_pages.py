"""The back office as its users see it at 1440×900: tables that fit, the payment
page's summary, status words, charts, settlement, the icon (issue 21)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone
from playwright.sync_api import Page, expect

from payments import selectors, services, tasks
from payments.models import Payment, Plan
from payments.states import PaymentStatus as S
from tests.factories import move_to, payment_in

from .helpers import FAST_HASHERS, PASSWORD, login, open_actions

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORT = {"width": 1440, "height": 900}
CURRENCIES = {"USD": "12.00", "SAR": "45.00", "AED": "44.00", "EUR": "11.00"}
LONG_EMAIL = "a.rather.long.customer.address.for.testing@subdomain.example-company.test"

# For every visible table: does a cell's content run over more than one line
# (its text's boxes span more than 1.6 line-heights), and does the table's
# container scroll sideways?
MEASURE = """() => [...document.querySelectorAll('table')]
  .filter(t => t.offsetParent !== null)
  .map(t => {
    const box = t.parentElement;
    const tall = [];
    for (const cell of t.querySelectorAll('td, th')) {
      const line = parseFloat(getComputedStyle(cell).lineHeight) || 20;
      const range = document.createRange();
      range.selectNodeContents(cell);
      const rects = [...range.getClientRects()].filter(r => r.width > 0 && r.height > 0);
      if (!rects.length) continue;
      const span = Math.max(...rects.map(r => r.bottom)) - Math.min(...rects.map(r => r.top));
      if (span > 1.6 * line) tall.push(cell.innerText.trim().slice(0, 60));
    }
    const first = t.querySelector('tr:has(td)');
    const widths = first ? [...first.children].map(
      c => Math.round(c.getBoundingClientRect().width) + ' ' + c.innerText.trim().slice(0, 24)
    ) : [];
    return {scroll: box.scrollWidth, width: box.clientWidth, tall, widths,
            cells: t.querySelectorAll('td').length};
  })"""


@pytest.fixture
def boss_page(browser, live_server, django_user_model, settings) -> Page:
    """A superuser's browser at 1440×900."""
    from .conftest import TIMEOUT_MS

    settings.PASSWORD_HASHERS = FAST_HASHERS
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield login(page, "boss")
    context.close()


@pytest.fixture
def busy(completed, django_user_model):
    """Payments in four currencies and every status, long e-mails, a late payment,
    refunds, a webhook delivery (the paid sandbox payment's), a run and an export."""
    plans = [
        Plan.objects.create(
            code=f"p-{code.lower()}", name=f"{code} 5 GB", price=price, currency=code
        )
        for code, price in CURRENCIES.items()
    ]
    for i, status in enumerate(
        (S.PENDING, S.COMPLETED, S.PARTIALLY_REFUNDED, S.REFUNDED, S.FAILED) * 2
    ):
        plan = plans[i % len(plans)]
        payment_in(
            status,
            plan=plan,
            email=LONG_EMAIL if i % 2 else f"short{i}@example.com",
            payment_gateway="sandbox",
        )
    # A reference that starts in lower case: the breadcrumb must keep it so.
    late = payment_in(
        S.EXPIRED, plan=plans[0], email=LONG_EMAIL, ref_id="late-paid-ref-0001abcd"
    )
    move_to(S.COMPLETED, [late])  # paid after it expired: flagged for review
    late.refresh_from_db()
    assert late.needs_review and late.status == S.COMPLETED
    services.reconcile_cycle(trigger="admin:someone-with-a-long-name", limit=0)
    boss = django_user_model.objects.get(username="boss")
    job = tasks.enqueue_export(user=boss, filters="", fmt="csv")
    tasks.run_export(job.pk)
    return {"late": late, "completed": completed}


LISTS = (
    "/admin/payments/payment/",
    "/admin/payments/refund/",
    "/admin/payments/paymentevent/",
    "/admin/payments/webhookdelivery/",
    "/admin/payments/reconciliationrun/",
    "/admin/payments/exportjob/",
    "/admin/",
)


def test_no_list_or_dashboard_cell_wraps_or_scrolls_sideways(boss_page: Page, busy):
    page = boss_page
    for url in LISTS:
        page.goto(url)
        tables = page.evaluate(MEASURE)
        assert tables, f"{url}: no table shown"
        for table in tables:
            assert table["cells"] > 0, url
            assert table["tall"] == [], f"{url}: cells over one line"
            assert table["scroll"] <= table["width"], (
                f"{url}: scrolls sideways: {table['widths']}"
            )


def test_a_long_email_is_cut_with_the_whole_address_on_hover(boss_page: Page, busy):
    page = boss_page
    page.goto("/admin/payments/payment/")
    cell = page.locator("td.field-email_display span[title]").filter(
        has_text="a.rather.long"
    )
    first = cell.first
    expect(first).to_have_attribute("title", LONG_EMAIL)
    clipped = first.evaluate("e => e.scrollWidth > e.clientWidth")
    assert clipped is True


def test_dates_are_compact_with_the_full_time_on_hover(boss_page: Page, busy):
    page = boss_page
    page.goto("/admin/payments/payment/")
    created = page.locator("td.field-created span[title]").first
    now = timezone.localtime()
    expect(created).to_have_text(re.compile(rf"^{now.day} {now:%b} \d\d:\d\d$"))
    expect(created).to_have_attribute(
        "title", re.compile(rf"^{now:%Y-%m-%d} \d\d:\d\d:\d\d \S+$")
    )


def test_the_payment_page_opens_with_reference_status_and_review(boss_page: Page, busy):
    page = boss_page
    late = busy["late"]
    page.goto(f"/admin/payments/payment/{late.pk}/change/")

    reference = page.locator("#payment-reference")
    expect(reference).to_have_text(late.ref_id)
    expect(page.locator("#payment-status")).to_have_text("Completed")
    expect(page.locator("#payment-review")).to_have_text("Needs review")
    expect(page.locator("#review-reason")).to_contain_text("late payment")
    for part in ("#payment-reference", "#payment-status", "#payment-review"):
        box = page.locator(part).bounding_box()
        assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"]
    # The timeline sits beside the summary, not below the fields.
    summary = page.locator("#payment-summary section").first.bounding_box()
    timeline = page.locator("#timeline").bounding_box()
    assert timeline["x"] > summary["x"] + summary["width"] - 1
    assert timeline["y"] < summary["y"] + summary["height"]
    expect(page.locator("#timeline li.timeline-event")).to_contain_text(
        ["Pending → Expired", "Expired → Completed"]
    )
    # The breadcrumb shows the reference whole and as it is (case kept).
    crumb = page.locator("h1 a", has_text=late.ref_id)
    expect(crumb).to_have_text(late.ref_id)
    assert crumb.evaluate("e => e.scrollWidth <= e.clientWidth") is True
    # The customer's e-mail opens the customer view of that e-mail.
    page.locator("#payment-email").click()
    page.wait_for_url(re.compile(r"/admin/payments/payment/customer/"))
    assert LONG_EMAIL in page.url.replace("%40", "@")


def test_the_actions_are_one_menu_and_the_copy_button_copies(boss_page: Page, busy):
    page = boss_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    payment = busy["completed"]
    page.goto(f"/admin/payments/payment/{payment.pk}/change/")
    # No action button squeezes the header: one menu holds them.
    expect(page.locator("a[hx-get]:visible")).to_have_count(0)
    open_actions(page)
    expect(page.locator("nav a[hx-get]:visible")).to_have_count(4)

    page.locator("#copy-reference").click()
    expect(page.locator("#copy-reference")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == payment.ref_id


def test_status_words_are_the_same_on_the_list_and_the_dashboard(boss_page: Page, busy):
    page = boss_page
    late = busy["late"]
    page.goto("/admin/")
    row = page.locator("#dashboard table tr", has_text=late.ref_id)
    on_dashboard = row.locator("td").nth(3).locator(".payments-label").inner_text()

    page.goto("/admin/payments/payment/?needs_review__exact=1")
    listed = page.locator("tr", has_text=late.ref_id).locator("td.field-status_label")
    on_list = listed.locator(".payments-label").inner_text()
    # The list adds a flag for a payment that needs review.
    expect(listed).to_contain_text("flag")

    assert on_dashboard == on_list == "Completed"


def test_each_currency_has_its_own_chart_with_named_axes(boss_page: Page, busy):
    page = boss_page
    page.goto("/admin/")
    charts = page.locator("#volume-charts canvas")
    expect(charts.first).to_be_visible()
    found = charts.evaluate_all(
        """canvases => canvases.map(c => {
            const chart = Chart.getChart(c);
            return {
              datasets: chart.data.datasets.map(d => d.label),
              y: chart.options.scales.y.title.display && chart.options.scales.y.title.text,
              x: chart.options.scales.x.title.display && chart.options.scales.x.title.text,
            };
        })"""
    )
    paid = set(
        Payment.objects.exclude(date_paid=None).values_list("currency", flat=True)
    )
    assert {chart["datasets"][0] for chart in found} == paid
    for chart in found:
        (currency,) = chart["datasets"]  # one currency per chart and axis
        assert chart["y"] == f"Paid, {currency}"
        assert chart["x"] == "Day (local)"


def test_a_years_settlement_fits_its_page_and_its_totals_match(boss_page: Page):
    plans = [
        Plan.objects.create(code="us", name="US", price="12.50", currency="USD"),
        Plan.objects.create(code="sa", name="KSA", price="45.00", currency="SAR"),
    ]
    made = Payment.objects.bulk_create(
        Payment(
            plan=plans[i % 2],
            email=f"payer{i}@example.com",
            amount=plans[i % 2].price,
            currency=plans[i % 2].currency,
            payment_gateway=("sandbox", "mpgs", "coinpayments")[i % 3],
        )
        for i in range(300)
    )
    move_to(S.COMPLETED, made)
    end = timezone.localdate()
    start = end - timedelta(days=364)
    for i, payment in enumerate(made):
        day = start + timedelta(days=i * 365 // 300)
        paid = timezone.make_aware(datetime.combine(day, datetime.min.time()))
        Payment.objects.filter(pk=payment.pk).update(
            date_paid=paid + timedelta(hours=9)
        )

    page = boss_page
    page.goto(f"/admin/payments/payment/settlement/?start={start}&end={end}")
    rows = page.locator("#settlement table:not(#settlement-totals) tbody tr")
    expect(rows.first).to_be_visible()
    assert 0 < rows.count() <= 40
    expect(page.locator("#settlement-pages")).to_contain_text("Page 1 of")
    for table in page.evaluate(MEASURE):
        assert table["tall"] == [] and table["scroll"] <= table["width"]
    for currency in ("USD", "SAR"):
        shown = page.locator(
            f'#settlement-totals tr[data-currency="{currency}"] [data-figure="paid"]'
        ).inner_text()
        expected = Payment.objects.filter(currency=currency).aggregate(
            s=Sum("amount_paid")
        )["s"]
        assert shown == selectors.money_text(expected, currency)
        assert Decimal(shown.split()[0].replace(",", "")) == expected

    # A month opens per day.
    page.locator("#settlement table a").first.click()
    expect(page.locator("#settlement-grouping")).to_have_text("Per day.")
    first_day = page.locator("#settlement table:not(#settlement-totals) tbody tr td")
    expect(first_day.first).to_have_text(re.compile(r"^\s*\d{4}-\d\d-\d\d\s*$"))
    assert date.fromisoformat(first_day.first.inner_text().strip()) >= start


def test_admin_and_checkout_name_the_icon_and_favicon_ico_finds_it(
    boss_page: Page, plan, sandbox
):
    page = boss_page
    for url in ("/admin/", "/checkout/"):
        page.goto(url)
        icon = page.locator('link[rel="icon"]')
        expect(icon).to_have_count(1)
        href = icon.get_attribute("href")
        answer = page.request.get(href)
        assert answer.status == 200 and answer.headers["content-type"].startswith(
            "image/svg+xml"
        )
    answer = page.request.get("/favicon.ico")
    assert answer.status == 200 and answer.url.endswith("/payments/favicon.svg")
