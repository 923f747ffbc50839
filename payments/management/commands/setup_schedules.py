"""Create or update the named django-q2 schedules, idempotently."""

from django.core.management.base import BaseCommand
from django.utils import timezone
from django_q.models import Schedule

from audit import log

SCHEDULES = (
    ("reconcile-pending-payments", "payments.tasks.reconcile_pending", 2),
    ("reconcile-pending-refunds", "payments.tasks.reconcile_refunds", 10),
    ("expire-overdue-payments", "payments.tasks.expire_overdue", 5),
    # Export files past EXPORT_RETENTION_DAYS.
    ("purge-expired-exports", "payments.tasks.purge_exports", 60),
    # The dashboard's daily rollups of the last ROLLUP_WINDOW_DAYS days.
    ("refresh-dashboard-rollups", "payments.tasks.refresh_rollups", 5),
    # Audit entries past AUDIT_RETENTION_DAYS (the chain is anchored).
    ("prune-audit-log", "payments.tasks.prune_audit_log", 24 * 60),
    # Forged or misconfigured deliveries past REJECTED_DELIVERY_RETENTION_DAYS.
    ("prune-rejected-deliveries", "payments.tasks.prune_rejected_deliveries", 60),
    # Refunds left awaiting approval past REFUND_APPROVAL_HOURS (issue 23).
    ("lapse-refund-approvals", "payments.tasks.lapse_refund_approvals", 15),
)


class Command(BaseCommand):
    help = (
        "Create or update the reconciliation, expiry, export-purge, dashboard "
        "rollup, audit-retention, rejected-delivery pruning and refund-approval "
        "lapse schedules (safe to rerun)."
    )

    def handle(self, *args, **options):
        for name, func, minutes in SCHEDULES:
            schedule, created = Schedule.objects.update_or_create(
                name=name,
                defaults={
                    "func": func,
                    "schedule_type": Schedule.MINUTES,
                    "minutes": minutes,
                    "repeats": -1,
                },
                create_defaults={
                    "func": func,
                    "schedule_type": Schedule.MINUTES,
                    "minutes": minutes,
                    "repeats": -1,
                    "next_run": timezone.now(),
                },
            )
            log.record(
                log.SCHEDULE_CHANGED,
                actor="manage.py setup_schedules",
                target=schedule,
                detail={"name": name, "func": func, "minutes": minutes},
            )
            verb = "created" if created else "updated"
            self.stdout.write(f"{verb} {name}: {func} every {minutes} min")
