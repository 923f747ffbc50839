"""Memoised admin fragments: HTML rendered once per distinct set of inputs.

Parts of every admin page (the sidebar's entries, the user menu, the command
palette, the shortcuts sheet, the head's fonts, styles and scripts, the
theme's colours) and of the payment list (its header, filter
panel, each filter, search box, action bar, Export button, column headers and
pagination) take milliseconds to render through unfold's templates, yet
depend on a few values only: the entries the user may see with their badges,
the signed-in user, the query string (a filter: its own form), the list's
counts, the user being staff. Their HTML is kept under a digest of those
values, so a fragment is never stale: any change to an input is a different
key. The store is per process and bounded (least recently used out first).
Nothing in it is secret: a form's CSRF token is kept as a hole and filled in
with each request's own (`remember`); a search term never enters it; the only
personal data is a staff user's own name and e-mail, in their user menu.

unfold's own templates are memoised without copying them: `MemoLoader` reads
each one named in MEMOISED_TEMPLATES from unfold's package (its templates and
those of its contrib apps) and wraps it in `{% memo %}` with the key function
named there. A project template of the same name (templates/) still wins,
unwrapped. Two are unfold's with memos added, where the memoised part is
only a piece of a template: templates/unfold/helpers/navigation.html (the
sidebar's entries) and templates/unfold/layouts/skeleton.html (the head's
files, the colours); a test holds each to unfold's original.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import unfold
from django.conf import settings
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import receiver
from django.forms.widgets import MEDIA_TYPES, Media, MediaAsset
from django.template.loaders.app_directories import Loader as AppDirectoriesLoader
from django.urls import get_script_prefix, get_urlconf
from django.utils.autoreload import file_changed
from django.utils.functional import Promise
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import get_current_timezone_name
from django.utils.translation import get_language

MAX_FRAGMENTS = 256
UNFOLD_DIR = Path(unfold.__file__).resolve().parent


class FragmentStore:
    """A bounded, thread-safe, least-recently-used map of key → HTML."""

    def __init__(self, size: int = MAX_FRAGMENTS):
        self.size = size
        self._items: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            html = self._items.get(key)
            if html is not None:
                self._items.move_to_end(key)
            return html

    def put(self, key: str, html: str) -> None:
        with self._lock:
            self._items[key] = html
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def remember(self, key: str, render: Callable[[], str]) -> str:
        """Return the HTML kept under `key`, rendering and keeping it if missing.

        An empty key renders every time and keeps nothing.
        """
        if not key:
            return render()
        html = self.get(key)
        if html is None:
            html = render()
            self.put(key, html)
        return html

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


FRAGMENTS = FragmentStore()

# Stands for the request's CSRF token in a kept fragment (a form's hidden
# field); put back, the request's own token, each time the fragment is used.
CSRF_HOLE = f"csrf-hole-{secrets.token_hex(16)}"


def remember(key: str, context, render: Callable[[], str]) -> str:
    """Return the fragment kept under `key`, rendering it in `context` if missing.

    A `{% csrf_token %}` in the fragment is rendered as CSRF_HOLE and filled
    in with this request's token on every use, so no token is kept and each
    page carries its own. Without a token in the context (no request), the
    fragment is kept as rendered, under a key of its own (a filter's form, say,
    is rendered in a context of its own, without the request).
    """
    if not key:
        return render()
    token = context.get("csrf_token")
    if token is None:
        return FRAGMENTS.remember(f"{key}:no-csrf", render)

    def render_with_hole() -> str:
        layer = {"csrf_token": CSRF_HOLE}
        context.dicts.append(layer)
        try:
            return render()
        finally:
            # Not context.pop(): a tag inside may have left a layer of its own
            # above this one (unfold's {% capture silent %} does).
            for index in range(len(context.dicts) - 1, -1, -1):
                if context.dicts[index] is layer:
                    del context.dicts[index]
                    break

    html = FRAGMENTS.remember(key, render_with_hole)
    if CSRF_HOLE in html:
        html = html.replace(CSRF_HOLE, conditional_escape(str(token)))
    return html


@receiver(file_changed, dispatch_uid="backoffice_fragments_file_changed")
def forget_fragments(sender, file_path, **kwargs) -> None:
    """Under runserver, forget every fragment when a template file changes.

    Django then reloads its templates without restarting the process; the
    keys do not cover template sources. Returns None: whether to restart
    stays Django's decision.
    """
    if Path(file_path).suffix == ".html":
        FRAGMENTS.clear()


# The entry fields unfold's app_list.html reads; the badge as the page shows it.
ENTRY_FIELDS = (
    "title",
    "link",
    "link_callback",
    "icon",
    "icon_template",
    "active",
    "has_permission",
    "badge",
    "badge_variant",
    "badge_style",
    "badge_class",
    "link_attrs",
    "separator",
    "collapsible",
)


# Lazy objects keyed by identity, held so that no other object takes their id.
PINNED: dict[int, Promise] = {}
MAX_PINNED = 4096


def lazy_key(value: Promise) -> Any:
    """Key a lazy object by identity; evaluate it once too many have been seen."""
    pinned = PINNED.get(id(value))
    if pinned is value:
        return ("lazy", id(value))
    if pinned is None and len(PINNED) < MAX_PINNED:
        PINNED[id(value)] = value
        return ("lazy", id(value))
    return str(value)


PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


def plain(value: Any, lazy: Callable[[Promise], Any] = lazy_key) -> Any:
    """Return `value` as nested tuples of plain values.

    A lazy title or link from the settings is the same object on every request
    (deepcopy keeps lazy objects), and what it shows depends only on the
    language, the script prefix and the URLconf, which every key includes; so
    it stands for itself, without being evaluated. Lazy objects made for each
    request (a filter form's label) are evaluated instead: `lazy=str`.
    """
    if type(value) in PLAIN_TYPES:  # most values: answered first
        return value
    if isinstance(value, dict):
        return tuple(sorted((str(k), plain(v, lazy)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(plain(v, lazy) for v in value)
    if isinstance(value, Promise):
        return lazy(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def entry(item: dict) -> tuple:
    """Return what the sidebar shows of one entry (group or item), nested ones too."""
    shown = [plain(item.get(name)) for name in ENTRY_FIELDS]
    # Made for this request: evaluated, as the page shows it (the review count),
    # and kept evaluated in this request's copy so the page does not count again.
    if item.get("badge_callback") is not None:
        item["badge_callback"] = str(item["badge_callback"])
    shown.append(item.get("badge_callback"))
    children = item.get("items")
    if isinstance(children, list):
        shown.append(tuple(entry(child) for child in children))
    return tuple(shown)


def digest(*parts: Any) -> str:
    """Return a key for a fragment whose output depends on `parts` only."""
    text = repr(
        (
            get_language(),
            get_current_timezone_name(),
            get_script_prefix(),
            get_urlconf(),
            parts,
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


def sidebar_key(context) -> str:
    """Key the sidebar's entries: what the user may open, which is active, badges.

    "All applications" lists the registered models, which the key does not
    cover, so that panel is never memoised.
    """
    if context.get("sidebar_show_all_applications"):
        return ""
    groups = context.get("sidebar_navigation") or []
    return digest("sidebar", tuple(entry(group) for group in groups))


def filters_key(context) -> str:
    """Key a changelist's filter panel (see list_part_key)."""
    return list_context_key("filters", context)


# What a form-based filter's choice may hold: its form, and from unfold's date
# range its parameter name (keyed) and the request (which its template does
# not show). A choice holding anything else is not memoised.
FILTER_CHOICE_KEYS = frozenset({"form", "parameter_name", "request"})
# Set on the filters of a changelist whose admin sets `memo_list_parts`.
MEMO_FILTER = "memo_by_form"


def memoise_list_filters(changelist) -> None:
    """Let each of this changelist's filters be memoised by its form (see below).

    Only for an admin that sets `memo_list_parts`.
    """
    if getattr(changelist.model_admin, "memo_list_parts", False):
        for spec in changelist.filter_specs:
            setattr(spec, MEMO_FILTER, True)


def form_key(form) -> tuple:
    """What an unfold filter form shows: its class, its data and its fields."""
    fields = tuple(
        (
            name,
            type(field).__qualname__,
            type(field.widget).__qualname__,
            plain(field.label, str),
            plain(getattr(field, "choices", None), str),
            plain(field.widget.attrs, str),
            plain(field.help_text, str),
            field.required,
        )
        for name, field in form.fields.items()
    )
    data = tuple(sorted((str(k), plain(v, str)) for k, v in form.data.items()))
    return (type(form).__module__, type(form).__qualname__, form.prefix, data, fields)


def list_filter_key(context) -> str:
    """Key one list filter of unfold's, form-based, by what its form shows.

    unfold renders each filter's template with a context of its own: the
    title, the filter, its choices (a form: a select, radio buttons or two
    dates) and the label options. The form is built from the filter's own
    parameters only, so a search term or another filter's value is not part
    of the key and never enters the store: a search page, whose filter panel
    is not memoised as a whole, still reuses each filter. Only filters marked
    by memoise_list_filters; any choice other than a form is not memoised.
    """
    spec = context.get("spec")
    if not getattr(spec, MEMO_FILTER, False):
        return ""
    forms = []
    for choice in context.get("choices") or ():
        if not isinstance(choice, dict) or "form" not in choice:
            return ""
        if set(choice) - FILTER_CHOICE_KEYS:
            return ""
        forms.append(
            (form_key(choice["form"]), plain(choice.get("parameter_name"), str))
        )
    if not forms:
        return ""
    return digest(
        "list-filter",
        type(spec).__module__,
        type(spec).__qualname__,
        getattr(spec, "template", None),
        plain(context.get("title"), str),
        plain(context.get("label"), str),
        bool(context.get("has_label")),
        bool(context.get("horizontal")),
        tuple(forms),
    )


def request_of(context):
    """The request a template is rendered for, also inside an inclusion tag.

    An inclusion tag renders with `context.new()`, which drops the context
    processors' values (`request` among them) but keeps the attribute.
    """
    return context.get("request") or getattr(context, "request", None)


def list_context_key(part: str, context) -> str:
    """list_part_key for a template rendered with a changelist (`cl`), else ""."""
    cl = context.get("cl")
    return list_part_key(part, cl, request_of(context)) if cl else ""


def list_actions_key(context) -> str:
    """Key a changelist's action bar (unfold/helpers/change_list_actions.html).

    It shows the action form (a select of the actions this user may run, a
    hidden select-across flag), the selection counter's notes and the counts
    they are made of; nothing from the database but those counts. Only for an
    admin that sets `memo_list_parts`, never for a search (list_part_key).
    """
    base = list_context_key("actions", context)
    if not base:
        return ""
    cl = context["cl"]
    form = context.get("action_form")
    admin = cl.model_admin
    return digest(
        base,
        None if form is None else (form_key(form), form.auto_id, plain(form.initial)),
        # admin_actions counts the action bars of a page (the submit's value).
        context.get("action_index"),
        bool(context.get("actions_on_top")),
        bool(context.get("actions_selection_counter")),
        plain(context.get("selection_note"), str),
        plain(context.get("selection_note_all"), str),
        plain(context.get("module_name"), str),
        bool(context.get("is_popup")),
        bool(cl.search_fields),
        bool(cl.has_filters),
        cl.result_count,
        len(cl.result_list),
        bool(getattr(admin, "list_fullwidth", False)),
        bool(getattr(admin, "list_disable_select_all", False)),
    )


def export_item_key(context) -> str:
    """Key the changelist's Export button (import-export's, unfold's template).

    A link to the export view with the list's query string, shown to those
    who may export. As list_part_key: the payment list, never a search.
    """
    base = list_context_key("export", context)
    if not base:
        return ""
    opts = context.get("opts")
    return digest(
        base,
        bool(context.get("has_export_permission")),
        getattr(opts, "label", None),
    )


def search_form_key(context) -> str:
    """Key the changelist's search box when there is no search term.

    It shows the (empty) term, the help text and the other parameters of the
    query string as hidden fields. A page with a search term is never
    memoised (list_part_key), so no term enters the store.
    """
    base = list_context_key("search", context)
    if not base:
        return ""
    cl = context["cl"]
    return digest(
        base,
        plain(cl.query, str),  # spaces at most: list_part_key refuses a term
        bool(cl.search_fields),
        bool(getattr(cl, "is_dataset", False)),
        plain(cl.search_help_text, str),
        context.get("search_var"),
        plain(cl.filter_params, str),
    )


def pagination_key(context) -> str:
    """Key a changelist's pagination (unfold/helpers/pagination.html).

    Links to pages around the current one (the query string with another
    page number), by the counts and the page size. As list_part_key: the
    payment list, never a search.
    """
    base = list_context_key("pagination", context)
    if not base:
        return ""
    cl = context["cl"]
    paginator = cl.paginator
    return digest(
        base,
        type(paginator).__module__,
        type(paginator).__qualname__,
        getattr(paginator, "template_name", None),
        paginator.per_page,
        cl.page_num,
        len(cl.result_list),
        cl.result_count,
        cl.full_result_count,
        bool(cl.show_all),
        bool(cl.can_show_all),
        bool(cl.multi_page),
        bool(cl.formset),
        bool(cl.is_popup),
        bool(getattr(cl.model_admin, "list_fullwidth", False)),
    )


# What unfold's header shows on a changelist, from the page's context: the
# environment label, the title's parts, the list's actions and the HTML the
# page captured for the header (object tools, action items).
HEADER_CONTEXT = (
    "environment",
    "actions_list",
    "actions_list_hide_default",
    "actions_detail",
    "actions_detail_hide_default",
    "actions_items",
    "nav_global",
    "nav_global_side",
    "show_back_button",
    "is_fullwidth",
    "is_popup",
    "is_nav_sidebar_enabled",
    "has_permission",
)


def list_header_key(context) -> str:
    """Key the page header of a changelist (unfold/helpers/header.html).

    Its title is the app and the model (links to their lists), with the
    counts of a filtered list when its paginator counts; the rest comes from
    the context (HEADER_CONTEXT). A page about one object (a change form)
    is never memoised here. As list_part_key: the payment list, no search.
    """
    base = list_context_key("header", context)
    if not base or any(
        context.get(name) for name in ("object", "original", "adminform")
    ):
        return ""
    cl = context["cl"]
    return digest(
        base,
        getattr(request_of(context), "current_app", None),
        tuple(plain(context.get(name), str) for name in HEADER_CONTEXT),
        cl.result_count,
        cl.full_result_count,
        bool(cl.show_full_result_count),
        bool(cl.is_popup),
        type(cl.paginator).__qualname__,
        bool(getattr(cl.model_admin, "list_fullwidth", False)),
    )


# What unfold's avatar reads of a user (a plain Django user has none of these).
AVATAR_FIELDS = (
    "avatar_url",
    "avatar_badge_count",
    "avatar_badge_variant",
    "avatar_badge_url",
)


def user_menu_key(context) -> str:
    """Key the sidebar's user menu (unfold/helpers/navigation_user.html).

    The signed-in user's name, e-mail and avatar, the theme switch, the
    account links and the logout form (its CSRF token is a hole, see
    `remember`). Not memoised with the language switch, whose forms name the
    page being shown.
    """
    request = request_of(context)
    user = getattr(request, "user", None)
    if not getattr(user, "is_authenticated", False) or context.get("show_languages"):
        return ""
    full_name = getattr(user, "get_full_name", None)
    return digest(
        "user-menu",
        # Its links ({% url 'admin:logout' %}) follow the admin site shown.
        getattr(request, "current_app", None),
        type(user).__qualname__,
        user.pk,
        user.get_username(),
        full_name() if callable(full_name) else None,
        getattr(user, "email", None),
        user.has_usable_password(),
        tuple(plain(getattr(user, name, None), str) for name in AVATAR_FIELDS),
        plain(context.get("theme"), str),
        plain(context.get("site_url"), str),
        plain(context.get("account_links"), str),
        plain(context.get("extra_userlinks"), str),
    )


def skeleton_key(part: str, context) -> str:
    """Key a part of unfold's page skeleton drawn from the site's settings.

    "head": the fonts, styles and scripts every page links (the static files'
    URLs, fixed by the static files settings); "colors": the theme's colour
    variables. templates/unfold/layouts/skeleton.html memoises both.
    """
    if part == "head":
        shown = (
            settings.STATIC_URL,
            settings.DEBUG,
            plain(settings.STORAGES.get("staticfiles"), str),
            plain(context.get("styles"), str),
            plain(context.get("scripts"), str),
            plain(context.get("site_favicons"), str),
        )
    elif part == "colors":
        shown = (
            plain(context.get("colors"), str),
            plain(context.get("border_radius"), str),
        )
    else:
        return ""
    return digest("skeleton", part, shown)


def staff_key(part: str, context) -> str:
    """Key a fragment that shows only to staff and names the current admin site."""
    request = context.get("request")
    if request is None:
        return ""
    user = getattr(request, "user", None)
    return digest(
        part,
        bool(getattr(user, "is_staff", False)),
        getattr(request, "current_app", None),
        "Macintosh" in request.META.get("HTTP_USER_AGENT", ""),
        bool(context.get("command_show_history")),
    )


# unfold's templates memoised by MemoLoader, with the function that keys each.
# (The sidebar's entries are memoised by templates/unfold/helpers/navigation.html
# around its include of app_list.html: measured, that is 1.8 ms a page faster
# than memoising inside app_list.html.)
MEMOISED_TEMPLATES: dict[str, Callable[[Any], str]] = {
    "unfold/helpers/change_list_filter_vertical.html": filters_key,
    "unfold/filters/filters_field.html": list_filter_key,
    "unfold/filters/filters_date_range.html": list_filter_key,
    "unfold/helpers/change_list_actions.html": list_actions_key,
    "admin/import_export/change_list_export_item.html": export_item_key,
    "admin/search_form.html": search_form_key,
    "unfold/helpers/header.html": list_header_key,
    "unfold/helpers/pagination.html": pagination_key,
    "unfold/helpers/navigation_user.html": user_menu_key,
    "unfold/helpers/command.html": lambda context: staff_key("command", context),
    "unfold/helpers/shortcuts.html": lambda context: staff_key("shortcuts", context),
}


def template_key(template_name: str, context) -> str:
    """Return the memo key of one of MEMOISED_TEMPLATES in `context`."""
    return MEMOISED_TEMPLATES[template_name](context)


class MemoLoader(AppDirectoriesLoader):
    """Load templates from the apps' directories, MEMOISED_TEMPLATES wrapped.

    Only unfold's copy of a template is wrapped; a template that extends
    another cannot be (`{% extends %}` must come first) and is refused.
    """

    def get_contents(self, origin) -> str:
        source = super().get_contents(origin)
        name = origin.template_name
        if (
            name not in MEMOISED_TEMPLATES
            or UNFOLD_DIR not in Path(origin.name).parents
        ):
            return source
        if "{% extends" in source:
            raise ImproperlyConfigured(f"{name} extends another template")
        return (
            "{% load payments_admin %}"
            f'{{% template_memo_key "{name}" as memo_key %}}{{% memo memo_key %}}'
            f"{source}{{% endmemo %}}"
        )


def list_part_key(part: str, cl, request) -> str:
    """Key a part of a changelist (filter panel, headers, action bar…) by the query string.

    Only for an admin that sets `memo_list_parts`: its filters' choices and
    its columns must come from code, never from the database or the user.
    Never for a search.
    """
    admin = cl.model_admin
    if not getattr(admin, "memo_list_parts", False) or request is None:
        return ""
    if request.GET.get(SEARCH_VAR, "").strip():
        # A search term (an e-mail address, say) is kept out of the store; and
        # each search is a page of its own, rarely asked for twice.
        return ""
    return digest(
        part,
        admin.admin_site.name,
        cl.opts.label,
        # Per user: the row checkbox column only shows to those with an action.
        tuple(cl.list_display),
        tuple(sorted((k, tuple(sorted(v))) for k, v in request.GET.lists())),
    )


def _asset_keys(paths) -> tuple | None:
    keys = []
    for path in paths:
        if not isinstance(path, MediaAsset):
            return None  # an object rendering itself: not keyable
        keys.append(
            (
                type(path).__qualname__,
                path._path,
                tuple(sorted(path.attributes.items())),
            )
        )
    return tuple(keys)


def media_key(media: Media) -> str:
    """Key a form Media's HTML by its lists of files as declared, before merging."""
    css = []
    for declared in media._css_lists:
        for medium, paths in sorted(declared.items()):
            css.append((medium, _asset_keys(paths)))
    js = [_asset_keys(paths) for paths in media._js_lists]
    if any(keys is None for _, keys in css) or any(keys is None for keys in js):
        return ""
    return digest("media", tuple(css), tuple(js))


class MemoisedMedia:
    """A form Media for a template, its HTML rendered once per set of files.

    Django merges the declared lists and asks the static files storage for
    each file's URL on every page (0.5 ms on the payment list); the HTML
    depends on those lists only (and on the storage, fixed for a process).
    Reads as Media does in a template: `{{ media }}`, `{{ media.js }}`,
    `{{ media.css }}`.
    """

    def __init__(self, media: Media):
        self.media = media
        self.key = media_key(media)

    def __getitem__(self, name: str) -> SafeString:
        if name not in MEDIA_TYPES:
            raise KeyError(name)
        return self._remember(name, lambda: str(self.media[name]))

    def render(self) -> SafeString:
        return self._remember("all", lambda: str(self.media.render()))

    __str__ = __html__ = render

    def _remember(self, part: str, render: Callable[[], str]) -> SafeString:
        key = f"{self.key}:{part}" if self.key else ""
        return mark_safe(FRAGMENTS.remember(key, render))  # noqa: S308  (Media's HTML)
