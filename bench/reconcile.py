"""Benchmark: reconcile pending CoinPayments payments against the fake provider.

Baseline, run in the same process against the same fake: one `get_tx_info` per
payment, sequentially (timed on a sample and extrapolated). Measured: the
production path, `payments.tasks.reconcile_pending` (25 ids a call on a bounded
thread pool). Prints both and the ratio.

    .venv/bin/python -m bench.reconcile [--payments 2000] [--latency 0.05]

Uses a throw-away SQLite database unless DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--sample", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="bench-")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir}/bench.sqlite3")
    os.environ.update(
        SECRET_KEY="bench",
        DEBUG="false",
        PAYMENT_GATEWAYS="coinpayments",
        LOG_LEVEL="WARNING",
    )
    os.environ["RECONCILE_CONCURRENCY"] = str(args.concurrency)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from gateways import registry
    from payments import services, tasks
    from payments.models import EventKind, Payment, PaymentEvent, Plan
    from tests.fakes import FakeProviderServer

    if connection.vendor != "sqlite":
        print("using", connection.settings_dict["NAME"], "(tables are flushed)")
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)

    fake = FakeProviderServer().start()
    settings.GATEWAY_SETTINGS["coinpayments"].update(
        public_key="cp-public",
        private_key="cp-private",
        merchant_id="cp-merchant",
        ipn_secret="cp-ipn-secret",
        api_url=f"{fake.url}/api.php",
        coins=["BTC"],
        pool_size=max(16, args.concurrency),
    )
    registry.reset()
    gateway = registry.get_gateway("coinpayments")
    plan = Plan.objects.create(
        code="bench", name="Bench", price=Decimal("19.00"), currency="USD"
    )

    print(f"creating {args.payments} pending payments at the fake provider...")
    payments = [
        services.payment_create(
            plan=plan,
            gateway_code="coinpayments",
            email=f"b{i}@example.com",
            site_url="http://127.0.0.1:9",
        )
        for i in range(args.payments)
    ]
    for number, payment in enumerate(payments):
        if number % 4 == 0:
            fake.cp_set_status(payment.gateway_transaction_id, 100)
    Payment.objects.update(next_check_at=None)
    fake.latency = args.latency

    sample = payments[: args.sample]
    started = time.perf_counter()
    for payment in sample:
        gateway.fetch_status(services.payment_ref(payment))
    baseline = (time.perf_counter() - started) / len(sample) * len(payments)

    fake.reset_calls()
    started = time.perf_counter()
    summary = tasks.reconcile_pending()
    measured = time.perf_counter() - started
    fake.stop()

    expected = len(payments[::4])
    changes = PaymentEvent.objects.filter(kind=EventKind.STATUS_CHANGE).count()
    counts = dict(Payment.objects.values_list("status").annotate(n=Count("id")))
    print(f"payments: {len(payments)}, provider latency {args.latency * 1000:.0f} ms")
    print(
        f"baseline sequential, 1 id/call (extrapolated from {len(sample)}): {baseline:.1f} s"
    )
    print(
        f"reconcile_pending, 25 ids/call, {args.concurrency} threads: {measured:.2f} s "
        f"({len(payments) / measured:.0f} payments/s)"
    )
    print(f"ratio: {baseline / measured:.1f}x faster than the baseline")
    print(
        f"provider calls: {fake.count('cp:get_tx_info_multi')} batch calls "
        f"({fake.cp_nonce_rejections} nonce retries), max in flight {fake.max_in_flight}"
    )
    print(f"summary: {summary}; statuses: {counts}")
    print(
        f"status changes: {changes} (expected {expected}, duplicates: {changes - expected})"
    )
    if changes != expected or fake.max_in_flight > args.concurrency:
        sys.exit("FAILED: wrong number of transitions or concurrency cap exceeded")


if __name__ == "__main__":
    main()
