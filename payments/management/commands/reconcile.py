"""Run one reconciliation cycle in the foreground, with a progress bar."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from tqdm import tqdm

from payments import services


class Command(BaseCommand):
    help = (
        "Settle due pending payments with their providers and expire overdue ones "
        "(one cycle, recorded as a reconciliation run)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=20000)

    def handle(self, *args, limit: int, **options):
        due = min(limit, services.due_count())
        with tqdm(
            total=due, desc="reconciling", unit="payment", file=self.stderr
        ) as bar:

            def progress(done: int) -> None:
                bar.update(done - bar.n)

            run = services.reconcile_cycle(
                trigger="command", limit=limit, progress=progress
            )
            bar.total = max(bar.n, run.checked)
            bar.refresh()
        self.stdout.write(
            f"run #{run.pk}: checked {run.checked}, changed {run.changed}, "
            f"expired {run.expired}, errors {run.errors} in {run.duration_ms} ms"
        )
        if run.message:
            self.stdout.write(f"problems:\n{run.message}")
