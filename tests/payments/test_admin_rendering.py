"""The payment list's fast rendering: the same HTML as unfold's, memoised parts."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.urls import reverse
from unfold.templatetags.unfold_list import items_for_result

from backoffice.fragments import FRAGMENTS, FragmentStore, lazy_key, sidebar_key
from payments.admin.rows import FastRows
from payments.models import Payment
from payments.roles import roles_setup
from payments.states import PaymentStatus
from tests.factories import PaymentFactory, PlanFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/payments/payment/"


@pytest.fixture(autouse=True)
def _empty_fragments():
    FRAGMENTS.clear()
    yield
    FRAGMENTS.clear()


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
    Payment.objects.filter(pk=made[1].pk).update(status=PaymentStatus.COMPLETED)
    Payment.objects.filter(pk=made[2].pk).update(
        status=PaymentStatus.FAILED, needs_review=True
    )
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
    remembered = len(FRAGMENTS)
    assert remembered >= 3  # sidebar, filters and headers
    # The same query again: served from memory, the same markup.
    again = admin_client.get(LIST, {"status__exact": "FAILED"}).content.decode()
    assert len(FRAGMENTS) == remembered
    assert re.search(r'<option value="FAILED"[^>]*selected', again)
    # Another query: other selections and other sort links.
    other = admin_client.get(LIST, {"status__exact": "COMPLETED", "o": "2"}).content
    other = other.decode()
    assert re.search(r'<option value="COMPLETED"[^>]*selected', other)
    assert not re.search(r'<option value="FAILED"[^>]*selected', other)
    assert "o=-2" in other  # the sorted column's link now toggles the order
    assert len(FRAGMENTS) > remembered


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


def test_sidebar_keys_differ_by_what_is_shown():
    def navigation(active: bool, allowed: bool, badge: str) -> dict:
        return {
            "sidebar_navigation": [
                {
                    "title": "Operations",
                    "items": [
                        {
                            "title": "Payments",
                            "link": "/admin/payments/payment/",
                            "active": active,
                            "has_permission": allowed,
                            "badge_callback": badge,
                        }
                    ],
                }
            ]
        }

    keys = {
        sidebar_key(navigation(a, p, b))
        for a in (True, False)
        for p in (True, False)
        for b in ("", "3")
    }
    assert len(keys) == 8
    assert (
        sidebar_key(
            {**navigation(True, True, ""), "sidebar_show_all_applications": True}
        )
        == ""
    )


def test_the_fragment_store_renders_once_per_key():
    store = FragmentStore()
    calls = []

    def render() -> str:
        calls.append(1)
        return f"<p>{len(calls)}</p>"

    assert store.remember("k", render) == "<p>1</p>"
    assert store.remember("k", render) == "<p>1</p>"
    assert store.remember("", render) == "<p>2</p>"  # no key: every time
    assert store.remember("", render) == "<p>3</p>"
    assert (len(calls), len(store)) == (3, 1)


def test_the_fragment_store_forgets_the_least_recently_used():
    store = FragmentStore(size=2)
    store.put("a", "A")
    store.put("b", "B")
    assert store.get("a") == "A"  # now the most recent
    store.put("c", "C")
    assert store.get("b") is None
    assert (store.get("a"), store.get("c"), len(store)) == ("A", "C", 2)


def test_lazy_objects_are_keyed_by_identity_while_they_live(monkeypatch):
    from django.utils.functional import lazy

    from backoffice import fragments as memo

    monkeypatch.setattr(memo, "PINNED", {})
    monkeypatch.setattr(memo, "MAX_PINNED", 1)
    title = lazy(lambda: "Payments", str)()
    assert lazy_key(title) == ("lazy", id(title))
    assert lazy_key(title) == ("lazy", id(title))
    # Past the bound, a new lazy object is evaluated instead of kept.
    other = lazy(lambda: "Refunds", str)()
    assert lazy_key(other) == "Refunds"


def test_the_loader_wraps_only_unfolds_copy_of_the_listed_templates():
    from django.template import engines

    engine = engines["django"].engine
    shortcuts = engine.get_template("unfold/helpers/shortcuts.html")
    assert shortcuts.source.startswith("{% load payments_admin %}")
    assert shortcuts.source.endswith("{% endmemo %}")
    # Not listed: read as it is.
    assert "{% memo" not in engine.get_template("unfold/helpers/messages.html").source
    # The project's own navigation.html wins over unfold's, unwrapped.
    navigation = engine.get_template("unfold/helpers/navigation.html")
    assert "templates/unfold/helpers/navigation.html" in navigation.origin.name
    assert not navigation.source.startswith("{% load payments_admin %}")


def test_the_loader_refuses_a_template_that_extends_another(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured
    from django.template import engines

    from backoffice import fragments

    monkeypatch.setitem(
        fragments.MEMOISED_TEMPLATES, "admin/change_list.html", lambda context: ""
    )
    loader = fragments.MemoLoader(engines["django"].engine)
    origin = next(
        o
        for o in loader.get_template_sources("admin/change_list.html")
        if str(fragments.UNFOLD_DIR) in o.name
    )
    with pytest.raises(ImproperlyConfigured, match="extends another template"):
        loader.get_contents(origin)


def test_memoised_shortcuts_follow_the_keyboard_of_the_browser(admin_client):
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


def test_a_search_term_is_never_kept_in_the_fragment_store(admin_client, payments):
    # The same filters without a search: each filter's form is then kept too.
    admin_client.get(LIST, {"status__exact": "FAILED"})
    kept = len(FRAGMENTS)
    page = admin_client.get(LIST, {"q": "PLAIN@", "status__exact": "FAILED"})
    assert page.status_code == 200
    assert len(FRAGMENTS) == kept
    assert not any("plain@" in html.lower() for html in FRAGMENTS._items.values())


def test_memoised_headers_keep_each_users_columns(client, django_user_model, payments):
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


def test_a_changed_template_file_empties_the_store(admin_client, payments):
    from pathlib import Path

    from django.utils.autoreload import file_changed

    admin_client.get(LIST)
    assert len(FRAGMENTS) > 0
    file_changed.send(sender=None, file_path=Path("payments/models.py"))
    assert len(FRAGMENTS) > 0
    file_changed.send(sender=None, file_path=Path("templates/admin/index.html"))
    assert len(FRAGMENTS) == 0


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
            '<span class="block truncate max-w-40" title="{}">{}</span>', value, value
        )


class SelfRendering:
    """A media entry that renders itself (not a file Django knows)."""

    def __init__(self, html: str):
        self.html = html

    def __html__(self) -> str:
        return self.html


def test_memoised_media_renders_what_media_renders():
    from django.forms import Media
    from django.forms.widgets import Script

    from backoffice.fragments import MemoisedMedia

    media = Media(
        js=["admin/js/core.js", Script("unfold/js/app.js", defer=True)],
        css={"all": ["unfold/css/styles.css"]},
    ) + Media(js=["admin/js/actions.js", "admin/js/core.js"])
    memoised = MemoisedMedia(media)
    for _ in range(2):  # rendered, then from the store
        assert str(memoised) == str(media)
        assert str(memoised["js"]) == str(media["js"])
        assert str(memoised["css"]) == str(media["css"])
    assert len(FRAGMENTS) == 3
    assert 'app.js" defer>' in str(memoised["js"])
    # Other files, other attributes: other keys.
    other = MemoisedMedia(Media(js=[Script("unfold/js/app.js", defer=False)]))
    assert other.key and other.key != memoised.key
    assert str(other) == str(Media(js=[Script("unfold/js/app.js", defer=False)]))
    with pytest.raises(KeyError):
        memoised["fonts"]


def test_media_that_renders_itself_is_not_memoised():
    from django.forms import Media

    from backoffice.fragments import MemoisedMedia

    first = MemoisedMedia(Media(js=[SelfRendering("<script>one()</script>")]))
    assert first.key == ""
    assert str(first) == "<script>one()</script>"
    second = MemoisedMedia(Media(js=[SelfRendering("<script>two()</script>")]))
    assert str(second) == "<script>two()</script>"
    assert len(FRAGMENTS) == 0


def test_the_payment_list_serves_its_media_memoised(admin_client, payments):
    from django.forms import Media

    from backoffice.fragments import MemoisedMedia

    response = admin_client.get(LIST)
    media = response.context_data["media"]
    assert isinstance(media, MemoisedMedia)
    page = response.content.decode()
    for script in Media.render_js(media.media):
        assert script in page
    assert page.count("admin/js/actions.js") == 1


CSRF_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')
FILTERED_SEARCH = {
    "q": "nobody",
    "status__exact": "FAILED",
    "payment_gateway": "sandbox",
    "needs_review__exact": "1",
    "date_created_from": "2026-01-01",
    "date_paid_to": "2026-12-31",
}


def page_without_tokens(client, query: dict) -> str:
    response = client.get(LIST, query)
    assert response.status_code == 200
    return CSRF_TOKEN.sub("", response.content.decode())


def test_a_search_page_reuses_each_filter_by_its_form(
    admin_client, payments, monkeypatch
):
    """A search's filter panel is not memoised whole; each filter's form is."""
    from backoffice import fragments

    never = dict.fromkeys(
        ("unfold/filters/filters_field.html", "unfold/filters/filters_date_range.html"),
        lambda context: "",
    )
    with monkeypatch.context() as patched:
        for name, key in never.items():
            patched.setitem(fragments.MEMOISED_TEMPLATES, name, key)
        unmemoised = page_without_tokens(admin_client, FILTERED_SEARCH)
    FRAGMENTS.clear()
    first = page_without_tokens(admin_client, FILTERED_SEARCH)
    kept = len(FRAGMENTS)
    again = page_without_tokens(admin_client, FILTERED_SEARCH)
    assert first == again == unmemoised
    assert re.search(r'<option value="FAILED"[^>]*selected', again)
    assert 'value="2026-01-01"' in again and 'value="2026-12-31"' in again

    # Another search, the same filters: every filter is served from memory.
    other = page_without_tokens(admin_client, {**FILTERED_SEARCH, "q": "someone"})
    assert len(FRAGMENTS) == kept
    assert other == again.replace("nobody", "someone")
    assert not any(
        "nobody" in html or "someone" in html for html in FRAGMENTS._items.values()
    )

    # Another status: that filter alone is rendered (and kept) anew.
    completed = page_without_tokens(
        admin_client, {**FILTERED_SEARCH, "status__exact": "COMPLETED"}
    )
    assert len(FRAGMENTS) == kept + 1
    assert re.search(r'<option value="COMPLETED"[^>]*selected', completed)
    assert not re.search(r'<option value="FAILED"[^>]*selected', completed)


def test_only_filters_of_an_admin_with_memo_list_parts_are_memoised(admin_user):
    from backoffice.fragments import list_filter_key
    from payments.models import Refund

    def contexts(model, query: str):
        request = RequestFactory().get(query)
        request.user = admin_user
        cl = admin.site._registry[model].get_changelist_instance(request)
        return [
            {"spec": spec, "title": spec.title, "choices": list(spec.choices(cl))}
            for spec in cl.filter_specs
        ]

    payment_keys = [list_filter_key(c) for c in contexts(Payment, "?status__exact=X")]
    assert len(payment_keys) == 5
    assert all(payment_keys) and len(set(payment_keys)) == 5
    # The refunds admin does not set memo_list_parts: rendered every time.
    refund_contexts = contexts(Refund, "?status__exact=FAILED")
    assert refund_contexts
    assert [list_filter_key(c) for c in refund_contexts] == [""] * len(refund_contexts)
    # A choice that is more than a form (a link, say) is never memoised.
    context = contexts(Payment, "")[0]
    assert list_filter_key(context)
    context["choices"] = [{**context["choices"][0], "query_string": "?q=someone"}]
    assert list_filter_key(context) == ""


# -- the action bar, search box, header, pagination and user menu ---------------------

LIST_PARTS = (
    "unfold/helpers/change_list_actions.html",
    "admin/import_export/change_list_export_item.html",
    "admin/search_form.html",
    "unfold/helpers/header.html",
    "unfold/helpers/pagination.html",
    "unfold/helpers/navigation_user.html",
)


@pytest.mark.parametrize(
    "query",
    [{}, {"status__exact": "FAILED"}, {"o": "-7"}, {"needs_review__exact": "1"}],
)
def test_memoised_parts_render_what_unfold_renders(
    admin_client, payments, monkeypatch, query
):
    from backoffice import fragments
    from payments.templatetags import payments_admin

    with monkeypatch.context() as patched:
        for name in fragments.MEMOISED_TEMPLATES:
            patched.setitem(fragments.MEMOISED_TEMPLATES, name, lambda context: "")
        patched.setattr(payments_admin, "skeleton_key", lambda part, context: "")
        unmemoised = page_without_tokens(admin_client, query)
    FRAGMENTS.clear()
    first = page_without_tokens(admin_client, query)  # rendered and kept
    again = page_without_tokens(admin_client, query)  # from the store
    assert first == again == unmemoised
    kept = "".join(FRAGMENTS._items.values())
    for marker in (
        'id="changelist-actions"',  # the action bar
        'id="changelist-search"',  # the search box
        'id="header-inner"',  # the header
        'id="logout-form"',  # the user menu
        "Export",  # import-export's button
        "unfold/css/styles",  # the page's head
        'id="unfold-theme-colors"',  # the theme's colours
    ):
        assert marker in kept, marker


def test_each_part_is_kept_once_per_page_and_served_after(admin_client, payments):
    from backoffice import fragments

    admin_client.get(LIST, {"status__exact": "FAILED"})
    kept = len(FRAGMENTS)
    # Every listed part has a key on this page, and nothing new is kept on the next.
    keyed = []
    real = fragments.template_key

    def spying(name, context):
        key = real(name, context)
        keyed.append((name, bool(key)))
        return key

    from payments.templatetags import payments_admin

    original = payments_admin.template_key
    payments_admin.template_key = spying
    try:
        admin_client.get(LIST, {"status__exact": "FAILED"})
    finally:
        payments_admin.template_key = original
    assert len(FRAGMENTS) == kept
    assert {name for name, has_key in keyed if has_key} >= set(LIST_PARTS)


def test_list_parts_of_other_lists_and_of_searches_are_never_kept(admin_user, payments):
    from backoffice import fragments
    from payments.models import Refund

    def context(model, query: str) -> dict:
        request = RequestFactory().get(query)
        request.user = admin_user
        cl = admin.site._registry[model].get_changelist_instance(request)
        cl.formset = None
        return {"cl": cl, "request": request, "opts": cl.opts}

    keys = (
        fragments.list_actions_key,
        fragments.export_item_key,
        fragments.search_form_key,
        fragments.list_header_key,
        fragments.pagination_key,
    )
    listed = context(Payment, "?status__exact=FAILED")
    assert all(key(listed) for key in keys)
    assert len({key(listed) for key in keys}) == len(keys)
    for other in (context(Refund, ""), context(Payment, "?q=plain@example.com")):
        assert [key(other) for key in keys] == [""] * len(keys)
    # Another count, another header; a change form's header is never kept.
    header = fragments.list_header_key(listed)
    listed["cl"].result_count += 1
    assert fragments.list_header_key(listed) not in ("", header)
    assert fragments.list_header_key({**listed, "original": payments[0]}) == ""


TOKEN_VALUE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]*)"')


def test_a_kept_fragment_holds_no_csrf_token_and_each_page_its_own(
    admin_client, payments
):
    from backoffice.fragments import CSRF_HOLE

    pages = [admin_client.get(LIST).content.decode() for _ in range(2)]
    tokens = []
    for page in pages:
        found = TOKEN_VALUE.findall(page)
        # The changelist's form and the logout form, one token for the page.
        assert len(found) == 2 and len(set(found)) == 1, found
        assert CSRF_HOLE not in page
        tokens.append(found[0])
    assert tokens[0] != tokens[1]  # masked anew for each page
    kept = [TOKEN_VALUE.findall(html) for html in FRAGMENTS._items.values()]
    assert [CSRF_HOLE] in kept  # the logout form
    assert all(value == CSRF_HOLE for found in kept for value in found)


def test_the_memoised_logout_form_logs_out(django_user_model, payments):
    from django.test import Client

    user = django_user_model.objects.create_superuser("boss", None, "pw-12345678")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    for _ in range(2):  # the second page's user menu comes from the store
        page = browser.get(LIST).content.decode()
    form = page[page.index('id="logout-form"') :]
    token = TOKEN_VALUE.search(form).group(1)
    assert browser.post(reverse("admin:logout")).status_code == 403  # no token
    answer = browser.post(reverse("admin:logout"), {"csrfmiddlewaretoken": token})
    assert answer.status_code == 200
    assert browser.get(LIST).status_code == 302  # to the login page


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
            menu = page[page.index('x-data="{ openUserLinks: false }"') :]
            assert full_name in menu
            assert f"{username}@magic.example" in menu
            others = [name for other, (_, name) in names.items() if other != username]
            assert not any(name in page for name in others)


def test_the_user_menu_is_kept_per_admin_site(admin_user):
    """Its logout and password links are reversed in the site being shown."""
    from backoffice.fragments import user_menu_key

    keys = set()
    for site in ("admin", "other"):
        request = RequestFactory().get(LIST)
        request.user = admin_user
        request.current_app = site
        keys.add(user_menu_key({"request": request}))
    assert len(keys) == 2 and "" not in keys


def test_remember_puts_back_the_token_past_a_layer_left_inside():
    """unfold's {% capture silent %} leaves a layer on the context; ours still goes."""
    from django.template import Context, engines

    from backoffice.fragments import CSRF_HOLE

    template = engines["django"].from_string(
        "{% load payments_admin unfold %}"
        '{% memo "test-layer" %}{% capture as note silent %}x{% endcapture %}'
        "[{% csrf_token %}]{% endmemo %}|{% csrf_token %}"
    )
    for token in ("tokenA", "tokenB"):  # rendered and kept, then from the store
        html = template.render(Context({"csrf_token": token}).flatten())
        assert html.count(f'value="{token}"') == 2, html
        assert CSRF_HOLE not in html
    assert FRAGMENTS.get("test-layer").count(CSRF_HOLE) == 1


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


@pytest.mark.parametrize(
    "name", ["unfold/helpers/navigation.html", "unfold/layouts/skeleton.html"]
)
def test_the_projects_copies_of_unfolds_templates_add_only_memos(name):
    """After an upgrade of unfold, a copy that drifted from its original fails here."""
    from pathlib import Path

    from django.conf import settings

    from backoffice.fragments import UNFOLD_DIR

    def lines(source: str) -> list[str]:
        source = re.sub(r"{% comment %}.*?{% endcomment %}", "", source, flags=re.S)
        source = source.replace(" payments_admin %}", " %}")
        source = re.sub(r"{% \w+_memo_key [^%]*%}|{% (end)?memo[^%]*%}", "", source)
        return [line.strip() for line in source.splitlines() if line.strip()]

    ours = Path(settings.BASE_DIR, "templates", name).read_text()
    theirs = Path(UNFOLD_DIR, "templates", name).read_text()
    assert "{% memo" in ours
    assert lines(ours) == lines(theirs)


def test_skeleton_keys_follow_the_static_files_and_the_theme(settings):
    from backoffice.fragments import skeleton_key

    context = {"colors": {"primary": {"500": "10 20 30"}}, "styles": ["/a.css"]}
    head, colors = skeleton_key("head", context), skeleton_key("colors", context)
    assert head and colors and head != colors
    assert skeleton_key("body", context) == ""
    assert skeleton_key("head", {**context, "styles": ["/b.css"]}) != head
    other = {"primary": {"500": "10 20 31"}}
    assert skeleton_key("colors", {**context, "colors": other}) != colors
    settings.STATIC_URL = "/elsewhere/"
    assert skeleton_key("head", context) != head
    assert skeleton_key("colors", context) == colors
