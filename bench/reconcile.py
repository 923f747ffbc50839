"""Benchmark: one reconciliation cycle over pending CoinPayments + MPGS payments.

Payments are created through `services.payment_create` against the fake
provider server (`fakeproviders/`, real HTTP on loopback), half CoinPayments and
half MPGS; a quarter of each half is then paid at the provider. Every
provider API call is slowed by `--latency` afterwards.

Baseline, in the same process against the same fake: one `fetch_status` per
payment, sequentially (single-id `get_tx_info`, MPGS Retrieve Order), timed
on `--sample` payments per provider and extrapolated. Measured: the
production path, one `services.reconcile_cycle(trigger="bench")` each for

- a combined set (both providers due at once, one bounded pool),
- a second set's CoinPayments half alone, then its MPGS half alone.

The floor of a cycle is the sum over providers of
ceil(requests / concurrency) x latency (25 ids per get_tx_info_multi, one
Retrieve Order per MPGS payment). Printed per cycle: time, floor, ratios,
provider requests by kind, nonce refusals, max in flight, status changes
against the expected ones, where the time went (claim, fetch, apply, expiry),
SQL statements by kind, and the peak RSS; then PASS/FAIL per target.

    .venv/bin/python -m bench.reconcile [--payments 10000] [--latency 0.05]
        [--concurrency 8] [--sample 50] [--database-url URL]

Uses a throw-away SQLite database unless DATABASE_URL (or --database-url) is
set; a PostgreSQL database is created if missing and its tables flushed.
Exits non-zero if a transition is missing or duplicated, or the concurrency
cap was exceeded; the speed targets are only reported.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench  # noqa: E402

PAID_SHARE = 4  # every 4th payment of each half is paid at the provider
CP_IDS_PER_CALL = 25  # get_tx_info_multi
TARGET_FLOOR_RATIO = 1.25
TARGET_CP_SPEEDUP = 150.0
TARGET_RSS_MB = 300.0
SITE_URL = "http://127.0.0.1:9"  # nobody listens: MPGS notifications are refused


# --- memory ------------------------------------------------------------------


def rss_peak_kib() -> int:
    """Return the peak RSS of this process so far (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(peak, _vm_hwm_kib())


def _vm_hwm_kib() -> int:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmHWM:\s+(\d+)", text)
    return int(match.group(1)) if match else 0


def reset_rss_peak() -> bool:
    """Restart the kernel's peak-RSS mark (Linux), to measure one phase alone."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# --- where a cycle spends its time ---------------------------------------------


@dataclass
class Timing:
    calls: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # CPU time of the calling thread
    first: float = math.inf
    last: float = 0.0


class Phases:
    """Time the steps of `reconcile_cycle` by wrapping its module's functions.

    The wrappers only read the clock: the code under test is unchanged.
    Functions a future version no longer has are skipped.
    """

    STEPS = {
        "claim_due": "claim",
        "_settle": "settle",
        "_ask": "fetch",
        "payments_change": "apply changed",
        "payments_record_checks": "back-off",
        "payment_expire_overdue": "expiry",
    }

    def __init__(self, module: Any):
        self.module = module
        self.timings: dict[str, Timing] = {}
        self._saved: dict[str, Callable] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Phases:
        for name, step in self.STEPS.items():
            original = getattr(self.module, name, None)
            if callable(original):
                self._saved[name] = original
                setattr(self.module, name, self._timed(step, original))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, original in self._saved.items():
            setattr(self.module, name, original)

    def _timed(self, step: str, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                ended, cpu = time.perf_counter(), time.thread_time() - cpu
                with self._lock:
                    timing = self.timings.setdefault(step, Timing())
                    timing.calls += 1
                    timing.seconds += ended - started
                    timing.cpu += cpu
                    timing.first = min(timing.first, started)
                    timing.last = max(timing.last, ended)

        return timed

    def get(self, step: str) -> Timing:
        return self.timings.get(step, Timing())


class CpuMeter:
    """CPU seconds used during a block: this process, its in-process fake
    provider's request handlers, and every PostgreSQL server process."""

    def __init__(self, handler_class: Any, *, postgres: bool):
        self.handler_class = handler_class
        self.measure_postgres = postgres
        self.process = self.fake = 0.0
        self.postgres: float | None = None
        self._fake_lock = threading.Lock()
        self._original: Callable | None = None

    def __enter__(self) -> CpuMeter:
        original = getattr(self.handler_class, "_dispatch", None)
        if callable(original):
            self._original = original
            meter = self

            def dispatch(handler, *args, **kwargs):
                started = time.thread_time()
                try:
                    return original(handler, *args, **kwargs)
                finally:
                    used = time.thread_time() - started
                    with meter._fake_lock:
                        meter.fake += used

            self.handler_class._dispatch = dispatch
        self._postgres_start = postgres_cpu() if self.measure_postgres else None
        self._process_start = time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process = time.process_time() - self._process_start
        if self._postgres_start is not None:
            ended = postgres_cpu()
            if ended is not None:
                self.postgres = ended - self._postgres_start
        if self._original is not None:
            self.handler_class._dispatch = self._original


def postgres_cpu() -> float | None:
    """Return the CPU seconds of all local `postgres` processes (Linux /proc)."""
    total, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].rpartition(") ")
        if not name.startswith("postgres"):
            continue
        fields = rest.split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
        found = True
    return total / os.sysconf("SC_CLK_TCK") if found else None


# --- SQL statements of a cycle -------------------------------------------------

_IN_LIST = re.compile(r"\bIN \(([^()]*)\)")
_ONE_ID = re.compile(r'WHERE "payments_payment"\."id" = (\d+)')


def classify(sql: str) -> str:
    """Name the kind of one captured statement."""
    text = sql.lstrip()
    head = text[:60].upper()
    if head.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")):
        return "transaction control"
    if "reconciliationrun" in text[:80]:
        return "run bookkeeping"
    if head.startswith('UPDATE "PAYMENTS_PAYMENT"'):
        assignments = text.split(" WHERE ", 1)[0]
        if '"status" = ' in assignments:
            return "payment UPDATE with status"
        if '"check_attempts" = ("payments_payment"."check_attempts" + 1)' in (
            assignments
        ):
            return "back-off UPDATE"
        if re.fullmatch(
            r'UPDATE "payments_payment" SET "next_check_at" = \S+( \S+)?',
            assignments.strip(),
        ):
            return "claim UPDATE"
        return "other payment UPDATE"
    if head.startswith('INSERT INTO "PAYMENTS_PAYMENTEVENT"'):
        return "event INSERT"
    if head.startswith(("INSERT", "UPDATE", "DELETE")):
        return "other write"
    if head.startswith("SELECT"):
        if "FOR UPDATE SKIP LOCKED" in text[-80:].upper():
            return "claim SELECT (locks)"
        if "FOR UPDATE" in text[-60:].upper():
            return "group lock SELECT"
        return "other SELECT"
    return "other"


@dataclass
class Statements:
    counts: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    # ids of payments written by single-row UPDATEs
    rows_one_by_one: list[int] = field(default_factory=list)
    rows_backed_off: int = 0
    total: int = 0

    @classmethod
    def from_queries(cls, queries: Iterable[dict[str, str]]) -> Statements:
        found = cls()
        for query in queries:
            sql = query.get("sql") or ""
            kind = classify(sql)
            found.total += 1
            found.counts[kind] += 1
            found.seconds[kind] += float(query.get("time") or 0)
            if kind in ("payment UPDATE with status", "other payment UPDATE"):
                match = _ONE_ID.search(sql)
                listed = _IN_LIST.search(sql)
                if match:
                    found.rows_one_by_one.append(int(match.group(1)))
                elif listed:  # one UPDATE for a group of payments with equal values
                    found.rows_one_by_one += [
                        int(part) for part in listed.group(1).split(",") if part.strip()
                    ]
            elif kind == "back-off UPDATE":
                listed = _IN_LIST.search(sql)
                if listed:
                    found.rows_backed_off += listed.group(1).count(",") + 1
        return found

    @property
    def writes(self) -> int:
        return sum(
            n
            for kind, n in self.counts.items()
            if "UPDATE" in kind or "INSERT" in kind or kind == "other write"
        )


# --- one measured cycle ---------------------------------------------------------


@dataclass
class Cycle:
    label: str
    due: int
    n_cp: int
    n_mpgs: int
    seconds: float = 0.0
    floor: float = 0.0
    requests: Counter = field(default_factory=Counter)
    nonce_refusals: int = 0
    max_in_flight: int = 0
    expected_changes: int = 0
    changes: int = 0
    duplicates: int = 0
    missing: int = 0
    unexpected: int = 0
    run: Any = None
    phases: dict[str, Timing] = field(default_factory=dict)
    statements: Statements = field(default_factory=Statements)
    rss_peak_mib: float = 0.0
    cpu: CpuMeter | None = None
    changed_ids: set[int] = field(default_factory=set)

    @property
    def transitions_ok(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected)


def floor_seconds(n_cp: int, n_mpgs: int, concurrency: int, latency: float) -> float:
    """Sum over providers of ceil(requests / concurrency) x latency."""
    cp_requests = math.ceil(n_cp / CP_IDS_PER_CALL)
    return (
        math.ceil(cp_requests / concurrency) + math.ceil(n_mpgs / concurrency)
    ) * latency


def nonce_refusals(fake: Any) -> int:
    """Read the fake's count of calls refused for their nonce, whatever its name."""
    for name in ("cp_nonce_refusals", "nonce_refusals", "cp_nonce_rejections"):
        value = getattr(fake, name, None)
        if isinstance(value, int):
            return value
    return 0


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--payments",
        type=int,
        default=10000,
        help="payments per set, half CoinPayments, half MPGS (default 10000)",
    )
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--sample", type=int, default=50, help="baseline calls per provider"
    )
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    if args.payments < 2 or args.sample < 1 or args.concurrency < 1:
        parser.error("need --payments >= 2, --sample >= 1, --concurrency >= 1")

    workdir = tempfile.mkdtemp(prefix="bench-")
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir}/bench.sqlite3")
    os.environ.update(
        SECRET_KEY=bench.SECRET_KEY,
        DEBUG="false",
        PAYMENT_GATEWAYS="coinpayments,mpgs",
        LOG_LEVEL="WARNING",
    )
    os.environ["RECONCILE_CONCURRENCY"] = str(args.concurrency)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")
    ensure_postgres_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count, Max
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from fakeproviders import FakeProviderServer
    from fakeproviders import core as fake_core
    from gateways import registry
    from payments import selectors, services
    from payments.models import EventKind, Payment, PaymentEvent, Plan
    from payments.services import reconcile as reconcile_module
    from payments.states import PaymentStatus

    fake_handler = getattr(fake_core, "_Handler", None)

    database = f"{connection.vendor} {connection.settings_dict['NAME']}"
    if connection.vendor != "sqlite":
        print("using", connection.settings_dict["NAME"], "(tables are flushed)")
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)

    fake = FakeProviderServer().start()
    pool_size = max(16, args.concurrency)
    fake_settings = fake.gateway_settings()
    settings.GATEWAY_SETTINGS["coinpayments"].update(
        fake_settings["coinpayments"], coins=["BTC"], pool_size=pool_size
    )
    settings.GATEWAY_SETTINGS["mpgs"].update(fake_settings["mpgs"], pool_size=pool_size)
    registry.reset()
    gateways = {code: registry.get_gateway(code) for code in ("coinpayments", "mpgs")}
    plan = Plan.objects.create(
        code="bench", name="Bench", price=Decimal("19.00"), currency="USD"
    )
    n_cp = args.payments // 2
    n_mpgs = args.payments - n_cp

    # --- payments, at latency 0 -------------------------------------------------

    def create(code: str, count: int, tag: str) -> tuple[list[Payment], set[int]]:
        """Create `count` payments through the service; pay every 4th at the fake."""
        payments = [
            services.payment_create(
                plan=plan,
                gateway_code=code,
                email=f"{tag}{i}@example.com",
                site_url=SITE_URL,
            )
            for i in range(count)
        ]
        paid = set()
        for number, payment in enumerate(payments):
            if number % PAID_SHARE == 0:
                if code == "coinpayments":
                    fake.cp_set_status(payment.gateway_transaction_id, 100)
                else:
                    fake.mpgs_pay(payment.ref_id)  # the order becomes CAPTURED
                paid.add(payment.pk)
        return payments, paid

    print(
        f"creating 2 sets of {args.payments:,} pending payments "
        f"({n_cp:,} CoinPayments + {n_mpgs:,} MPGS each) at the fake provider..."
    )
    started = time.perf_counter()
    fake.latency = 0
    sets = {
        name: {code: create(code, count, f"{name}-{code}-") for code, count in halves}
        for name, halves in (
            ("combined", (("coinpayments", n_cp), ("mpgs", n_mpgs))),
            ("split", (("coinpayments", n_cp), ("mpgs", n_mpgs))),
        )
    }
    creating = time.perf_counter() - started
    print(
        f"created {2 * args.payments:,} payments in {creating:.1f} s "
        f"({2 * args.payments / creating:.0f}/s)"
    )
    fake.latency = args.latency

    # --- baseline: sequential, one fetch_status per payment --------------------

    baseline: dict[str, float] = {}
    per_call: dict[str, float] = {}
    for code, count in (("coinpayments", n_cp), ("mpgs", n_mpgs)):
        payments = sets["combined"][code][0]
        sample = payments[: min(args.sample, len(payments))]
        started = time.perf_counter()
        for payment in sample:
            gateways[code].fetch_status(selectors.payment_ref(payment))
        per_call[code] = (time.perf_counter() - started) / len(sample)
        baseline[code] = per_call[code] * count
    process_peak = rss_peak_kib()

    # --- measured cycles ------------------------------------------------------------

    def make_due(ids: list[int]) -> None:
        """Make exactly these payments due; every other pending one waits a year."""
        later = timezone.now() + timedelta(days=365)
        Payment.objects.filter(status=PaymentStatus.PENDING).update(next_check_at=later)
        for start in range(0, len(ids), 5000):
            Payment.objects.filter(pk__in=ids[start : start + 5000]).update(
                next_check_at=None
            )

    def measure(label: str, parts: dict[str, tuple[list[Payment], set[int]]]):
        nonlocal process_peak
        ids = [p.pk for payments, _ in parts.values() for p in payments]
        paid = set().union(*(paid for _, paid in parts.values()))
        cp = len(parts.get("coinpayments", ((), ()))[0])
        mpgs = len(parts.get("mpgs", ((), ()))[0])
        cycle = Cycle(label, len(ids), cp, mpgs, expected_changes=len(paid))
        cycle.floor = floor_seconds(cp, mpgs, args.concurrency, args.latency)
        make_due(ids)
        if connection.vendor == "postgresql":
            # Start every cycle from vacuumed tables, as a live database would be.
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE payments_payment, payments_paymentevent")
        last_event = PaymentEvent.objects.aggregate(m=Max("id"))["m"] or 0
        process_peak = max(process_peak, rss_peak_kib())
        fake.reset_calls()
        reset_rss_peak()
        with (
            Phases(reconcile_module) as phases,
            CpuMeter(fake_handler, postgres=connection.vendor == "postgresql") as cpu,
            CaptureQueriesContext(connection) as captured,
        ):
            started = time.perf_counter()
            cycle.run = services.reconcile_cycle(trigger="bench")
            cycle.seconds = time.perf_counter() - started
        cycle.cpu = cpu
        cycle.rss_peak_mib = rss_peak_kib() / 1024
        process_peak = max(process_peak, rss_peak_kib())
        cycle.phases = phases.timings
        cycle.statements = Statements.from_queries(captured.captured_queries)
        del captured
        cycle.requests = Counter(op for op, _ in fake.calls)
        cycle.nonce_refusals = nonce_refusals(fake)
        cycle.max_in_flight = fake.max_in_flight
        per_payment = dict(
            PaymentEvent.objects.filter(id__gt=last_event, kind=EventKind.STATUS_CHANGE)
            .values_list("payment_id")
            .annotate(n=Count("id"))
        )
        cycle.changed_ids = set(per_payment)
        cycle.changes = sum(per_payment.values())
        cycle.duplicates = sum(n - 1 for n in per_payment.values() if n > 1)
        completed = set(
            Payment.objects.filter(
                pk__in=list(paid), status=PaymentStatus.COMPLETED
            ).values_list("pk", flat=True)
        )
        cycle.missing = len(paid - (completed & cycle.changed_ids))
        cycle.unexpected = len(cycle.changed_ids - paid)
        return cycle

    print(
        f"measuring: baseline done; cycles at {args.latency * 1000:.0f} ms latency, "
        f"concurrency {args.concurrency}..."
    )
    cycles = [
        measure("combined", sets["combined"]),
        measure("CP only", {"coinpayments": sets["split"]["coinpayments"]}),
        measure("MPGS only", {"mpgs": sets["split"]["mpgs"]}),
    ]
    fake.stop()
    process_peak = max(process_peak, rss_peak_kib())

    report(
        args=args,
        database=database,
        n_cp=n_cp,
        n_mpgs=n_mpgs,
        creating=creating,
        per_call=per_call,
        baseline=baseline,
        cycles=cycles,
        process_peak_mib=process_peak / 1024,
    )
    failures = [c.label for c in cycles if not c.transitions_ok]
    over_cap = [c.label for c in cycles if c.max_in_flight > args.concurrency]
    if failures or over_cap:
        sys.exit(
            "FAILED: wrong transitions in "
            f"{', '.join(failures) or 'no cycle'}; concurrency cap exceeded in "
            f"{', '.join(over_cap) or 'no cycle'}"
        )


def ensure_postgres_database(url: str) -> None:
    """Create the PostgreSQL database named in `url` if it does not exist."""
    if not url.startswith(("postgres://", "postgresql://")):
        return
    import dj_database_url
    import psycopg
    from psycopg import sql

    db = dj_database_url.parse(url)
    params = {
        "host": db.get("HOST") or "127.0.0.1",
        "port": db.get("PORT") or 5432,
        "user": db.get("USER") or "postgres",
        "dbname": "postgres",
    }
    if db.get("PASSWORD"):
        params["password"] = db["PASSWORD"]
    with psycopg.connect(**params, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (db["NAME"],)
        ).fetchone()
        if not exists:
            conn.execute(
                sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"]))
            )
            print("created database", db["NAME"])


# --- the report ----------------------------------------------------------------------


def report(
    *,
    args,
    database: str,
    n_cp: int,
    n_mpgs: int,
    creating: float,
    per_call: dict[str, float],
    baseline: dict[str, float],
    cycles: list[Cycle],
    process_peak_mib: float,
) -> None:
    combined, cp_only, mpgs_only = cycles
    print()
    print(
        f"reconcile benchmark: {args.payments:,} payments a set ({n_cp:,} "
        f"CoinPayments + {n_mpgs:,} MPGS), 1 in {PAID_SHARE} paid at the provider"
    )
    print(
        f"provider latency {args.latency * 1000:.0f} ms, RECONCILE_CONCURRENCY "
        f"{args.concurrency}, database {database}, {os.cpu_count()} CPUs"
    )
    print()
    print(
        f"baseline: sequential fetch_status, {args.sample} per provider, extrapolated"
    )
    for code, what, count in (
        ("coinpayments", "get_tx_info", n_cp),
        ("mpgs", "Retrieve Order", n_mpgs),
    ):
        print(
            f"  {code:<13} {what:<15} {per_call[code] * 1000:6.1f} ms a call "
            f"x {count:,} = {baseline[code]:7.1f} s"
        )
    total_baseline = sum(baseline.values())
    print(f"  both halves: {total_baseline:.1f} s")
    print()

    def baseline_for(cycle: Cycle) -> float:
        return per_call["coinpayments"] * cycle.n_cp + per_call["mpgs"] * cycle.n_mpgs

    rows: list[tuple[str, list[str]]] = []

    def row(name: str, values: Callable[[Cycle], str]) -> None:
        rows.append((name, [values(c) for c in cycles]))

    def timing(step: str) -> Callable[[Cycle], str]:
        def show(cycle: Cycle) -> str:
            t = cycle.phases.get(step, Timing())
            return f"{t.seconds:.2f} / {t.cpu:.2f} / {t.calls:,}" if t.calls else "-"

        return show

    def statements(kind: str) -> Callable[[Cycle], str]:
        def show(cycle: Cycle) -> str:
            n = cycle.statements.counts.get(kind, 0)
            return f"{n:,} ({cycle.statements.seconds[kind]:.2f} s)" if n else "0"

        return show

    def fetch_wall(cycle: Cycle) -> str:
        t = cycle.phases.get("fetch", Timing())
        return f"{t.last - t.first:.2f} s" if t.calls else "-"

    def settle_rest(cycle: Cycle) -> str:
        """Main-thread time in _settle outside the writes: waiting for answers
        and dispatching them (concurrent.futures.wait, _Applier.take/flush)."""
        settle = cycle.phases.get("settle", Timing())
        if not settle.calls:
            return "-"
        writes = [cycle.phases.get(s, Timing()) for s in ("apply changed", "back-off")]
        wall = settle.seconds - sum(t.seconds for t in writes)
        cpu = settle.cpu - sum(t.cpu for t in writes)
        return f"{wall:.2f} / {cpu:.2f} / -"

    def after_last_answer(cycle: Cycle) -> str:
        fetch = cycle.phases.get("fetch", Timing())
        settle = cycle.phases.get("settle", Timing())
        if not (fetch.calls and settle.calls):
            return "-"
        return f"{settle.last - fetch.last:.2f} s"

    def before_first_request(cycle: Cycle) -> str:
        fetch = cycle.phases.get("fetch", Timing())
        claim = cycle.phases.get("claim", Timing())
        if not (fetch.calls and claim.calls):
            return "-"
        return f"{fetch.first - claim.first:.2f} s"

    row("due payments", lambda c: f"{c.due:,}")
    row("cycle time", lambda c: f"{c.seconds:.2f} s")
    row("floor", lambda c: f"{c.floor:.2f} s")
    row("cycle / floor", lambda c: f"{c.seconds / c.floor:.2f}")
    row("sequential baseline", lambda c: f"{baseline_for(c):.1f} s")
    row("x faster than baseline", lambda c: f"{baseline_for(c) / c.seconds:.1f}x")
    row("payments / s", lambda c: fmt_int(c.due / c.seconds))
    row(
        "cp:get_tx_info_multi calls",
        lambda c: fmt_int(c.requests["cp:get_tx_info_multi"]),
    )
    row("mpgs:order calls", lambda c: fmt_int(c.requests["mpgs:order"]))
    row(
        "other provider calls",
        lambda c: fmt_int(
            sum(c.requests.values())
            - c.requests["cp:get_tx_info_multi"]
            - c.requests["mpgs:order"]
        ),
    )
    row("nonce refusals (retries)", lambda c: fmt_int(c.nonce_refusals))
    row("max in flight", lambda c: f"{c.max_in_flight} (cap {args.concurrency})")
    row(
        "STATUS_CHANGE events",
        lambda c: f"{c.changes:,} of {c.expected_changes:,}",
    )
    row(
        "duplicate / missing / unexpected",
        lambda c: f"{c.duplicates} / {c.missing} / {c.unexpected}",
    )
    row(
        "run: checked/changed/exp/err",
        lambda c: f"{c.run.checked}/{c.run.changed}/{c.run.expired}/{c.run.errors}",
    )
    row("peak RSS during cycle", lambda c: f"{c.rss_peak_mib:.0f} MiB")
    rows.append(("CPU seconds during the cycle:", ["", "", ""]))
    row("  this process", lambda c: f"{c.cpu.process:.2f}")
    row("  of which fake provider", lambda c: f"{c.cpu.fake:.2f}")
    row(
        "  PostgreSQL processes",
        lambda c: "-" if c.cpu.postgres is None else f"{c.cpu.postgres:.2f}",
    )
    row(
        f"  busy share of {os.cpu_count()} CPUs",
        lambda c: (
            f"{(c.cpu.process + (c.cpu.postgres or 0)) / (c.seconds * (os.cpu_count() or 1)):.0%}"
        ),
    )
    rows.append(("wall s / thread CPU s / calls:", ["", "", ""]))
    row("  claim_due", timing("claim"))
    row("  fetch (_ask, pool threads)", timing("fetch"))
    row("  first request -> last answer", fetch_wall)
    row("  claim start -> first request", before_first_request)
    row("  apply changed (main thread)", timing("apply changed"))
    row("  back-off writes (main thread)", timing("back-off"))
    row("  settle: rest of main thread", settle_rest)
    row("  last answer -> settled", after_last_answer)
    row("  expire overdue", timing("expiry"))
    rows.append(("SQL statements (count, DB s):", ["", "", ""]))
    kinds = sorted({k for c in cycles for k in c.statements.counts})
    for kind in kinds:
        row(f"  {kind}", statements(kind))
    row("  total statements", lambda c: fmt_int(c.statements.total))
    row("  of which writes", lambda c: fmt_int(c.statements.writes))
    row(
        "  rows by status UPDATEs",
        lambda c: f"{len(set(c.statements.rows_one_by_one)):,}",
    )
    row("  rows by back-off UPDATEs", lambda c: fmt_int(c.statements.rows_backed_off))

    width = max(len(name) for name, _ in rows) + 2
    columns = [
        max(len(c.label), *(len(v[i]) for _, v in rows)) + 2
        for i, c in enumerate(cycles)
    ]
    print("cycles: services.reconcile_cycle(trigger='bench'), one call each")
    print(
        " " * width
        + "".join(f"{c.label:>{w}}" for c, w in zip(cycles, columns, strict=True))
    )
    for name, values in rows:
        print(
            f"{name:<{width}}"
            + "".join(f"{v:>{w}}" for v, w in zip(values, columns, strict=True))
        )
    print()

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    cp_speedup = baseline["coinpayments"] / cp_only.seconds
    # Status writes touch exactly the changed payments (once each); back-off
    # writes touch exactly the others.
    writes_ok = all(
        sorted(c.statements.rows_one_by_one) == sorted(c.changed_ids)
        and c.statements.rows_backed_off == c.due - c.changes
        for c in cycles
    )
    targets = [
        (
            f"combined cycle <= {TARGET_FLOOR_RATIO} x floor",
            f"{combined.seconds:.2f} s / {combined.floor:.2f} s = "
            f"{combined.seconds / combined.floor:.2f}",
            combined.seconds <= TARGET_FLOOR_RATIO * combined.floor,
        ),
        (
            f"(extra) CP-only cycle <= {TARGET_FLOOR_RATIO} x floor",
            f"{cp_only.seconds:.2f} s / {cp_only.floor:.2f} s = "
            f"{cp_only.seconds / cp_only.floor:.2f}",
            cp_only.seconds <= TARGET_FLOOR_RATIO * cp_only.floor,
        ),
        (
            f"MPGS-only cycle <= {TARGET_FLOOR_RATIO} x floor",
            f"{mpgs_only.seconds:.2f} s / {mpgs_only.floor:.2f} s = "
            f"{mpgs_only.seconds / mpgs_only.floor:.2f}",
            mpgs_only.seconds <= TARGET_FLOOR_RATIO * mpgs_only.floor,
        ),
        (
            f"CoinPayments half >= {TARGET_CP_SPEEDUP:.0f}x sequential baseline",
            f"{baseline['coinpayments']:.1f} s / {cp_only.seconds:.2f} s = "
            f"{cp_speedup:.1f}x",
            cp_speedup >= TARGET_CP_SPEEDUP,
        ),
        (
            "0 nonce retries",
            " + ".join(str(c.nonce_refusals) for c in cycles),
            not any(c.nonce_refusals for c in cycles),
        ),
        (
            "0 duplicate (and no missing) transitions",
            " + ".join(f"{c.duplicates}/{c.missing}/{c.unexpected}" for c in cycles),
            all(c.transitions_ok for c in cycles),
        ),
        (
            f"in flight <= {args.concurrency}",
            ", ".join(str(c.max_in_flight) for c in cycles),
            all(c.max_in_flight <= args.concurrency for c in cycles),
        ),
        (
            f"peak RSS <= {TARGET_RSS_MB:.0f} MB (whole process, ru_maxrss)",
            f"{process_peak_mib:.0f} MiB (cycles alone: "
            + ", ".join(f"{c.rss_peak_mib:.0f}" for c in cycles)
            + ")",
            process_peak_mib * 1.048576 <= TARGET_RSS_MB,
        ),
        (
            "writes only for changed payments (rows)",
            " + ".join(
                f"{len(c.statements.rows_one_by_one)} of {c.changes} rows in "
                f"{c.statements.counts.get('payment UPDATE with status', 0)}"
                for c in cycles
            )
            + " status UPDATEs; back-off UPDATEs "
            + " + ".join(
                str(c.statements.counts.get("back-off UPDATE", 0)) for c in cycles
            ),
            writes_ok,
        ),
    ]
    overall = total_baseline / combined.seconds
    print(
        f"overall: combined cycle {combined.seconds:.2f} s vs sequential "
        f"{total_baseline:.1f} s = {overall:.1f}x; payments created in "
        f"{creating:.1f} s (not measured)"
    )
    print("targets:")
    width = max(len(name) for name, _, _ in targets) + 2
    for name, value, ok in targets:
        print(f"  {verdict(ok)}  {name:<{width}} {value}")


if __name__ == "__main__":
    main()
