from django.apps import AppConfig


class MfaConfig(AppConfig):
    """The second factor after the password (issue 23, item 1); no models of its own."""

    name = "mfa"
    verbose_name = "Second factor"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from . import services

        user_logged_in.connect(
            services.password_step_passed, dispatch_uid="mfa-password-step"
        )
