"""Create or update the Support, Operator and Finance groups (idempotent)."""

from django.core.management.base import BaseCommand, CommandError

from audit import log
from payments.roles import ROLES, roles_setup


class Command(BaseCommand):
    help = "Create the back-office groups with exactly their permissions (rerunnable)."

    def handle(self, *args, **options):
        try:
            changes = roles_setup()
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        for change in changes:
            if change.created or change.added or change.removed:
                log.record(
                    log.ROLE_CHANGED,
                    actor="manage.py setup_roles",
                    target=("auth.group", change.group),
                    detail={
                        "created": change.created,
                        "added": change.added,
                        "removed": change.removed,
                    },
                )
            verb = "created" if change.created else "updated"
            self.stdout.write(
                f"{verb} {change.group}: {len(ROLES[change.group])} permissions "
                f"(+{change.added} -{change.removed})"
            )
