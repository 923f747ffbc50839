from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The staff audit log: who did what, hash-chained, append-only."""

    name = "audit"
    verbose_name = "Audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals

        signals.connect()
