"""The payment list's fast rendering: the same HTML as unfold's."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.urls import reverse
from unfold.templatetags.unfold_list import items_for_result

from payments.admin.rows import FastRows
from payments.models import Payment
from payments.roles import roles_setup
from payments.states import PaymentStatus
from tests.factories import PaymentFactory, PlanFactory, move_to

pytestmark = pytest.mark.django_db

LIST = "/admin/payments/payment/"


@pytest.fixture
def payments():
    """Payments whose cells differ: statuses, review flag, a hostile e-mail, money."""
    kwd = PlanFactory(
        code="kw-1", name="Kuwait <1 GB>", price=Decimal("1.250"), currency="KWD"
    )
    made = [
        PaymentFactory(email="plain@example.com"),
        PaymentFactory(email='"><script>alert(1)</script>@example.com', plan=kwd),
        PaymentFactory(email="flagged@example.com"),
        PaymentFactory(email="x" * 120 + "@example.com"),
    ]
    move_to(PaymentStatus.COMPLETED, [made[1]])
    move_to(PaymentStatus.FAILED, [made[2]])
    Payment.objects.filter(pk=made[2].pk).update(needs_review=True)
    Payment.objects.filter(pk=made[3].pk).update(plan=None)
    return made


def changelist(user, query: str = ""):
    request = RequestFactory().get(LIST + query)
    request.user = user
    model_admin = admin.site._registry[Payment]
    cl = model_admin.get_changelist_instance(request)
    cl.formset = None
    return cl


def test_fast_rows_make_exactly_unfolds_cells(payments, admin_user):
    cl = changelist(admin_user)
    fast = FastRows.for_changelist(cl)
    assert fast is not None
    rows = list(cl.result_list)
    assert len(rows) == 4
    for payment in rows:
        assert fast.cells(payment) == [
            str(cell) for cell in items_for_result(cl, payment, None)
        ]


def test_the_page_shows_every_payment_escaped_and_linked(admin_client, payments):
    page = admin_client.get(LIST).content.decode()
    for payment in payments:
        assert reverse("admin:payments_payment_change", args=[payment.pk]) in page
        assert payment.ref_id in page
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Kuwait &lt;1 GB&gt;" in page
    assert page.count('<tr class="data-row relative">') == 4
    # Rows are striped as unfold stripes them.
    assert page.count('<tbody class="relative bg-base-50 dark:bg-white/[.02]"') == 2


def test_lists_fast_rows_cannot_render_fall_back_to_unfold(admin_user, payments):
    cl = changelist(admin_user)
    cl.list_display = [*cl.list_display, "email"]  # a model field, not a method
    assert FastRows.for_changelist(cl) is None
    cl = changelist(admin_user)
    assert FastRows.for_changelist(cl, actions_row=[{"title": "x"}]) is None
    cl.list_display_links = None
    assert FastRows.for_changelist(cl) is None


def test_the_filter_panel_and_headers_follow_the_query_string(admin_client, payments):
    first = admin_client.get(LIST, {"status__exact": "FAILED"}).content.decode()
    assert re.search(r'<option value="FAILED"[^>]*selected', first)
    # Another query: other selections and other sort links.
    other = admin_client.get(LIST, {"status__exact": "COMPLETED", "o": "2"}).content
    other = other.decode()
    assert re.search(r'<option value="COMPLETED"[^>]*selected', other)
    assert not re.search(r'<option value="FAILED"[^>]*selected', other)
    assert "o=-2" in other  # the sorted column's link now toggles the order


def test_the_sidebar_badge_counts_payments_needing_review_now(admin_client, payments):
    def badge(page: str) -> str:
        start = page.rindex("<a", 0, page.index(f'href="{LIST}"'))
        text = re.sub(r"<[^>]+>", " ", page[start : page.index("</a>", start)])
        return re.sub(r"\s+", " ", text) + " "

    assert " Payments 1 " in badge(admin_client.get(LIST).content.decode())
    payments[0].needs_review = True
    payments[0].save()
    assert " Payments 2 " in badge(admin_client.get(LIST).content.decode())


def test_the_sidebar_shows_each_user_only_what_they_may_open(
    client, admin_client, django_user_model, payments
):
    plans = reverse("admin:payments_plan_changelist")
    assert f'href="{plans}"' in admin_client.get(LIST).content.decode()
    roles_setup()
    support = django_user_model.objects.create_user("support", is_staff=True)
    support.groups.add(Group.objects.get(name="Support"))
    client.force_login(support)
    page = client.get(LIST).content.decode()
    assert f'href="{plans}"' not in page
    assert f'href="{LIST}"' in page


def test_the_sidebar_marks_the_page_being_shown(admin_client, payments):
    refunds = reverse("admin:payments_refund_changelist")

    def active(page: str) -> list[str]:
        return re.findall(r'<a\s+href="([^"]+)"[^>]*\bactive\b', page)

    assert active(admin_client.get(LIST).content.decode()) == [LIST]
    assert active(admin_client.get(refunds).content.decode()) == [refunds]


def test_the_shortcuts_sheet_follows_the_keyboard_of_the_browser(admin_client):
    mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)"
    pc = "Mozilla/5.0 (X11; Linux x86_64)"
    for agent, key, other in (
        (mac, "keyboard_command_key", "keyboard_control_key"),
        (pc, "keyboard_control_key", "keyboard_command_key"),
        (mac, "keyboard_command_key", "keyboard_control_key"),
    ):
        page = admin_client.get(LIST, HTTP_USER_AGENT=agent).content.decode()
        assert key in page
        assert other not in page


def test_the_headers_follow_each_users_columns(client, django_user_model, payments):
    """Finance may export (a row checkbox column); Support may not (none)."""
    roles_setup()
    pages = {}
    for role in ("Finance", "Support", "Finance"):
        user, _ = django_user_model.objects.get_or_create(
            username=role.lower(), defaults={"is_staff": True}
        )
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        page = client.get(LIST, {"status__exact": "FAILED"}).content.decode()
        header = page[page.index("<thead>") : page.index("</thead>")]
        pages.setdefault(role, []).append(("action-toggle" in header, page))
    assert [toggle for toggle, _ in pages["Finance"]] == [True, True]
    assert [toggle for toggle, _ in pages["Support"]] == [False]
    # Every row has as many cells as the header has columns.
    for runs in pages.values():
        for _, page in runs:
            header = page[page.index("<thead>") : page.index("</thead>")]
            row = page[page.index('<tr class="data-row relative">') :]
            row = row[: row.index("</tr>")]
            cells = re.compile(r"<t[hd][\s>]")
            assert len(cells.findall(header)) == len(cells.findall(row))


@pytest.mark.parametrize("text", ['a"b<c>&d', "plain", "", "x" * 300, "&amp; already"])
def test_list_cells_escape_exactly_as_format_html(text):
    from django.utils.html import format_html
    from django.utils.safestring import mark_safe

    from payments.admin.common import nowrap, truncated

    for value in (text, mark_safe(f"<b>{text}</b>")):  # noqa: S308 - a test value
        assert nowrap(value) == format_html(
            '<span class="whitespace-nowrap">{}</span>', value
        )
        assert truncated(value) == format_html(
            '<span class="block truncate max-w-48" title="{}">{}</span>', value, value
        )


def test_the_payment_list_links_each_of_its_scripts_once(admin_client, payments):
    response = admin_client.get(LIST)
    page = response.content.decode()
    for script in response.context_data["media"].render_js():
        assert script in page
    assert page.count("admin/js/actions.js") == 1


FILTERED_SEARCH = {
    "q": "nobody",
    "status__exact": "FAILED",
    "payment_gateway": "sandbox",
    "needs_review__exact": "1",
    "date_created_from": "2026-01-01",
    "date_paid_to": "2026-12-31",
}


def test_a_search_page_shows_the_term_and_each_filters_value(admin_client, payments):
    page = admin_client.get(LIST, FILTERED_SEARCH)
    assert page.status_code == 200
    page = page.content.decode()
    assert 'value="nobody"' in page
    assert re.search(r'<option value="FAILED"[^>]*selected', page)
    assert 'value="2026-01-01"' in page and 'value="2026-12-31"' in page
    completed = admin_client.get(
        LIST, {**FILTERED_SEARCH, "status__exact": "COMPLETED"}
    )
    completed = completed.content.decode()
    assert re.search(r'<option value="COMPLETED"[^>]*selected', completed)
    assert not re.search(r'<option value="FAILED"[^>]*selected', completed)


# -- CSRF tokens and the user menu ----------------------------------------------------

TOKEN_VALUE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]*)"')


def logout_token(page: str) -> str:
    form = page[page.index('id="logout-form"') :]
    return TOKEN_VALUE.search(form).group(1)


def user_menu(page: str) -> str:
    return page[page.index('x-data="{ openUserLinks: false }"') :]


def test_each_page_carries_its_requests_own_csrf_token(admin_client, payments):
    tokens = []
    for _ in range(2):
        response = admin_client.get(LIST)
        page = response.content.decode()
        found = TOKEN_VALUE.findall(page)
        # The changelist's form and the logout form, the request's one token.
        assert len(found) == 2, found
        assert set(found) == {str(response.context["csrf_token"])}
        assert logout_token(page) == found[0]
        tokens.append(found[0])
    assert tokens[0] != tokens[1]  # masked anew for each page


def test_the_logout_form_logs_out(django_user_model, payments):
    from django.test import Client

    user = django_user_model.objects.create_superuser("boss", None, "pw-12345678")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    page = browser.get(LIST).content.decode()
    token = logout_token(page)
    assert browser.post(reverse("admin:logout")).status_code == 403  # no token
    answer = browser.post(reverse("admin:logout"), {"csrfmiddlewaretoken": token})
    assert answer.status_code == 200
    assert browser.get(LIST).status_code == 302  # to the login page


def test_two_staff_users_each_see_only_their_own_menu_and_token(
    django_user_model, payments
):
    """Each page names its own user and carries its own request's CSRF token."""
    from django.test import Client

    roles_setup()
    browsers, tokens = {}, {}
    for username, role in (("amal-support", "Support"), ("omar-finance", "Finance")):
        user = django_user_model.objects.create_user(username, is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        browsers[username] = Client(enforce_csrf_checks=True)
        browsers[username].force_login(user)
    for _ in range(2):
        for username, browser in browsers.items():
            response = browser.get(LIST)
            assert response.status_code == 200
            page = response.content.decode()
            assert username in user_menu(page)
            others = [name for name in browsers if name != username]
            assert not any(other in page for other in others), username
            tokens[username] = logout_token(page)
            assert tokens[username] == str(response.context["csrf_token"])
    # A token is good only for the session it was made for.
    amal, omar = browsers["amal-support"], browsers["omar-finance"]
    stolen = {"csrfmiddlewaretoken": tokens["amal-support"]}
    assert omar.post(reverse("admin:logout"), stolen).status_code == 403
    own = {"csrfmiddlewaretoken": tokens["omar-finance"]}
    assert omar.post(reverse("admin:logout"), own).status_code == 200
    assert omar.get(LIST).status_code == 302
    assert amal.get(LIST).status_code == 200


def test_the_user_menu_is_each_users_own(client, django_user_model, payments):
    names = {}
    for username, first, last in (
        ("amal", "Amal", "Haddad"),
        ("omar", "Omar", "Saleh"),
    ):
        user = django_user_model.objects.create_superuser(
            username,
            f"{username}@magic.example",
            None,
            first_name=first,
            last_name=last,
        )
        names[username] = (user, f"{first} {last}")
    for _ in range(2):
        for username, (user, full_name) in names.items():
            client.force_login(user)
            page = client.get(LIST).content.decode()
            menu = user_menu(page)
            assert full_name in menu
            assert f"{username}@magic.example" in menu
            others = [name for other, (_, name) in names.items() if other != username]
            assert not any(name in page for name in others)


@pytest.mark.parametrize(
    "value",
    ["plain", "a\"b<c>&d'e", "", 42, None, Decimal("1.250")],
)
def test_escaped_is_conditional_escape(value):
    from django.utils.functional import lazy
    from django.utils.html import conditional_escape
    from django.utils.safestring import mark_safe

    from payments.admin.common import escaped

    lazy_text = lazy(lambda: str(value), str)()
    for given in (value, mark_safe(f"<b>{value}</b>"), lazy_text):  # noqa: S308
        assert escaped(given) == conditional_escape(given)


def test_the_list_reads_its_rows_in_one_query_whatever_their_number(
    admin_client, payments
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> tuple[list[str], str]:
        admin_client.get(LIST)  # the session and the review badge settled
        with CaptureQueriesContext(connection) as captured:
            page = admin_client.get(LIST).content.decode()
        return [q["sql"] for q in captured.captured_queries], page

    few, _ = queries()
    PaymentFactory.create_batch(12)
    many, page = queries()
    assert len(many) == len(few), many
    assert page.count('<tr class="data-row relative">') == 16
    assert "Kuwait &lt;1 GB&gt;" in page  # the plan's name, through the join
