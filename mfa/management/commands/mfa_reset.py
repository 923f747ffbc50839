"""Break glass: remove a user's second-factor devices (audited)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mfa.services import mfa_reset


class Command(BaseCommand):
    help = (
        "Remove every second-factor device of USER, so their next login enrols "
        "afresh. For a sole superuser who lost their device; recorded in the "
        "audit log."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--reason", default="", help="Why (kept in the audit log).")

    def handle(self, *args, username, reason, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        removed = mfa_reset(
            user=user,
            actor="manage.py mfa_reset",
            reason=reason or "break-glass reset from the command line",
        )
        self.stdout.write(
            f"removed {removed} device(s) of {username}; they enrol again at "
            "their next login"
        )
