"""The settlement summary page: per day or per month, paginated, totals first."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Count, Sum
from django.urls import reverse
from django.utils import timezone

from payments import selectors
from payments.admin.exports import SETTLEMENT_PAGE_ROWS
from payments.models import Payment, Plan
from payments.states import PaymentStatus as S
from tests.factories import move_to

from .test_exports import as_user, body, csv_rows, staff

URL = "admin:payments_settlement"
# A fixed local year, so months and day counts do not depend on today.
YEAR = 2025
GATEWAYS = ("sandbox", "mpgs", "coinpayments")


def local_noon(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time())) + timedelta(
        hours=12
    )


@pytest.fixture
def year(db):
    """Payments paid on 150 different days of YEAR, in USD and SAR, three gateways.

    Every third one is refunded in part, so refunded and net differ from paid.
    """
    plans = [
        Plan.objects.create(code="us", name="US 5 GB", price="12.50", currency="USD"),
        Plan.objects.create(code="sa", name="KSA 5 GB", price="45.00", currency="SAR"),
    ]
    made = Payment.objects.bulk_create(
        Payment(
            plan=plans[i % 2],
            email=f"payer{i}@example.com",
            amount=plans[i % 2].price,
            currency=plans[i % 2].currency,
            payment_gateway=GATEWAYS[i % 3],
        )
        for i in range(150)
    )
    move_to(S.COMPLETED, [p for i, p in enumerate(made) if i % 3])
    move_to(S.PARTIALLY_REFUNDED, [p for i, p in enumerate(made) if not i % 3])
    # The providers' reports stamped "now": spread the payments over the year.
    first = date(YEAR, 1, 1)
    for i, payment in enumerate(made):
        paid = local_noon(first + timedelta(days=(i * 365) // 150))
        Payment.objects.filter(pk=payment.pk).update(date_created=paid, date_paid=paid)
    return made


def raw_sums(start: date, end: date) -> dict[str, tuple[int, Decimal, Decimal]]:
    """What the database holds per currency for payments paid start..end."""
    low, high = selectors.paid_between(start, end)
    rows = (
        Payment.objects.filter(date_paid__gte=low, date_paid__lt=high)
        .values("currency")
        .annotate(n=Count("id"), paid=Sum("amount_paid"), back=Sum("amount_refunded"))
    )
    return {row["currency"]: (row["n"], row["paid"], row["back"]) for row in rows}


def finance_client(client):
    return as_user(client, staff("fiona", "Finance"))


def test_the_grouping_switches_to_months_over_62_days():
    start = date(YEAR, 1, 1)
    assert selectors.settlement_grouping(start, start + timedelta(days=61)) == "day"
    assert selectors.settlement_grouping(start, start + timedelta(days=62)) == "month"


def test_per_month_and_per_day_rows_add_up_to_the_raw_sums(year):
    start, end = date(YEAR, 1, 1), date(YEAR, 12, 31)
    daily = selectors.settlement_summary(start=start, end=end)
    monthly = selectors.settlement_summary(start=start, end=end, by="month")

    assert {row.day.day for row in monthly} == {1}
    assert {row.period for row in monthly} == {"month"}
    assert len(monthly) < len(daily)
    expected = raw_sums(start, end)
    for rows in (daily, monthly):
        totals = {
            t.currency: (t.count, t.paid, t.refunded)
            for t in selectors.settlement_totals(rows)
        }
        assert totals == expected
    # Each month's row is the sum of that month's days.
    march = [r for r in daily if r.day.month == 3 and r.currency == "USD"]
    march_row = [
        r for r in monthly if r.day == date(YEAR, 3, 1) and r.currency == "USD"
    ]
    assert sum(r.paid for r in march) == sum(r.paid for r in march_row) > 0


def test_a_year_is_shown_per_month_paginated_with_totals_first(client, year):
    client = finance_client(client)
    query = {"start": f"{YEAR}-01-01", "end": f"{YEAR}-12-31"}
    page = client.get(reverse(URL), query)
    content = page.content.decode()

    assert page.status_code == 200
    assert page.context["by_month"] is True
    assert page.context["table"]["headers"][0] == "Month"
    rows = page.context["table"]["rows"]
    assert 0 < len(rows) <= SETTLEMENT_PAGE_ROWS
    # 12 months x 3 gateways x 2 currencies, less the empty combinations.
    everything = page.context["page"].paginator.count
    assert everything > SETTLEMENT_PAGE_ROWS
    assert 'id="settlement-pages"' in content
    # Totals come before the table and cover the whole year, not this page.
    assert content.index('id="settlement-totals"') < content.index(
        'id="settlement-grouping"'
    )
    shown = {t["currency"]: t["paid"] for t in page.context["totals"]}
    expected = raw_sums(date(YEAR, 1, 1), date(YEAR, 12, 31))
    assert shown == {
        currency: selectors.money_text(sums[1], currency)
        for currency, sums in expected.items()
    }
    second = client.get(reverse(URL), {**query, "page": 2})
    assert second.context["page"].number == 2
    assert second.context["table"]["rows"] != rows


def test_a_month_opens_per_day(client, year):
    client = finance_client(client)
    page = client.get(reverse(URL), {"start": f"{YEAR}-01-15", "end": f"{YEAR}-12-31"})
    first_cell = str(page.context["table"]["rows"][0][0])
    # January is clipped to the chosen range: it opens from the 15th.
    link = re.search(r'href="\?([^"]+)"', first_cell).group(1).replace("&amp;", "&")
    assert link == f"start={YEAR}-01-15&end={YEAR}-01-31"

    days = client.get(f"{reverse(URL)}?{link}")
    assert days.context["by_month"] is False
    assert days.context["table"]["headers"][0] == "Day"
    shown_days = {row[0] for row in days.context["table"]["rows"]}
    assert shown_days and all(d.startswith(f"{YEAR}-01-") for d in shown_days)
    assert {t["currency"]: t["count"] for t in days.context["totals"]} == {
        currency: f"{n:,}"
        for currency, (n, _paid, _back) in raw_sums(
            date(YEAR, 1, 15), date(YEAR, 1, 31)
        ).items()
    }


def test_the_export_of_a_year_keeps_one_row_per_day(client, year):
    client = finance_client(client)
    query = {"start": f"{YEAR}-01-01", "end": f"{YEAR}-12-31"}
    lines = csv_rows(body(client.get(reverse(URL), {**query, "format": "csv"})))
    days = [row for row in lines if row["Day"] != "Total"]

    assert len(days) == len(
        selectors.settlement_summary(start=date(YEAR, 1, 1), end=date(YEAR, 12, 31))
    )
    assert len(days) > page_rows_of_a_year(client, query)
    assert all(re.fullmatch(rf"{YEAR}-\d\d-\d\d", row["Day"]) for row in days)
    assert (
        sum(Decimal(row["Paid"]) for row in days if row["Currency"] == "SAR")
        == (raw_sums(date(YEAR, 1, 1), date(YEAR, 12, 31))["SAR"][1])
    )


def page_rows_of_a_year(client, query) -> int:
    return client.get(reverse(URL), query).context["page"].paginator.count


def test_a_short_range_stays_per_day_on_one_page(client, year):
    client = finance_client(client)
    page = client.get(reverse(URL), {"start": f"{YEAR}-02-01", "end": f"{YEAR}-02-28"})
    assert page.context["by_month"] is False
    assert 'id="settlement-pages"' not in page.content.decode()
    assert len(page.context["table"]["rows"]) == page.context["page"].paginator.count


def test_an_unknown_grouping_is_refused():
    with pytest.raises(ValueError, match="unknown grouping 'week'"):
        selectors.settlement_summary(
            start=date(YEAR, 1, 1), end=date(YEAR, 1, 2), by="week"
        )
