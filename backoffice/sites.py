"""The admin site: unfold's, with Django's app list built only when read.

Installed as Django's default site (`backoffice.apps.AdminConfig`), so
`admin.site` is this class. Every page of unfold's site builds, before it
renders anything, Django's list of every app and model (`available_apps`);
only the "All applications" panel reads it (`SIDEBAR["show_all_applications"]`,
off here), so it is built on first use through Django's public
`AdminSite.get_app_list`. No private method of unfold is overridden here.

tests/test_admin_site.py compares the sidebar with unfold's own site.

Every admin registered here records its writes and actions in the staff audit
log (audit.admin_hooks), and the second-factor pages live under the site's
URLs (the mfa app).
"""

from __future__ import annotations

from django.contrib.admin import ModelAdmin
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject
from unfold.sites import UnfoldAdminSite

from audit.admin_hooks import audited


class BackofficeAdminSite(UnfoldAdminSite):
    def get_app_list(self, request: HttpRequest, app_label: str | None = None):
        """Every app's models, built when first read (see the module's note)."""
        if app_label is not None:
            return super().get_app_list(request, app_label)
        return SimpleLazyObject(
            lambda: super(BackofficeAdminSite, self).get_app_list(request)
        )

    def register(self, model_or_iterable, admin_class=None, **options):
        """Register as Django does, with the audit log's hooks on the admin."""
        return super().register(
            model_or_iterable, audited(admin_class or ModelAdmin), **options
        )

    def get_urls(self):
        from mfa import views as mfa

        return [*mfa.urls(self), *super().get_urls()]
