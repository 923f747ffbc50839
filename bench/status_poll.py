"""Benchmark: customers polling payment status while MPGS hangs every request.

2,000 pending MPGS payments; C client threads poll
`GET /api/payments/status/<ref_id>/` for random payments while a few other
clients load `GET /checkout/`, against gunicorn (gthread workers) on
PostgreSQL. The fake MPGS (fakeproviders/mpgs.py) runs in this process.

Baseline, in the same run against the same server: the same load while the
fake MPGS answers at once. Measured: the same load while it hangs every
Retrieve Order far longer than the run. Each status poll that refreshes
(once per payment per STATUS_REFRESH_SECONDS) gives the provider at most
STATUS_REFRESH_BUDGET_SECONDS, then answers the stored status.

    DATABASE_URL=postgres://... .venv/bin/python -m bench.status_poll \
        [--scenario spread|per-address] [--seconds 15] [--clients 64] \
        [--page-clients 4] [--payments 2000] [--workers 4] [--threads N]

A gthread worker accepts connections whatever its free threads, and keep-alive
clients stay with the worker that accepted them: one worker may hold most of
the pollers. With fewer threads than the requests it holds, a request waits
for a thread behind requests that are waiting out their budget, and takes two
budgets (p99 ≈ 4.5 s with 4 x 32 threads). So each worker gets a thread per
client by default.

Targets: status p99 ≤ 2.5 s and /checkout/ p99 ≤ 200 ms while MPGS hangs,
0 × 5xx.

`--scenario per-address` (issue 22): the deploy guide's server (gthread,
8 threads per worker) and C client addresses (X-Forwarded-For behind
TRUSTED_PROXY_COUNT=1, RATE_LIMIT_STATUS at its default 120/m), each polling
its own 200 distinct payments (`--payments`) at the limit, 2 polls a second
(`--poll-rate`): nearly every poll is a refresh, which would hold a thread for
the whole budget. The other load is `GET /health/`, 5 a second per client
(`--page-rate`). At most STATUS_REFRESH_CONCURRENCY refreshes per process wait
on MPGS; the other polls answer the stored status at once. Targets: status
p99 ≤ 2.5 s and /health/ p99 ≤ 200 ms while MPGS hangs, 0 × 5xx. Needs PostgreSQL (DATABASE_URL); its tables are flushed. The server
opens a database connection per request in flight (CONN_MAX_AGE=0): about
clients + page clients connections.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import tempfile
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench  # noqa: E402
from bench.webhooks import (  # noqa: E402
    Load,
    free_port,
    start_server,
    stop_server,
    wait_until_up,
)

HANG_SECONDS = 600.0
SEED = 20261129


class Paced:
    """A request source for Load: each client thread sends `rate` requests a second.

    `make(index)` builds the request of the index-th client thread (its own
    address and payments); a thread late after a slow answer sends at once.
    """

    def __init__(self, rate: float, clients: int, make):
        self.interval = 1.0 / rate
        self.clients = clients
        self.make = make
        self.local = threading.local()
        self.counter = itertools.count()

    def __call__(self):
        state = self.local
        if not hasattr(state, "index"):
            state.index = next(self.counter) % self.clients
            state.due = time.perf_counter() + random.random() * self.interval
        wait = state.due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        state.due = max(state.due + self.interval, time.perf_counter())
        return self.make(state.index)


class Mixed:
    """Two closed-loop loads at once: status pollers and /checkout/ page loads."""

    def __init__(self, pollers: Load, pages: Load):
        self.pollers, self.pages = pollers, pages

    def run(self) -> Mixed:
        threads = [
            threading.Thread(target=load.run) for load in (self.pollers, self.pages)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self


def describe(label: str, load: Load) -> str:
    return (
        f"{label}: {len(load.latencies)} requests in {load.elapsed:.1f} s = "
        f"{load.rps:.0f} req/s, p50 {load.ms(0.50):.0f} ms, p99 {load.ms(0.99):.0f} "
        f"ms, max {load.ms(1.0):.0f} ms; codes {dict(sorted(load.codes.items(), key=str))}"
    )


def server_errors(load: Load) -> int:
    return sum(
        n for code, n in load.codes.items() if not isinstance(code, int) or code >= 500
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        choices=("spread", "per-address"),
        default="spread",
        help="spread: 2,000 payments, /checkout/ alongside; per-address: 200 "
        "payments from one address, /health/ alongside, 8 threads per worker",
    )
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--page-clients", type=int, default=4)
    parser.add_argument("--payments", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--poll-rate", type=float, default=2.0)
    parser.add_argument("--page-rate", type=float, default=5.0)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads per worker (default: spread, clients + page clients, see "
        "above; per-address, 8 as in the deploy guide)",
    )
    args = parser.parse_args()
    per_address = args.scenario == "per-address"
    args.payments = args.payments or (200 if per_address else 2000)
    args.threads = args.threads or (
        8 if per_address else args.clients + args.page_clients
    )
    page_path = "/health/" if per_address else "/checkout/"

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(
            "bench.status_poll needs PostgreSQL: set DATABASE_URL=postgres://... "
            "(a throw-away database: its tables are flushed)"
        )

    from fakeproviders import FakeProviderServer

    fake = FakeProviderServer().start()
    mpgs = fake.gateway_settings()["mpgs"]
    os.environ.update(
        SECRET_KEY=bench.SECRET_KEY,
        STATIC_ROOT=os.environ.get("STATIC_ROOT", "/tmp/bench-status-static"),
        DEBUG="false",
        PAYMENT_GATEWAYS="mpgs",
        MPGS_API_BASE_URL=str(mpgs["api_base_url"]),
        MPGS_MERCHANT_ID=str(mpgs["merchant_id"]),
        MPGS_API_PASSWORD=str(mpgs["api_password"]),
        MPGS_WEBHOOK_SECRET=str(mpgs["webhook_secret"]),
        LOG_LEVEL="ERROR",
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        RATE_LIMIT_CREATE="",
        # per-address: one address per client thread, at the default limit.
        RATE_LIMIT_STATUS="120/m" if per_address else "",
        TRUSTED_PROXY_COUNT="1" if per_address else "0",
        CONN_MAX_AGE="0",
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from payments.models import Payment, Plan

    # 1. setup --------------------------------------------------------------------
    print("using", connection.settings_dict["NAME"], "(tables are flushed)")
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    # DEBUG is off: /checkout/ names the hashed files of collectstatic's manifest.
    call_command("collectstatic", interactive=False, verbosity=0)
    plan = Plan.objects.create(
        code="bench", name="Bench", price=Decimal("19.00"), currency="USD"
    )
    expiry = timezone.now() + timedelta(hours=2)
    payments = Payment.objects.bulk_create(
        [
            Payment(
                plan=plan,
                email=f"p{i}@example.com",
                amount=plan.price,
                currency=plan.currency,
                payment_gateway="mpgs",
                status=Payment.Status.PENDING,
                gateway_session_id=f"SESSION{i:06d}",
                expiry_datetime=expiry,
            )
            for i in range(args.payments * (args.clients if per_address else 1))
        ],
        batch_size=1000,
    )
    refs = [payment.ref_id for payment in payments]
    connection.close()
    budget = settings.STATUS_REFRESH_BUDGET_SECONDS
    print(
        f"scenario {args.scenario}: {len(refs)} pending MPGS payments; "
        f"STATUS_REFRESH_SECONDS {settings.STATUS_REFRESH_SECONDS}, "
        f"STATUS_REFRESH_BUDGET_SECONDS {budget}, STATUS_REFRESH_CONCURRENCY "
        f"{settings.STATUS_REFRESH_CONCURRENCY}"
    )

    # 2. gunicorn -----------------------------------------------------------------
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(SEED)
    rng_lock = threading.Lock()

    def status_request():
        with rng_lock:
            ref_id = rng.choice(refs)
        return ("GET", f"{base}/api/payments/status/{ref_id}/", None, None, None)

    def page_request():
        return ("GET", f"{base}{page_path}", None, None, None)

    if per_address:
        # Client i polls its own slice of payments from its own address.
        own = [refs[i :: args.clients] for i in range(args.clients)]

        def address_request(index: int):
            with rng_lock:
                ref_id = rng.choice(own[index])
            headers = {"X-Forwarded-For": f"10.1.{index // 250}.{index % 250 + 1}"}
            url = f"{base}/api/payments/status/{ref_id}/"
            return ("GET", url, None, headers, None)

        status_request = Paced(args.poll_rate, args.clients, address_request)
        page_request = Paced(
            args.page_rate,
            args.page_clients,
            lambda _index: ("GET", f"{base}{page_path}", None, None, None),
        )

    def phase() -> Mixed:
        return Mixed(
            Load(args.clients, args.seconds, status_request),
            Load(args.page_clients, args.seconds, page_request),
        ).run()

    with tempfile.TemporaryFile() as log:
        server = start_server(args.workers, port, log, threads=args.threads, timeout=60)
        try:
            wait_until_up(server, f"{base}{page_path}")
            Load(args.page_clients, 1.0, page_request).run()  # warm every worker up

            # 3. baseline: MPGS answers at once --------------------------------------
            baseline = phase()
            # A fresh throttle window: every payment may refresh again.
            Payment.objects.update(last_refreshed_at=None)
            connection.close()

            # 4. measured: MPGS hangs every Retrieve Order ---------------------------
            fake.add_fault("mpgs:order", "timeout", times=10**9, seconds=HANG_SECONDS)
            asked = fake.count("mpgs:order")
            measured = phase()
            hung_calls = fake.count("mpgs:order") - asked
            fake.clear_faults()
        finally:
            stop_server(server)
            fake.stop()
        log.seek(0)
        server_log = log.read().decode("utf-8", "replace")

    # 5. report -------------------------------------------------------------------
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads; "
        f"{args.clients} status pollers + {args.page_clients} {page_path} clients "
        f"in this process; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end (other work on the machine counts)"
    )
    print(describe("baseline status (MPGS answers)", baseline.pollers))
    print(describe(f"baseline {page_path}", baseline.pages))
    print(describe("measured status (MPGS hangs)", measured.pollers))
    print(describe(f"measured {page_path}", measured.pages))
    print(f"MPGS Retrieve Order calls that hung: {hung_calls}")
    status_p99 = measured.pollers.ms(0.99)
    page_p99 = measured.pages.ms(0.99)
    base_status_p99 = baseline.pollers.ms(0.99) or 1.0
    base_page_p99 = baseline.pages.ms(0.99) or 1.0
    print(
        f"ratios: status p99 {status_p99 / base_status_p99:.1f}x the baseline "
        f"({status_p99 / 1000 / budget:.2f}x the budget); {page_path} p99 "
        f"{page_p99 / base_page_p99:.2f}x the baseline; status throughput "
        f"{measured.pollers.rps / (baseline.pollers.rps or 1):.2f}x"
    )
    errors = sum(
        server_errors(load)
        for load in (*vars(baseline).values(), *vars(measured).values())
    )
    targets = {
        "status p99 ≤ 2.5 s": status_p99 <= 2500,
        f"{page_path} p99 ≤ 200 ms": page_p99 <= 200,
        "0 × 5xx": errors == 0,
    }
    print(
        "B-STATUS-POLL targets: "
        + ", ".join(
            f"{name} {'met' if ok else 'NOT met'}" for name, ok in targets.items()
        )
    )
    if not all(targets.values()):
        if server_log.strip():
            print("gunicorn log (tail):\n" + server_log[-3000:], file=sys.stderr)
        sys.exit("FAILED: " + ", ".join(name for name, ok in targets.items() if not ok))


if __name__ == "__main__":
    main()
