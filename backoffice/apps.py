from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class BackofficeConfig(AppConfig):
    """The project itself: its system checks on settings."""

    name = "backoffice"
    default = True
    verbose_name = "Back office"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)


class AdminConfig(admin_apps.AdminConfig):
    """Django's admin, with the project's site as the default one."""

    default = False  # named in INSTALLED_APPS, in place of django.contrib.admin
    default_site = "backoffice.sites.BackofficeAdminSite"
