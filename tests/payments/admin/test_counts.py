"""True counts, still cheap: exact up to ADMIN_EXACT_COUNT_LIMIT, else "more than".

The selector (`selectors.row_count`), the lists paged by `CountedPaginator`
(payments and the record admins), "Select all", "Show all" and the export
form's figure. On PostgreSQL the export form adds the planner's estimate.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from payments import selectors
from payments.admin.common import CountAbove, CountedPaginator
from payments.models import Payment, PaymentEvent
from payments.states import PaymentStatus
from tests.factories import PaymentFactory, move_to
from tests.payments.admin.test_exports import as_user, staff

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:payments_payment_changelist"
EXPORT = "admin:payments_payment_export"


@pytest.fixture
def payments(db):
    """12 payments: 5 FAILED, 7 PENDING."""
    made = PaymentFactory.create_batch(12)
    move_to(PaymentStatus.FAILED, made[:5])
    return made


# --- the selector ------------------------------------------------------------------


def test_row_count_is_exact_up_to_the_limit(payments):
    assert selectors.row_count(Payment.objects.all(), limit=12) == selectors.RowCount(
        exact=12, limit=12
    )
    failed = Payment.objects.filter(status=PaymentStatus.FAILED)
    assert selectors.row_count(failed, limit=5).exact == 5
    assert str(selectors.row_count(failed, limit=5)) == "5"


def test_row_count_says_only_more_than_the_limit_above_it(payments):
    counted = selectors.row_count(Payment.objects.all(), limit=11)
    assert counted.exact is None and not counted.is_exact
    assert str(counted) == "more than 11"
    assert str(selectors.row_count(Payment.objects.all(), limit=10_000)) == "12"


def test_the_default_limit_is_the_setting(payments, settings):
    settings.ADMIN_EXACT_COUNT_LIMIT = 3
    assert str(selectors.row_count(Payment.objects.all())) == "more than 3"
    settings.ADMIN_EXACT_COUNT_LIMIT = 10_000
    assert str(selectors.row_count(Payment.objects.all())) == "12"


def test_the_count_is_one_query_over_a_limited_subquery(payments):
    with CaptureQueriesContext(connection) as queries:
        counted = selectors.bounded_count(Payment.objects.order_by("-id"), limit=4)
    assert counted == 5  # limit + 1: "more than 4"
    [sql] = [q["sql"] for q in queries.captured_queries]
    assert sql.startswith("SELECT COUNT(*) FROM (SELECT")
    assert "LIMIT 5" in sql and "ORDER BY" not in sql


def test_an_estimate_is_shown_only_above_the_limit_and_labelled():
    assert str(selectors.RowCount(exact=None, limit=10_000, estimate=52_300)) == (
        "more than 10,000, about 52,300"
    )
    # An estimate below the limit contradicts the count: it is left out.
    below = selectors.RowCount(exact=None, limit=10_000, estimate=9_000)
    assert str(below) == "more than 10,000" and not below.estimated
    assert str(selectors.RowCount(exact=12_345, limit=20_000)) == "12,345"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_on_postgresql_the_estimate_comes_from_the_planner(payments):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE payments_payment")
    estimate = selectors.planner_estimate(Payment.objects.all())
    assert estimate == 12
    counted = selectors.row_count(Payment.objects.all(), limit=3, estimate=True)
    assert (counted.exact, counted.estimate) == (None, 12)
    assert str(counted) == "more than 3, about 12"


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite has no estimate")
def test_elsewhere_there_is_no_estimate(payments):
    assert selectors.planner_estimate(Payment.objects.all()) is None
    counted = selectors.row_count(Payment.objects.all(), limit=3, estimate=True)
    assert str(counted) == "more than 3"


# --- the lists ----------------------------------------------------------------------


def test_count_above_reads_more_than_and_pages_like_a_long_list(settings):
    above = CountAbove(10_000)
    assert str(above) == "more than 10,000"
    assert above > 10_000 and above > 10**12  # never "can show all", always paged
    paginator = CountedPaginator(Payment.objects.none(), 50)
    settings.ADMIN_EXACT_COUNT_LIMIT = 10
    assert paginator.count == 0 and paginator.count_is_exact


def list_page(client, **params):
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return response


def test_a_filtered_list_states_its_exact_count_and_select_all_agrees(
    admin_client, payments
):
    response = list_page(admin_client, status__exact="FAILED")
    changelist = response.context["cl"]
    assert changelist.result_count == 5 and changelist.paginator.count_is_exact
    page = response.content.decode()
    assert 'data-result-count="5"' in page
    assert "9999999999" not in page
    # unfold's header link ("N results (Show all)") leads to the unfiltered list.
    assert "results (" not in page


def test_a_list_above_the_limit_says_more_than_and_offers_no_show_all(
    admin_client, payments, settings
):
    settings.ADMIN_EXACT_COUNT_LIMIT = 3
    response = list_page(admin_client, status__exact="FAILED")
    changelist = response.context["cl"]
    assert not changelist.paginator.count_is_exact
    assert changelist.can_show_all is False
    page = response.content.decode()
    assert 'data-result-count="more"' in page
    assert "more than 3 payments" in page
    assert "Select all more than 3 payments" in page
    assert "9999999999" not in page
    # ?all= cannot force every row onto the page either.
    response = list_page(admin_client, status__exact="FAILED", all="")
    assert len(response.context["cl"].result_list) == 5  # the page, not a dump


def test_show_all_appears_only_when_it_can_show_every_row(
    admin_client, payments, settings, monkeypatch
):
    from payments.admin.payment import PaymentAdmin

    monkeypatch.setattr(PaymentAdmin, "list_per_page", 4)
    response = list_page(admin_client, status__exact="FAILED")
    assert "showall" in response.content.decode()  # 5 rows, 2 pages
    response = list_page(admin_client, status__exact="FAILED", all="")
    assert len(response.context["cl"].result_list) == 5

    settings.ADMIN_EXACT_COUNT_LIMIT = 3  # now the count is not exact
    response = list_page(admin_client, status__exact="FAILED")
    assert "showall" not in response.content.decode()


def test_a_deep_page_past_the_limit_still_lists_its_rows(
    admin_client, settings, monkeypatch
):
    from payments.admin.payment import PaymentAdmin

    settings.ADMIN_EXACT_COUNT_LIMIT = 2
    made = PaymentFactory.create_batch(30)
    monkeypatch.setattr(PaymentAdmin, "list_per_page", 2)
    response = list_page(admin_client, p="12")
    listed = [p.pk for p in response.context["cl"].result_list]
    newest_first = sorted((p.pk for p in made), reverse=True)
    assert listed == newest_first[22:24]


@pytest.mark.parametrize(
    "name", ["refund", "paymentevent", "webhookdelivery", "reconciliationrun"]
)
def test_the_record_lists_count_the_same_way(admin_client, payments, settings, name):
    from django.apps import apps
    from django.contrib import admin

    from payments.admin.common import CountedChangeList

    model_admin = admin.site.get_model_admin(apps.get_model("payments", name))
    assert isinstance(
        model_admin.paginator(Payment.objects.none(), 1), CountedPaginator
    )
    response = admin_client.get(reverse(f"admin:payments_{name}_changelist"))
    assert response.status_code == 200
    assert isinstance(response.context["cl"], CountedChangeList)
    assert "9999999999" not in response.content.decode()


def test_the_timeline_list_states_its_count(admin_client, payments, settings):
    events = PaymentEvent.objects.count()
    assert events >= 5  # the FAILED payments' status changes
    page = admin_client.get(reverse("admin:payments_paymentevent_changelist"))
    assert f'data-result-count="{events}"' in page.content.decode()
    settings.ADMIN_EXACT_COUNT_LIMIT = 2
    page = admin_client.get(reverse("admin:payments_paymentevent_changelist"))
    assert "more than 2 payment events" in page.content.decode()


def test_the_list_costs_one_bounded_count_more_at_most(admin_client, payments):
    """The query budget: the count is one statement, bounded by the limit."""
    list_page(admin_client)  # the session and the review badge settled
    with CaptureQueriesContext(connection) as queries:
        list_page(admin_client, status__exact="FAILED")
    counts = [
        q["sql"] for q in queries.captured_queries if "COUNT(*) FROM (" in q["sql"]
    ]
    assert len(counts) == 1
    assert "LIMIT 10001" in counts[0]


# --- the export form ----------------------------------------------------------------


def export_form(client, **params):
    user = staff("fiona", "Finance")
    response = as_user(client, user).get(reverse(EXPORT), params)
    assert response.status_code == 200
    return response


def test_the_export_form_says_how_many_rows_it_will_write(client, payments):
    response = export_form(client, status__exact="FAILED")
    assert response.context["export_row_count"].exact == 5
    page = response.content.decode()
    assert "This export will write 5 payments." in page
    assert "in the background" not in page


def test_the_export_form_says_more_than_the_limit_and_background(
    client, payments, settings
):
    settings.ADMIN_EXACT_COUNT_LIMIT = 3
    settings.EXPORT_SYNC_LIMIT = 3
    page = export_form(client).content.decode()
    if connection.vendor == "postgresql":
        # Without statistics the planner's guess may be anything: what is
        # shown is "more than 3", with "about N" only for N above 3.
        assert "This export will write more than 3" in page
    else:
        assert "This export will write more than 3 payments." in page
    assert "It will be written in the background" in page


def test_the_export_form_of_one_payment_says_payment(client, payments):
    page = export_form(client, q=payments[0].ref_id).content.decode()
    assert "This export will write 1 payment." in page


def test_export_selected_keeps_its_own_figure(client, payments):
    user = staff("fiona", "Finance")
    response = as_user(client, user).post(
        reverse(CHANGELIST),
        {
            "action": "export_admin_action",
            "_selected_action": [p.pk for p in payments[:2]],
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "data-export-row-count" not in page
    assert "Export 2 selected items." in " ".join(page.split())
