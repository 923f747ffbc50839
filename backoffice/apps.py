from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    """The project itself: its system checks on settings."""

    name = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
