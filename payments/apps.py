from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save, pre_save


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_q.models import Schedule

        # At the model level too, superusers and code included: the admin form
        # is only one way to write a schedule.
        pre_save.connect(
            _check_schedule, sender=Schedule, dispatch_uid="payments-schedule-guard"
        )
        # The sidebar's review badge is counted at most every few seconds; a
        # payment saved or deleted through the ORM (the services write with
        # update() and forget it themselves) has it counted afresh.
        from . import selectors
        from .models import Payment

        for name, signal in (("saved", post_save), ("deleted", post_delete)):
            signal.connect(
                selectors.forget_review_badge,
                sender=Payment,
                dispatch_uid=f"payments-review-badge-{name}",
            )


def _check_schedule(sender, instance, **kwargs) -> None:
    from . import tasks
    from .services.schedules import schedule_validate

    schedule_validate(
        allowed=tasks.SCHEDULABLE_TASKS,
        func=instance.func,
        hook=instance.hook,
        args=instance.args,
        kwargs=instance.kwargs,
        intended_date_kwarg=instance.intended_date_kwarg,
    )
