"""Benchmark: signed sandbox notifications POSTed to gunicorn, 10 % duplicates.

Baseline, in the same run against the same server: the same closed-loop load
generator on `GET /api/payments/status/<unknown ref>/` (a JSON 404 after one
indexed query). Measured: `POST /api/webhooks/sandbox/`, one signed "paid"
notification per pending payment plus 10 % exact re-sends, until they run out
or the time is up. Prints both, the ratio, and checks the database: one
APPLIED delivery and one status change per event, no 5xx.

    DATABASE_URL=postgres://... .venv/bin/python -m bench.webhooks \
        [--seconds 15] [--workers 4] [--clients 16] [--payments 3000] \
        [--apply inline|queued]

With `--apply queued` the server stores and acknowledges each notification
(WEBHOOK_APPLY=queued) and one `qcluster` process, started after the
baseline, applies them in batches; the run then waits for every stored
notification to be applied and reports the received-to-applied lag.

Needs PostgreSQL (DATABASE_URL); its tables are flushed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench  # noqa: E402

WEBHOOK_SECRET = "bench-webhook-secret"
DUPLICATE_SHARE = 0.10
SEED = 20261127


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of already sorted values (0 if empty)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(share * len(values)))
    return values[min(rank, len(values)) - 1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    workers: int, port: int, log, *, threads: int = 1, timeout: int = 30
) -> subprocess.Popen:
    """gunicorn on loopback with this process's environment (its own group)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "backoffice.wsgi",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--bind",
            f"127.0.0.1:{port}",
            "--timeout",
            str(timeout),
        ],
        cwd=ROOT,
        env=dict(os.environ),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def start_cluster(log) -> subprocess.Popen:
    """One `manage.py qcluster` (the batch applier of queued notifications)."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=dict(os.environ),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def wait_until_applied(deliveries, timeout: float) -> bool:
    """Wait until no stored notification is left RECEIVED."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not deliveries.objects.filter(outcome="RECEIVED").exists():
            return True
        time.sleep(0.2)
    return False


def stop_server(server: subprocess.Popen, grace: float = 10.0) -> None:
    if server.poll() is not None:
        return
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=grace)
    except ProcessLookupError:
        pass


def wait_until_up(server: subprocess.Popen, url: str, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {server.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s")


class Load:
    """Closed-loop load: C threads, one keep-alive Session each.

    `next_request()` returns (method, url, body, headers, tag) or None when
    there is nothing left to send; each thread stops at None or the deadline.
    """

    def __init__(self, clients: int, seconds: float, next_request):
        self.clients = clients
        self.seconds = seconds
        self.next_request = next_request
        self.latencies: list[float] = []
        self.codes: Counter = Counter()
        self.sent: list[object] = []  # tags of requests that got an answer
        self.errors: list[str] = []
        self.elapsed = 0.0
        self.cpu = 0.0  # CPU seconds this process (the load generator) used
        self._lock = threading.Lock()

    def run(self) -> Load:
        threads = [
            threading.Thread(target=self._client, daemon=True)
            for _ in range(self.clients)
        ]
        start, cpu = time.perf_counter(), time.process_time()
        self.deadline = start + self.seconds
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.elapsed = time.perf_counter() - start
        self.cpu = time.process_time() - cpu
        self.latencies.sort()
        return self

    def _client(self) -> None:
        import requests

        latencies, codes, sent, errors = [], Counter(), [], []
        with requests.Session() as http:
            while time.perf_counter() < self.deadline:
                item = self.next_request()
                if item is None:
                    break
                method, url, body, headers, tag = item
                started = time.perf_counter()
                try:
                    response = http.request(
                        method, url, data=body, headers=headers, timeout=30
                    )
                except requests.RequestException as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    codes["error"] += 1
                    continue
                latencies.append(time.perf_counter() - started)
                codes[response.status_code] += 1
                sent.append(tag)
        with self._lock:
            self.latencies += latencies
            self.codes.update(codes)
            self.sent += sent
            self.errors += errors

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def ms(self, share: float) -> float:
        return percentile(self.latencies, share) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--payments", type=int, default=3000)
    parser.add_argument(
        "--apply",
        choices=("inline", "queued"),
        default="inline",
        help="WEBHOOK_APPLY of the server; queued also runs one qcluster process",
    )
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(
            "bench.webhooks needs PostgreSQL: set DATABASE_URL=postgres://... "
            "(a throw-away database: its tables are flushed)"
        )
    os.environ.update(
        SECRET_KEY=bench.SECRET_KEY,
        DEBUG="false",
        SANDBOX_ENABLED="true",
        SANDBOX_ALLOW_WITHOUT_DEBUG="true",
        SANDBOX_WEBHOOK_SECRET=WEBHOOK_SECRET,
        PAYMENT_GATEWAYS="sandbox",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        WEBHOOK_APPLY=args.apply,
        # The baseline polls one unknown reference from one address.
        RATE_LIMIT_CREATE="",
        RATE_LIMIT_STATUS="",
        Q_WORKERS="1",
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from gateways.money import to_provider
    from gateways.sandbox import SIGNATURE_HEADER, TOLERANCE_SECONDS, sign
    from payments.models import (
        EventKind,
        Payment,
        PaymentEvent,
        Plan,
        WebhookDelivery,
        new_ref_id,
    )

    # 1. setup --------------------------------------------------------------------
    print("using", connection.settings_dict["NAME"], "(tables are flushed)")
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    plan = Plan.objects.create(
        code="bench", name="Bench", price=Decimal("19.00"), currency="USD"
    )
    tokens = [secrets.token_urlsafe(24) for _ in range(args.payments)]
    payments = Payment.objects.bulk_create(
        [
            Payment(
                plan=plan,
                email=f"b{i}@example.com",
                amount=plan.price,
                currency=plan.currency,
                payment_gateway="sandbox",
                status=Payment.Status.PENDING,
                gateway_session_id=token,
                gateway_transaction_id=f"SBX-{token}",
            )
            for i, token in enumerate(tokens)
        ],
        batch_size=1000,
    )
    connection.close()

    # 2. notifications: one "paid" per payment + 10 % exact re-sends -----------------
    rng = random.Random(SEED)
    bodies = [
        (
            json.dumps(
                {
                    "event_id": f"evt_{rng.getrandbits(64):016x}_{n}",
                    "ref_id": payment.ref_id,
                    "token": token,
                    "status": "paid",
                    "amount": to_provider(payment.amount, payment.currency),
                    "currency": payment.currency,
                },
                sort_keys=True,
            ).encode(),
            payment.ref_id,
        )
        for n, (payment, token) in enumerate(zip(payments, tokens, strict=True))
    ]
    originals = list(range(len(bodies)))
    order = originals + rng.sample(originals, round(len(bodies) * DUPLICATE_SHARE))
    rng.shuffle(order)

    def signed() -> tuple[int, list[tuple[bytes, dict[str, str]]]]:
        # A duplicate is the same (body, headers) object sent again.
        stamp = int(time.time())
        notes = [
            (
                body,
                {
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(WEBHOOK_SECRET, body, stamp),
                },
            )
            for body, _ in bodies
        ]
        return stamp, notes

    stamp, notes = signed()
    print(
        f"{len(payments)} pending payments, {len(order)} notifications "
        f"({len(order) - len(bodies)} duplicates)"
    )

    # 3. gunicorn -----------------------------------------------------------------
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    unknown_ref = new_ref_id()
    status_url = f"{base}/api/payments/status/{unknown_ref}/"
    webhook_url = f"{base}/api/webhooks/sandbox/"
    with tempfile.TemporaryFile() as log:
        server = start_server(args.workers, port, log)
        cluster = None
        try:
            wait_until_up(server, status_url)

            # 4. baseline ----------------------------------------------------------
            def status_request():
                return ("GET", status_url, None, None, None)

            Load(args.clients, 1.0, status_request).run()  # warm every worker up
            baseline = Load(args.clients, args.seconds, status_request).run()

            # 5. measured ----------------------------------------------------------
            # The applier starts only now, so it costs the baseline nothing.
            if args.apply == "queued":
                cluster = start_cluster(log)
                time.sleep(2)
            if time.time() - stamp + args.seconds > TOLERANCE_SECONDS - 30:
                stamp, notes = signed()  # same bodies, fresh timestamp
            queue = iter(order)
            queue_lock = threading.Lock()

            def webhook_request():
                with queue_lock:
                    index = next(queue, None)
                if index is None:
                    return None
                body, headers = notes[index]
                return ("POST", webhook_url, body, headers, index)

            measured = Load(args.clients, args.seconds, webhook_request).run()
            if cluster is not None:
                drained = wait_until_applied(WebhookDelivery, timeout=60)
        finally:
            stop_server(server)
            if cluster is not None:
                stop_server(cluster, grace=3)
        log.seek(0)
        server_log = log.read().decode("utf-8", "replace")

    # 6. report -------------------------------------------------------------------
    print(
        f"gunicorn {args.workers} sync workers, {args.clients} client threads "
        f"in this process, {os.cpu_count()} CPUs"
    )
    print(
        f"baseline GET status 404: {len(baseline.latencies)} requests in "
        f"{baseline.elapsed:.1f} s = {baseline.rps:.0f} req/s, "
        f"p50 {baseline.ms(0.50):.1f} ms, p99 {baseline.ms(0.99):.1f} ms; "
        f"codes {dict(baseline.codes)}; load generator CPU "
        f"{baseline.cpu / baseline.elapsed:.2f} cores"
    )
    print(
        f"webhook POST: {len(measured.latencies)} requests in "
        f"{measured.elapsed:.1f} s = {measured.rps:.0f} req/s, "
        f"p50 {measured.ms(0.50):.1f} ms, p95 {measured.ms(0.95):.1f} ms, "
        f"p99 {measured.ms(0.99):.1f} ms; load generator CPU "
        f"{measured.cpu / measured.elapsed:.2f} cores"
    )
    ratio = measured.rps / baseline.rps if baseline.rps else 0.0
    print(f"ratio: webhook throughput = {ratio:.2f}x the baseline")
    print(f"webhook status codes: {dict(sorted(measured.codes.items(), key=str))}")
    if len(measured.sent) < len(order):
        print(f"time ran out: {len(order) - len(measured.sent)} notifications unsent")

    lag_ms: list[float] = []
    if args.apply == "queued":
        lags = WebhookDelivery.objects.filter(
            outcome=WebhookDelivery.Outcome.APPLIED
        ).values_list("received_at", "processed_at")
        lag_ms = sorted((done - got).total_seconds() * 1000 for got, done in lags)
        print(
            f"queued apply: drained in time: {drained}; received -> applied lag "
            f"p50 {percentile(lag_ms, 0.50):.0f} ms, p99 "
            f"{percentile(lag_ms, 0.99):.0f} ms, max {percentile(lag_ms, 1.0):.0f} ms"
        )

    sent_events = {bodies[i][0] for i in measured.sent}
    notified = {bodies[i][1] for i in measured.sent}
    outcomes = dict(
        WebhookDelivery.objects.values_list("outcome").annotate(n=Count("id"))
    )
    applied = outcomes.get(WebhookDelivery.Outcome.APPLIED, 0)
    changes = PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).count()
    completed = Payment.objects.filter(
        ref_id__in=notified, status=Payment.Status.COMPLETED
    ).count()
    server_errors = sum(
        n for code, n in measured.codes.items() if isinstance(code, int) and code >= 500
    ) + sum(n for code, n in baseline.codes.items() if code != 404)
    print(f"deliveries by outcome: {outcomes}")
    print(
        f"APPLIED {applied} (distinct event ids sent {len(sent_events)}); "
        f"STATUS_CHANGE {changes} (payments notified {len(notified)}, "
        f"COMPLETED {completed}); duplicates sent "
        f"{len(measured.sent) - len(sent_events)}, DUPLICATE "
        f"{outcomes.get(WebhookDelivery.Outcome.DUPLICATE, 0)}"
    )

    failures = []
    if applied != len(sent_events):
        failures.append("APPLIED deliveries != distinct event ids sent")
    if changes != len(notified) or completed != len(notified):
        failures.append("status changes != payments notified")
    if sum(outcomes.values()) != len(measured.sent):
        failures.append("stored deliveries != notifications answered")
    if server_errors:
        failures.append(f"{server_errors} unexpected answers (5xx or non-404)")
    if measured.errors or baseline.errors:
        errors = measured.errors + baseline.errors
        failures.append(f"{len(errors)} request errors, first: {errors[0]}")

    targets = {
        "≥ 0.60× the baseline": ratio >= 0.60,
        "≥ 500 req/s": measured.rps >= 500,
        "p99 ≤ 100 ms": measured.ms(0.99) <= 100,
        "0 × 5xx": not any(
            isinstance(code, int) and code >= 500 for code in measured.codes
        ),
        "APPLIED = distinct event ids": applied == len(sent_events),
    }
    if lag_ms:
        targets["applied within 1 s (p99 lag)"] = percentile(lag_ms, 0.99) <= 1000
    print(
        "B-WEBHOOK-RPS targets: "
        + ", ".join(
            f"{name} {'met' if ok else 'NOT met'}" for name, ok in targets.items()
        )
    )
    if failures:
        if server_log.strip():
            print("gunicorn log (tail):\n" + server_log[-3000:], file=sys.stderr)
        sys.exit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
