"""One query for the payment list: the admin's rows, exports and the selector agree.

`selectors.payment_list(filters=payment_filters_from_query(params))` is the
admin changelist's rows and a background export's rows for the same query
parameters; a plain-Python reading of the filters over the same payments
(`by_hand`) checks that the selector selects what the filters say.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.db.models import QuerySet
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from payments import selectors, tasks
from payments.admin.payment import PaymentChangeList
from payments.models import ExportJob, ExportStatus, Payment, Plan
from payments.selectors import PaymentFilterError, PaymentFilters
from payments.selectors.payments import CURRENCY_PARAMETER, SEARCH_PARAMETER
from payments.states import PaymentStatus as S
from tests.factories import move_to
from tests.payments.admin.test_exports import csv_rows, ids_of, staff

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:payments_payment_changelist"
EXPORT = "admin:payments_payment_export"
# Three hours ahead of UTC all year: a local day is not a UTC day.
ZONE = "Asia/Riyadh"
FIRST_DAY = date(2025, 3, 8)
COUNT = 60
PAGE = 50


def local(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(
        day.year, day.month, day.day, hour, minute, second, tzinfo=ZoneInfo(ZONE)
    )


@pytest.fixture
def spread(settings, db):
    """60 payments, two hours apart from 8 March 2025 00:00 local time.

    Every twelfth one is created exactly at a local midnight and the one
    before it at 23:59:59; statuses, gateways, currencies, review flags and
    e-mails vary independently of each other.
    """
    settings.TIME_ZONE = ZONE
    plans = [
        Plan.objects.create(code="us", name="USA 5 GB", price="20.00", currency="USD"),
        Plan.objects.create(code="eu", name="EU 5 GB", price="24.00", currency="EUR"),
        Plan.objects.create(code="jp", name="Japan 3 GB", price="1500", currency="JPY"),
    ]
    statuses = (S.PENDING, S.COMPLETED, S.FAILED, S.EXPIRED, S.REFUNDED)
    gateways = ("sandbox", "mpgs", "coinpayments")
    names = ("alice", "bob", "carol", "bob")
    created = []
    rows = []
    for i in range(COUNT):
        plan = plans[(i // 3) % 3]
        at = local(FIRST_DAY) + timedelta(hours=2 * i)
        if i % 12 == 11:
            at += timedelta(hours=1, minutes=59, seconds=59)  # 23:59:59 local
        created.append(at)
        rows.append(
            Payment(
                plan=plan,
                email=f"{names[i % 4]}{i}@example.com",
                amount=plan.price,
                currency=plan.currency,
                payment_gateway=gateways[i % 3],
                gateway_transaction_id=f"TX{i:04d}",
                crypto_address=f"addr{i:04d}" if i % 3 == 2 else "",
                needs_review=i % 7 == 0,
            )
        )
    Payment.objects.bulk_create(rows)
    ids = list(Payment.objects.order_by("id").values_list("pk", flat=True))
    # Statuses through the services, as providers' reports would bring them.
    for status in statuses[1:]:
        chosen = [pk for i, pk in enumerate(ids) if statuses[i % 5] == status]
        move_to(status, Payment.objects.filter(pk__in=chosen))
    # date_created is auto_now_add, date_paid the moment of the report: set
    # both afterwards, to the days the filters are tested on.
    for i, (at, pk) in enumerate(zip(created, ids, strict=True)):
        paid = statuses[i % 5] in (S.COMPLETED, S.REFUNDED)
        Payment.objects.filter(pk=pk).update(
            date_created=at,
            date_paid=at + timedelta(minutes=30) if paid else None,
            needs_review=i % 7 == 0,
        )
    return list(Payment.objects.order_by("id"))


@pytest.fixture
def finance(db):
    return staff("fiona", "Finance")


def by_hand(payments: list[Payment], filters: PaymentFilters) -> list[int]:
    """What the filters select, read in Python over the payments: the oracle."""

    def day(moment: datetime | None) -> date | None:
        return timezone.localtime(moment).date() if moment else None

    def within(moment: datetime | None, first: date | None, last: date | None):
        if first is None and last is None:
            return True
        shown = day(moment)
        return (
            shown is not None
            and (first is None or shown >= first)
            and (last is None or shown <= last)
        )

    term = filters.search
    kept = [
        p
        for p in payments
        if (not filters.statuses or p.status in filters.statuses)
        and (not filters.gateways or p.payment_gateway in filters.gateways)
        and (not filters.currencies or p.currency in filters.currencies)
        and (filters.needs_review is None or p.needs_review == filters.needs_review)
        and within(p.date_created, filters.created_from, filters.created_to)
        and within(p.date_paid, filters.paid_from, filters.paid_to)
        and (
            not term
            or term in (p.ref_id, p.gateway_transaction_id, p.crypto_address)
            or p.email.startswith(term.lower())
        )
    ]
    kept.sort(key=lambda p: (p.date_created, p.pk), reverse=True)
    return [p.pk for p in kept]


def selected(query: str) -> list[int]:
    filters = selectors.payment_filters_from_query(query)
    return list(selectors.payment_list(filters=filters).values_list("pk", flat=True))


def first_page(client, query: str) -> list[int]:
    """The payments the admin shows for `query`: its first page, or the one it opens."""
    response = client.get(f"{reverse(CHANGELIST)}?{query}")
    if response.status_code == 302:
        match = re.fullmatch(r"/admin/payments/payment/(\d+)/change/", response.url)
        assert match, response.url
        return [int(match[1])]
    assert response.status_code == 200
    return [payment.pk for payment in response.context["cl"].result_list]


# Admin URL parameters, dates as the en-GB date widget types them.
QUERIES = {
    "nothing": "",
    "status": "status__exact=COMPLETED",
    "two statuses": "status__exact=COMPLETED&status__exact=REFUNDED",
    "gateway": "payment_gateway=coinpayments",
    "currency": "currency__exact=JPY",
    "flagged": "needs_review__exact=1",
    "not flagged": "needs_review__exact=0",
    "created from": "date_created_from=10/03/2025",
    "created to": "date_created_to=09/03/2025",
    "one local day": "date_created_from=10/03/2025&date_created_to=10/03/2025",
    "paid, ISO days": "date_paid_from=2025-03-10&date_paid_to=2025-03-11",
    "combined": "status__exact=PENDING&payment_gateway=mpgs&currency__exact=USD",
    "combined with search": (
        "payment_gateway=sandbox&needs_review__exact=0"
        "&date_created_from=09/03/2025&date_created_to=11/03/2025&q=bob"
    ),
    "reference": "q={ref}",
    "gateway id": "q=TX0007",
    "crypto address": "q=addr0005",
    "e-mail prefix": "q=ALICE1",
    "e-mail pasted with spaces": "q=+bob+2+&status__exact=FAILED",
    "the filter form as submitted": (
        "status__exact=&payment_gateway=mpgs&needs_review__exact="
        "&date_created_from=&date_created_to=&date_paid_from=&date_paid_to=&q="
    ),
    "not filters": (
        "status__exact=FAILED&_changelist_filters=status__exact%3DPENDING&p=1&e=1"
    ),
    "no such status here": "status__exact=VOIDED",
    "nobody": "q=nobody",
    "the future": "date_created_from=01/01/2030",
}
EMPTY = {"no such status here", "nobody", "the future"}


def query_for(name: str, payments: list[Payment]) -> str:
    return QUERIES[name].format(ref=payments[23].ref_id)


@pytest.mark.parametrize("name", list(QUERIES))
def test_the_admin_lists_the_selectors_rows_and_the_filters_select_them(
    admin_client, spread, name
):
    query = query_for(name, spread)
    filters = selectors.payment_filters_from_query(query)
    expected = by_hand(spread, filters)
    assert (expected == []) == (name in EMPTY)

    assert selected(query) == expected
    assert first_page(admin_client, query) == expected[:PAGE]


def test_day_ranges_are_whole_local_days_both_ends_included(admin_client, spread):
    """10 March local: from 00:00:00 (a UTC 9 March) to 23:59:59, nothing beside."""
    query = QUERIES["one local day"]
    days = {timezone.localtime(p.date_created).date() for p in spread}
    assert days >= {date(2025, 3, 9), date(2025, 3, 10), date(2025, 3, 11)}
    on_the_day = [
        p
        for p in spread
        if local(date(2025, 3, 10)) <= p.date_created
        and p.date_created < local(date(2025, 3, 11))
    ]
    times = sorted(timezone.localtime(p.date_created).time() for p in on_the_day)
    assert (times[0].isoformat(), times[-1].isoformat()) == ("00:00:00", "23:59:59")
    # The first is 9 March in UTC: a UTC day would drop it.
    assert min(p.date_created for p in on_the_day).astimezone(ZoneInfo("UTC")).day == 9

    assert sorted(selected(query)) == sorted(p.pk for p in on_the_day)
    assert sorted(first_page(admin_client, query)) == sorted(p.pk for p in on_the_day)


def test_later_pages_are_the_selectors_rows_too(admin_client, spread):
    assert len(spread) > PAGE
    response = admin_client.get(reverse(CHANGELIST), {"p": "2"})
    page = [payment.pk for payment in response.context["cl"].result_list]
    assert page == selected("")[PAGE:]


@pytest.mark.parametrize(
    "name",
    [
        "nothing",
        "two statuses",
        "currency",
        "one local day",
        "combined with search",
        "e-mail prefix",
        "reference",
        "not filters",
        "nobody",
    ],
)
def test_a_background_export_writes_exactly_the_lists_rows(
    admin_client, spread, finance, settings, tmp_path, name
):
    settings.MEDIA_ROOT = str(tmp_path)
    query = query_for(name, spread)
    rows = selected(query)

    job = tasks.enqueue_export(user=finance, filters=query, fmt="csv")
    tasks.run_export(job.pk)

    job.refresh_from_db()
    assert (job.status, job.row_count) == (ExportStatus.DONE, len(rows))
    with job.file.open("rb") as handle:
        assert ids_of(csv_rows(handle.read())) == rows
    assert rows[:PAGE] == first_page(admin_client, query)


def test_the_admin_export_stores_the_filters_that_select_the_same_rows(
    client, spread, finance, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.EXPORT_SYNC_LIMIT = 1
    client.force_login(finance)
    query = QUERIES["combined with search"] + "&o=-4"

    response = client.post(
        f"{reverse(EXPORT)}?{query}", {"format": "0", "resource": "0"}
    )

    job = ExportJob.objects.get()
    assert response.status_code == 302
    assert QueryDict(job.filters) == QueryDict(
        "payment_gateway=sandbox&needs_review__exact=0"
        "&date_created_from=2025-03-09&date_created_to=2025-03-11&q=bob"
    )
    tasks.run_export(job.pk)
    job.refresh_from_db()
    with job.file.open("rb") as handle:
        assert ids_of(csv_rows(handle.read())) == selected(query) != []


# --- the admin takes its rows from the selector, and filters once -------------------------


def changelist_for(user, query: str) -> PaymentChangeList:
    from django.test import RequestFactory

    request = RequestFactory().get(f"{reverse(CHANGELIST)}?{query}")
    request.user = user
    return admin.site.get_model_admin(Payment).get_changelist_instance(request)


def test_the_lists_query_is_the_selectors_and_nothing_more(admin_user, spread):
    query = QUERIES["combined with search"] + "&status__exact=PENDING"
    changelist = changelist_for(admin_user, query)
    expected = selectors.payment_list(
        filters=selectors.payment_filters_from_query(query)
    ).select_related("plan")

    assert isinstance(changelist, PaymentChangeList)
    assert str(changelist.queryset.query) == str(expected.query)
    # The filter widgets still show what is applied.
    assert changelist.has_active_filters
    shown = {
        name: spec.used_parameters.get(name)
        for spec in changelist.filter_specs
        for name in spec.expected_parameters()
        if spec.used_parameters.get(name)
    }
    assert shown["date_created_from"] == "09/03/2025"
    assert shown["payment_gateway"] == "sandbox"


def test_a_clicked_column_sorts_the_same_rows(admin_client, spread):
    query = "currency__exact=USD&o=4"  # the amount column, ascending
    response = admin_client.get(f"{reverse(CHANGELIST)}?{query}")
    rows = list(response.context["cl"].result_list)
    assert sorted(p.pk for p in rows) == sorted(selected(query))
    amounts = [p.amount for p in rows]
    assert amounts == sorted(amounts)
    # Equal amounts keep the list's own order: newest first.
    assert [p.pk for p in rows] == selected(query)


def test_a_search_that_finds_one_payment_still_opens_it(admin_client, spread):
    payment = spread[23]
    response = admin_client.get(reverse(CHANGELIST), {"q": f" {payment.ref_id} "})
    assert response.status_code == 302
    assert response.url == reverse("admin:payments_payment_change", args=[payment.pk])


# --- invalid parameters: a message, never a 500 --------------------------------------------


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_list_drops_an_invalid_filter_and_says_which(admin_client, spread):
    url = reverse(CHANGELIST)
    response = admin_client.get(f"{url}?status__exact=NOPE&payment_gateway=mpgs")
    assert response.status_code == 302
    assert response.url == f"{url}?payment_gateway=mpgs"

    page = admin_client.get(response.url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "status__exact: &#x27;NOPE&#x27; is not a payment status" in text
    assert [p.pk for p in page.context["cl"].result_list] == selected(
        "payment_gateway=mpgs"
    )


def test_several_invalid_filters_are_each_named(admin_client, spread):
    url = reverse(CHANGELIST)
    response = admin_client.get(
        f"{url}?date_created_from=31/31/2025&currency__exact=XYZ&q=bob", follow=True
    )
    assert response.status_code == 200
    assert len(response.redirect_chain) == 2
    assert response.redirect_chain[-1][0] == f"{url}?q=bob"
    text = response.content.decode()
    assert "date_created_from: &#x27;31/31/2025&#x27; is not a date" in text
    assert "currency__exact: &#x27;XYZ&#x27; is not an ISO 4217 currency" in text


def test_an_action_posted_with_an_invalid_filter_is_refused_with_a_message(
    admin_client, spread
):
    url = f"{reverse(CHANGELIST)}?needs_review__exact=maybe"
    response = admin_client.post(
        url, {"action": "export_admin_action", "_selected_action": [spread[0].pk]}
    )
    assert response.status_code == 302
    assert response.url == reverse(CHANGELIST)
    assert any("needs_review__exact" in text for text in messages_of(response))


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_export_form_refuses_invalid_filters_with_a_message(
    client, spread, finance, method
):
    client.force_login(finance)
    url = f"{reverse(EXPORT)}?date_paid_to=2025-02-30&status__exact=COMPLETED"
    if method == "get":
        response = client.get(url)  # the export form
    else:
        response = client.post(url, {"format": "0", "resource": "0"})
    assert response.status_code == 302
    assert response.url == reverse(CHANGELIST)
    assert messages_of(response) == [
        "These filters are not valid, nothing was exported: "
        "date_paid_to: '2025-02-30' is not a date"
    ]
    assert not ExportJob.objects.exists()


def test_a_job_with_invalid_stored_filters_fails_with_the_reason(
    spread, finance, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path)
    job = tasks.enqueue_export(
        user=finance, filters="payment_gateway=paypal", fmt="csv"
    )
    tasks.run_export(job.pk)
    job.refresh_from_db()
    assert job.status == ExportStatus.FAILED
    assert "payment_gateway: 'paypal' is not a gateway" in job.error


# --- reading the parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "parameter", "problem"),
    [
        ("status__exact=DONE", "status__exact", "'DONE' is not a payment status"),
        ("payment_gateway=paypal", "payment_gateway", "'paypal' is not a gateway"),
        ("currency__exact=EURO", "currency__exact", "not an ISO 4217 currency"),
        ("needs_review__exact=2", "needs_review__exact", "'2' is not 1 (yes) or 0"),
        ("date_created_from=yesterday", "date_created_from", "is not a date"),
        ("date_paid_to=2025-13-01", "date_paid_to", "is not a date"),
        (
            "date_created_from=2025-03-10&date_created_to=2025-03-09",
            "date_created_to",
            "2025-03-09 is before the start, 2025-03-10",
        ),
    ],
)
def test_an_invalid_value_is_an_error_naming_its_parameter(query, parameter, problem):
    with pytest.raises(PaymentFilterError, match=re.escape(problem)) as raised:
        selectors.payment_filters_from_query(query)
    assert raised.value.parameter == parameter
    assert str(raised.value).startswith(f"{parameter}: ")
    assert isinstance(raised.value, ValueError)


def test_parameters_that_are_not_filters_are_ignored():
    assert (
        selectors.payment_filters_from_query(
            "o=-4.2&p=3&e=1&_changelist_filters=q%3Dx&all=&_popup=1&status__nope=1"
        )
        == PaymentFilters()
    )


def test_the_admin_url_parameters_round_trip():
    query = (
        "status__exact=REFUNDED&status__exact=completed&payment_gateway=MPGS"
        "&currency__exact=usd&needs_review__exact=0&date_created_from=09/03/2025"
        "&date_created_to=2025-03-11&date_paid_from=10/03/2025&q=+Bob%40Ex+&o=2&p=2"
    )
    filters = selectors.payment_filters_from_query(query)

    assert filters == PaymentFilters(
        statuses=("COMPLETED", "REFUNDED"),
        gateways=("mpgs",),
        currencies=("USD",),
        created_from=date(2025, 3, 9),
        created_to=date(2025, 3, 11),
        paid_from=date(2025, 3, 10),
        needs_review=False,
        search="Bob@Ex",
    )
    assert selectors.payment_filters_from_query(filters.as_query()) == filters
    assert QueryDict(filters.as_query()) == QueryDict(
        "status__exact=COMPLETED&status__exact=REFUNDED&payment_gateway=mpgs"
        "&currency__exact=USD&needs_review__exact=0&date_created_from=2025-03-09"
        "&date_created_to=2025-03-11&date_paid_from=2025-03-10&q=Bob%40Ex"
    )
    assert PaymentFilters().as_query() == ""


def test_a_querydict_a_mapping_and_a_query_string_read_alike():
    text = "status__exact=FAILED&status__exact=PENDING&needs_review__exact=1&q=a"
    from_mapping = selectors.payment_filters_from_query(
        {"status__exact": ["FAILED", "PENDING"], "needs_review__exact": "1", "q": "a"}
    )
    assert (
        selectors.payment_filters_from_query(QueryDict(text))
        == selectors.payment_filters_from_query(f"?{text}")
        == from_mapping
    )
    assert from_mapping.statuses == ("FAILED", "PENDING")


def test_filters_are_frozen_and_hold_tuples():
    filters = selectors.payment_filters_from_query("status__exact=FAILED")
    assert isinstance(filters.statuses, tuple)
    with pytest.raises(AttributeError):
        filters.statuses = ("PENDING",)  # type: ignore[misc]


def test_the_filter_widgets_use_the_selectors_parameter_names(admin_client, spread):
    """Every field of the list's filter panel is a parameter the selector reads."""
    response = admin_client.get(reverse(CHANGELIST))
    changelist = response.context["cl"]
    expected = {
        name
        for spec in changelist.filter_specs
        for name in spec.expected_parameters()
        if not name.endswith("__isnull")  # no widget of these offers "empty"
    }
    assert expected == set(selectors.PAYMENT_FILTER_PARAMETERS) - {
        CURRENCY_PARAMETER,  # reachable by URL; no widget
        SEARCH_PARAMETER,  # the search box
    }
    page = response.content.decode()
    for name in expected | {SEARCH_PARAMETER}:
        assert f'name="{name}"' in page, name


def test_payment_list_is_unevaluated_and_newest_first(
    spread, django_assert_num_queries
):
    with django_assert_num_queries(0):
        rows = selectors.payment_list(filters=PaymentFilters())
        assert isinstance(rows, QuerySet)
    assert rows.query.order_by == ("-date_created", "-id")
    assert [p.pk for p in rows] == by_hand(spread, PaymentFilters())
