"""Recount the dashboard's daily rollups over a range of local days."""

from __future__ import annotations

import argparse
from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from payments import services


def local_date(text: str) -> date:
    """Parse a YYYY-MM-DD argument (argparse reports the error by option)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (YYYY-MM-DD)"
        ) from None


class Command(BaseCommand):
    help = (
        "Recount the dashboard's daily rollups (paid, created per status, "
        "refunded) of the local days --from to --to, both included; by default "
        "the scheduled window, ROLLUP_WINDOW_DAYS up to today."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--from",
            dest="first",
            type=local_date,
            help="first local day, YYYY-MM-DD (default: the start of the window)",
        )
        parser.add_argument(
            "--to",
            dest="last",
            type=local_date,
            help="last local day, YYYY-MM-DD (default: today)",
        )

    def handle(self, *args, first: date | None, last: date | None, **options):
        today = timezone.localdate()
        window_first, _ = services.rollups_window()
        first = first or window_first
        last = last or today
        if last > today:
            raise CommandError(f"--to {last} is after today ({today})")
        if first > last:
            raise CommandError(f"--from {first} is after --to {last}")
        days = (last - first).days + 1
        with tqdm(total=days, desc="rollups", unit="day", file=self.stderr) as bar:

            def progress(done: int) -> None:
                bar.update(done - bar.n)

            run = services.rollups_rebuild(first=first, last=last, progress=progress)
        self.stdout.write(
            f"recounted {run.days} day(s), {run.first} to {run.last}: "
            f"{run.rows} rollup rows ({timezone.get_current_timezone_name()})"
        )
