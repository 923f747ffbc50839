"""Run the web server, a qcluster and the simulated providers; one Ctrl-C stops all.

With DEBUG on (make run), the fake provider server (`python -m fakeproviders`)
starts first on loopback and the other two get an environment that points
every gateway at it, with the credentials it accepts (fakeproviders/demo.py).
With DEBUG off no fake starts and the environment is left as it is.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

GRACE_SECONDS = 5
PROVIDERS_START_SECONDS = 15


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Start runserver and qcluster side by side (make run)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")
        parser.add_argument(
            "--providers-port",
            type=int,
            default=None,
            help="loopback port of the simulated providers (default: --port + 1)",
        )

    def handle(self, *args, host, port, providers_port, **options):
        base = f"http://{host}:{port}"
        if providers_port is None:
            providers_port = int(port) + 1
        if settings.DEBUG:
            from fakeproviders.demo import demo_environment, providers_url

            providers = f"simulated at {providers_url(providers_port)} (CoinPayments, MPGS, HyperPay, Stripe)"
            env = {
                **os.environ,
                **demo_environment(port=providers_port, site_url=base),
            }
        else:
            providers = "real (DEBUG is off: no simulated providers)"
            env = dict(os.environ)
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
                    f"  Providers:   {providers}",
                    "  Ctrl-C stops the web server, the job cluster and the providers.",
                    "",
                ]
            )
        )
        # Explicit handlers: a shell may start this with SIGINT ignored.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        manage = [sys.executable, "manage.py"]
        children: list[subprocess.Popen] = []
        try:
            if settings.DEBUG:
                children.append(self._start_providers(providers_port, base, env))
            # Each child leads its own process group so the whole tree can be
            # killed: a qcluster may not exit on SIGTERM alone.
            children.append(
                subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                    [*manage, "runserver", f"{host}:{port}"],
                    start_new_session=True,
                    env=env,
                )
            )
            children.append(
                subprocess.Popen(  # noqa: S603
                    [*manage, "qcluster"], start_new_session=True, env=env
                )
            )
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)

    def _start_providers(self, port: int, site_url: str, env) -> subprocess.Popen:
        """Start the fake provider server and wait until it accepts connections."""
        argv = [sys.executable, "-m", "fakeproviders", "--port", str(port)]
        argv += ["--site-url", site_url]
        if settings.DEMO_PROVIDERS_STATE:
            state = Path(settings.DEMO_PROVIDERS_STATE)
            state.parent.mkdir(parents=True, exist_ok=True)
            argv += ["--state", str(state)]
        child = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv,
            start_new_session=True,
            env=env,
        )
        deadline = time.monotonic() + PROVIDERS_START_SECONDS
        while child.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return child
            except OSError:
                time.sleep(0.1)
        self._stop([child])
        raise CommandError(
            f"the simulated providers did not start on port {port}: "
            "is it in use? Choose another with --providers-port."
        )

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
        self.stdout.write("stopped " + ", ".join(self._names(children)))

    @staticmethod
    def _names(children) -> list[str]:
        names = {
            "fakeproviders": "the simulated providers",
            "runserver": "the web server",
            "qcluster": "the job cluster",
        }
        return [
            next((v for k, v in names.items() if k in child.args), "a child")
            for child in children
        ]
