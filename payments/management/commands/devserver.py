"""Run the web server and a qcluster together; one Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

GRACE_SECONDS = 5


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Start runserver and qcluster side by side (make run)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args, host, port, **options):
        base = f"http://{host}:{port}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"  Checkout:    {base}/checkout/",
                    f"  Back office: {base}/admin/",
                    "  Logins:      admin / demo-admin-2026, support / demo-support-2026,",
                    "               operator / demo-operator-2026, finance / "
                    "demo-finance-2026 (demo data only)",
                    f"  Broker:      {'redis' if 'redis' in settings.Q_CLUSTER else 'ORM (database)'}",
                    "  Ctrl-C stops the web server and the job cluster.",
                    "",
                ]
            )
        )
        # Explicit handlers: a shell may start this with SIGINT ignored.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        manage = [sys.executable, "manage.py"]
        children = [
            # Each child leads its own process group so the whole tree can be
            # killed: a qcluster may not exit on SIGTERM alone.
            subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [*manage, "runserver", f"{host}:{port}"], start_new_session=True
            ),
            subprocess.Popen([*manage, "qcluster"], start_new_session=True),  # noqa: S603
        ]
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)

    def _stop(self, children):
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        self.stdout.write("stopped web server and job cluster")
