"""Walk the audit log's hash chain; name the first entry changed, removed or moved."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit import chain
from audit.models import AuditEntry


class Command(BaseCommand):
    help = (
        "Check every audit entry against its hash and the one before it. Exits "
        "non-zero, naming the first broken entry, when the log was tampered with."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-progress", action="store_true", help="No progress bar."
        )

    def handle(self, *args, no_progress=False, **options):
        with tqdm(
            total=AuditEntry.objects.count(),
            unit="entry",
            disable=no_progress,
            desc="verifying",
            file=self.stderr,
        ) as bar:
            result = chain.verify(progress=bar.update)
        if not result.ok:
            raise CommandError(f"audit log broken: {result.problem}")
        if result.head_seq is None:
            self.stdout.write("audit log empty: nothing to verify")
            return
        self.stdout.write(
            f"audit log intact: {result.checked} entries checked; head is "
            f"#{result.head_seq} with hash {result.head_hash}"
        )
