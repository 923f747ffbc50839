"""The admin site: unfold's, without the work a page does not use.

Installed as Django's default site (`backoffice.apps.AdminConfig`), so
`admin.site` is this class. Every page of unfold's site builds, before it
renders anything, Django's list of every app and model (`available_apps`) and
the sidebar's entries. Measured on the payment list (docs/benchmarks.md):

- `available_apps` is read only by the "All applications" panel
  (`SIDEBAR["show_all_applications"]`, off here), so it is built on first
  use, not for every page;
- unfold asks each sidebar entry's permission callback through `lazy()`,
  which defines a new class per call, then compares the proxy to True: the
  callback is called directly here, with the same result;
- each entry's lazy link is reversed, on every page, to test it for truth and
  to decide which entry is active: here it is reversed once per URLconf,
  script prefix and language, and the entry holds the string.

What the pages show is unchanged; tests/test_admin_site.py compares it with
unfold's own site.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from django.urls import get_script_prefix, get_urlconf
from django.utils.functional import Promise, SimpleLazyObject
from django.utils.module_loading import import_string
from django.utils.translation import get_language
from unfold.sites import UnfoldAdminSite

# Resolved lazy links: (id, URLconf, script prefix, language) -> path. The
# lazy objects are the settings' own and live as long as the process; at most
# MAX_LINKS are kept, then links are reversed on each use as unfold does.
LINKS: dict[tuple, tuple[Promise, str]] = {}
MAX_LINKS = 1024


def resolved(link: Any) -> Any:
    """Return a lazy link as the string it stands for, reversed at most once."""
    if not isinstance(link, Promise):
        return link
    key = (id(link), get_urlconf(), get_script_prefix(), get_language())
    found = LINKS.get(key)
    if found is not None and found[0] is link:
        return found[1]
    text = str(link)
    if len(LINKS) < MAX_LINKS:
        LINKS[key] = (link, text)
    return text


class BackofficeAdminSite(UnfoldAdminSite):
    def get_app_list(self, request: HttpRequest, app_label: str | None = None):
        """Every app's models, built when first read (see the module's note)."""
        if app_label is not None:
            return super().get_app_list(request, app_label)
        return SimpleLazyObject(
            lambda: super(BackofficeAdminSite, self).get_app_list(request)
        )

    def _call_permission_callback(
        self, callback: str | Callable | None, request: HttpRequest
    ) -> bool:
        if callback is None:
            return True
        if isinstance(callback, str):
            try:
                callback = import_string(callback)
            except (ImportError, ValueError):
                return False
        if not callable(callback):
            return False
        return callback(request) == True  # noqa: E712  (unfold's test, kept)

    def _get_navigation_items(
        self, request: HttpRequest, items: list[dict], tabs: list[dict] | None = None
    ) -> list:
        # This request's copy of the entries: unfold tests each lazy link for
        # truth (a reverse() per entry and page) before anything else.
        for item in items:
            if "link" in item:
                item["link"] = resolved(item["link"])
        return super()._get_navigation_items(request, items, tabs)

    def _get_is_active(
        self, request: HttpRequest, link: str | Callable, is_tab: bool = False
    ) -> bool:
        return super()._get_is_active(request, resolved(link), is_tab)
