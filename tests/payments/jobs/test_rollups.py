"""The dashboard's daily rollups: the same figures as the raw aggregation, recounted
by a schedule (idempotent, safe on two clusters), never by a status change."""

from __future__ import annotations

import random
import threading
from datetime import date, datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backoffice.dashboard import dashboard_callback
from gateways.base import StatusResult
from payments import selectors, services, tasks
from payments.models import (
    DailyRollup,
    Payment,
    Plan,
    Refund,
    RefundStatus,
    RollupDay,
    RollupFact,
)
from payments.services.status import payment_apply_status
from payments.services.transitions import Actor
from payments.states import ENDED_UNPAID, PAID_STATUSES
from payments.states import PaymentStatus as S
from tests.factories import move_to

GATEWAYS = ("mpgs", "coinpayments", "sandbox")
CURRENCIES = ("USD", "EUR", "SAR")
STATUSES = tuple(S)
# The dashboard's figures that are counted over days.
FIGURES = (
    "paid_today",
    "paid_30d",
    "success_rates",
    "volume_charts",
    "status_chart",
    "refunds",
)


@pytest.fixture
def clock(monkeypatch):
    """Set Django's clock (every `timezone.now()`, `localdate()`) to a moment."""
    moment = [timezone.now()]
    monkeypatch.setattr(timezone, "now", lambda: moment[0])

    def set_to(when: datetime) -> datetime:
        moment[0] = when
        return when

    return set_to


def report(payment: Payment, status: str) -> None:
    """Apply a provider's report of `status` (the price captured) now."""
    payment_apply_status(
        payment_id=payment.pk,
        result=StatusResult(
            ref_id=payment.ref_id,
            status=status,
            amount=payment.amount,
            currency=payment.currency,
        ),
        actor=Actor("test"),
    )


def midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def random_moment(rng: random.Random, now: datetime, days: int) -> datetime:
    """A moment in the last `days` days, often a hair either side of a midnight."""
    day = timezone.localdate(now) - timedelta(days=rng.randrange(days))
    if rng.random() < 0.35:
        edge = rng.choice(
            (
                timedelta(0),
                -timedelta(microseconds=1),
                timedelta(seconds=rng.randrange(1, 120)),
                -timedelta(seconds=rng.randrange(1, 120)),
            )
        )
        moment = midnight(day) + edge
    else:
        moment = midnight(day) + timedelta(seconds=rng.randrange(86_400))
    return min(moment, now)


def random_history(rng: random.Random, now: datetime, count: int) -> dict:
    """Payments and refunds of the last 40 days: late payments, voids, refunds
    on later days, several gateways and currencies (a fixture, not services)."""
    plan, _ = Plan.objects.get_or_create(
        code="rollup-plan", defaults={"name": "Plan", "price": Decimal("10.00")}
    )
    payments, statuses = [], []
    for _ in range(count):
        status = rng.choice(STATUSES)
        amount = Decimal(rng.randrange(100, 10_000)) / 100
        created = random_moment(rng, now, 40)
        paid_at = None
        if status in PAID_STATUSES:
            # A third are late: paid days after they were created.
            delay = (
                timedelta(days=rng.randrange(1, 7), seconds=rng.randrange(86_400))
                if rng.random() < 0.33
                else timedelta(seconds=rng.randrange(1, 900))
            )
            paid_at = min(created + delay, now)
        statuses.append((status, paid_at))
        payments.append(
            Payment(
                plan=plan,
                email="rollup@example.com",
                amount=amount,
                currency=rng.choice(CURRENCIES),
                payment_gateway=rng.choice(GATEWAYS),
            )
        )
    Payment.objects.bulk_create(payments)
    # Statuses through the services, as the providers' reports bring them (a
    # voided payment keeps nothing: amount_paid 0, no date_paid); then the
    # dates that the figures are keyed on.
    for status in STATUSES:
        chosen = [
            p.pk for p, (s, _) in zip(payments, statuses, strict=True) if s == status
        ]
        move_to(status, Payment.objects.filter(pk__in=chosen))
    payments = list(
        Payment.objects.filter(pk__in=[p.pk for p in payments]).order_by("pk")
    )
    for payment, (_, paid_at), moment in zip(
        payments, statuses, [random_moment(rng, now, 40) for _ in payments], strict=True
    ):
        payment.date_paid = paid_at if payment.date_paid else None
        payment.date_created = min(moment, payment.date_paid or moment)
    Payment.objects.bulk_update(payments, ["date_created", "date_paid"])
    Refund.objects.filter(payment__in=payments).update(date_completed=None)
    for payment in payments:
        if payment.date_paid:
            payment.refunds.filter(date_completed=None).update(
                date_completed=payment.date_paid
            )
    refunds = []
    for payment in payments:
        if payment.date_paid is None or rng.random() < 0.4:
            continue
        for _ in range(rng.randrange(1, 3)):
            status = rng.choice(tuple(RefundStatus))
            done = None
            if status != RefundStatus.PENDING:
                done = min(
                    payment.date_paid
                    + timedelta(
                        days=rng.randrange(0, 9), seconds=rng.randrange(86_400)
                    ),
                    now,
                )
                if rng.random() < 0.2:
                    done = min(midnight(timezone.localdate(done)), now)
            refunds.append(
                Refund(
                    payment=payment,
                    amount=Decimal(rng.randrange(1, 500)) / 100,
                    currency=payment.currency,
                    status=status,
                    date_completed=done,
                )
            )
    Refund.objects.bulk_create(refunds)
    return {"payments": payments, "refunds": refunds}


def figures(now: datetime, rolled_up: frozenset[date] | None = None) -> dict:
    """Every selector figure the dashboard shows, in comparable form."""
    paid = selectors.daily_paid_volume(days=30, now=now, rolled_up=rolled_up)
    stats = selectors.gateway_stats(
        days=30, recent_days=7, now=now, rolled_up=rolled_up
    )
    refunds = selectors.refund_volume(days=30, now=now, rolled_up=rolled_up)
    return {
        "dates": paid.dates,
        "paid": {
            c: list(zip(paid.amounts[c], paid.counts[c], strict=True))
            for c in paid.amounts
        },
        "paid_30d": paid.totals(30),
        "paid_today": paid.totals(1),
        "stats": [
            (s.gateway, s.by_status, s.recent_paid, s.recent_ended) for s in stats
        ],
        "refunds": refunds,
    }


def oracle(now: datetime) -> dict:
    """The same figures counted in Python from every row, by local date."""
    today = timezone.localdate(now)
    dates = [today - timedelta(days=29 - i) for i in range(30)]
    index = {day: i for i, day in enumerate(dates)}
    paid: dict[str, list] = {}
    for p in Payment.objects.exclude(date_paid=None):
        i = index.get(timezone.localdate(p.date_paid))
        if i is not None:
            row = paid.setdefault(p.currency, [(Decimal(0), 0)] * 30)
            row[i] = (row[i][0] + p.amount_paid, row[i][1] + 1)
    stats: dict[str, dict] = {}
    for p in Payment.objects.all():
        day = timezone.localdate(p.date_created)
        if day not in index:
            continue
        entry = stats.setdefault(p.payment_gateway, {"by": {}, "paid": 0, "ended": 0})
        entry["by"][p.status] = entry["by"].get(p.status, 0) + 1
        if day >= dates[-7]:
            entry["paid"] += p.status in PAID_STATUSES
            entry["ended"] += p.status in PAID_STATUSES | ENDED_UNPAID
    refunds: dict[str, tuple] = {}
    for r in Refund.objects.filter(status__in=selectors.REFUNDS_DONE):
        if timezone.localdate(r.date_completed) in index:
            amount, count = refunds.get(r.currency, (Decimal(0), 0))
            refunds[r.currency] = (amount + r.amount, count + 1)

    def volumes(totals: dict[str, tuple]) -> list[selectors.Volume]:
        found = [selectors.Volume(c, a, n) for c, (a, n) in totals.items() if n]
        return sorted(found, key=lambda v: (-v.amount, v.currency))

    ordered = sorted(paid, key=lambda c: (-sum(a for a, _ in paid[c]), c))
    return {
        "dates": dates,
        "paid": {c: paid[c] for c in ordered},
        "paid_30d": volumes(
            {c: (sum(a for a, _ in v), sum(n for _, n in v)) for c, v in paid.items()}
        ),
        "paid_today": volumes({c: v[-1] for c, v in paid.items()}),
        "stats": [
            (g, e["by"], e["paid"], e["ended"]) for g, e in sorted(stats.items())
        ],
        "refunds": volumes(refunds),
    }


def dashboard(rf, user) -> dict:
    request = rf.get("/admin/")
    request.user = user
    context = dashboard_callback(request, {})
    return {key: context[key] for key in FIGURES}


# Moments around a local midnight: before it; just after (yesterday not yet
# settled, so read live); once settled; mid-morning; just before the next.
OFFSETS = (
    -timedelta(seconds=90),
    timedelta(seconds=30),
    timedelta(seconds=90),
    timedelta(hours=9, minutes=17),
    timedelta(hours=23, minutes=59, seconds=59),
)


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["UTC", "Asia/Riyadh", "America/New_York"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_dashboard_figure_from_rollups_equals_the_raw_aggregation(
    zone, seed, settings, clock, rf, admin_user
):
    settings.TIME_ZONE = zone
    rng = random.Random(f"{zone}-{seed}")
    # New York's clocks went back on 1 November 2026: the window spans it.
    start = datetime(2026, 11, 20, tzinfo=ZoneInfo(zone))
    now = clock(start + timedelta(days=seed) + OFFSETS[seed])
    random_history(rng, now, 250)

    raw = figures(now, rolled_up=frozenset())
    raw_page = dashboard(rf, admin_user)  # nothing rolled up yet: all live
    assert raw == oracle(now)
    assert raw["paid_30d"] and raw["refunds"] and len(raw["stats"]) == 3

    run = services.rollups_refresh()
    assert run.days == settings.ROLLUP_WINDOW_DAYS and run.rows > 0

    rolled_up = selectors.rolled_up_days(days=30, now=now)
    today = timezone.localdate(now)
    settled = now - midnight(today) >= selectors.ROLLUP_SETTLE
    # Every day before today, but yesterday until its rollup has settled.
    assert len(rolled_up) == (29 if settled else 28)
    assert figures(now) == raw
    assert dashboard(rf, admin_user) == raw_page


@pytest.mark.django_db
@pytest.mark.parametrize("offset", OFFSETS)
def test_figures_agree_at_every_time_of_day(offset, settings, clock, rf, admin_user):
    settings.TIME_ZONE = "Asia/Riyadh"
    now = clock(datetime(2026, 11, 29, tzinfo=ZoneInfo("Asia/Riyadh")) + offset)
    random_history(random.Random(str(offset)), now, 150)
    raw_page = dashboard(rf, admin_user)

    services.rollups_refresh()

    assert figures(now) == oracle(now)
    assert dashboard(rf, admin_user) == raw_page


@pytest.mark.django_db
def test_past_days_are_read_from_rollups_until_recounted(settings, clock, rf):
    """Late changes to ended days show at the next recount; today's at once."""
    settings.TIME_ZONE = "America/New_York"
    now = clock(datetime(2026, 11, 29, 15, tzinfo=ZoneInfo("America/New_York")))
    history = random_history(random.Random(7), now, 200)
    services.rollups_refresh()
    before = figures(now)
    assert before == oracle(now)

    paid = [
        p
        for p in history["payments"]
        if p.status == S.COMPLETED
        and p.date_paid
        and 2 <= (timezone.localdate(now) - timezone.localdate(p.date_paid)).days < 20
    ]
    voided, refunded = paid[0], paid[1]
    expired = next(
        p
        for p in history["payments"]
        if p.status == S.EXPIRED and timezone.localdate(p.date_created) < now.date()
    )
    # A void of a payment paid days ago changes that day.
    report(voided, S.VOIDED)
    # A late payment: created days ago, paid now (its created day changes too).
    report(expired, S.COMPLETED)
    # A refund completed now of an old payment counts today.
    Refund.objects.create(
        payment=refunded,
        amount=Decimal("1.25"),
        currency=refunded.currency,
        status=RefundStatus.SUCCEEDED,
        date_completed=now,
    )

    stale = figures(now)
    fresh = oracle(now)
    # Today's figures are live; the ended days still show their last recount.
    assert stale["paid_today"] == fresh["paid_today"]
    assert stale["refunds"] == fresh["refunds"]
    assert stale["paid"] != fresh["paid"] and stale["stats"] != fresh["stats"]
    assert stale["paid_30d"] != fresh["paid_30d"]

    services.rollups_refresh()

    assert figures(now) == fresh


@pytest.mark.django_db
def test_a_day_is_read_live_until_recounted_after_it_ended(settings, clock):
    settings.TIME_ZONE = "UTC"
    day = date(2026, 11, 28)
    clock(midnight(day) + timedelta(hours=23, minutes=58))
    services.rollup_recount(day=day)  # before the day ended

    after = midnight(day + timedelta(days=1))
    assert day not in selectors.rolled_up_days(days=30, now=after + timedelta(hours=1))

    clock(after + timedelta(seconds=30))
    services.rollup_recount(day=day)  # too soon: a transaction may still commit
    assert day not in selectors.rolled_up_days(days=30, now=after + timedelta(hours=1))

    clock(after + selectors.ROLLUP_SETTLE)
    services.rollup_recount(day=day)
    assert day in selectors.rolled_up_days(days=30, now=after + timedelta(hours=1))
    # Counted in another time zone, a day is not the same day.
    settings.TIME_ZONE = "Asia/Riyadh"
    assert day not in selectors.rolled_up_days(days=30, now=after + timedelta(hours=1))


def rollup_rows() -> list[tuple]:
    return sorted(
        DailyRollup.objects.values_list(
            "fact", "day", "payment_gateway", "currency", "status", "count", "amount"
        )
    )


@pytest.mark.django_db
def test_a_recount_replaces_rows_and_is_idempotent():
    now = timezone.now()
    random_history(random.Random(11), now, 120)
    first = services.rollups_refresh()
    rows = rollup_rows()
    assert len(rows) == first.rows > 0
    assert {fact for fact, *_ in rows} == set(RollupFact)

    second = services.rollups_refresh()

    assert rollup_rows() == rows and second.rows == first.rows
    assert RollupDay.objects.count() == first.days
    # A day whose payments are gone loses its rows at its next recount.
    day = timezone.localdate(now) - timedelta(days=10)
    created = DailyRollup.objects.filter(day=day, fact=RollupFact.CREATED)
    assert created.exists()
    low, high = selectors.paid_between(day, day)
    gone = Payment.objects.filter(date_created__gte=low, date_created__lt=high)
    Refund.objects.filter(payment__in=gone).delete()
    gone.delete()
    services.rollup_recount(day=day)
    assert not created.exists()


def refresh_at_once(threads: int = 2) -> list[dict]:
    """Run the scheduled task in several threads at the same moment."""
    barrier = threading.Barrier(threads)
    runs, errors = [], []

    def run():
        try:
            barrier.wait()
            runs.append(tasks.refresh_rollups())
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    started = [threading.Thread(target=run) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(120)
    assert errors == []
    return runs


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_time", [True, False])
def test_two_clusters_recounting_at_once_leave_one_set_of_rows(first_time):
    now = timezone.now()
    history = random_history(random.Random(5), now, 150)
    services.rollups_refresh()
    if first_time:
        DailyRollup.objects.all().delete()
        RollupDay.objects.all().delete()  # both runs create the day rows
    else:
        # Both runs find rows to replace (a late refund changed a past day).
        Refund.objects.create(
            payment=next(p for p in history["payments"] if p.date_paid),
            amount=Decimal("0.50"),
            currency="USD",
            status=RefundStatus.MANUAL,
            date_completed=now - timedelta(days=3),
        )
    runs = refresh_at_once()
    assert len(runs) == 2 and runs[0]["rows"] == runs[1]["rows"] > 0
    rows = rollup_rows()
    assert len(rows) == runs[0]["rows"]
    assert RollupDay.objects.count() == runs[0]["days"]
    # The same rows as one run alone makes.
    services.rollups_refresh()
    assert rollup_rows() == rows


@pytest.mark.django_db
def test_a_status_change_touches_no_rollup(plan):
    """No hot row: a payment's change writes nothing but the payment and its event."""
    services.rollups_refresh()
    rows = rollup_rows()
    payment = Payment.objects.create(
        plan=plan,
        email="a@example.com",
        amount=plan.price,
        currency=plan.currency,
        payment_gateway="sandbox",
    )
    with CaptureQueriesContext(connection) as queries:
        report(payment, S.COMPLETED)
    touched = [q["sql"] for q in queries if "rollup" in q["sql"].lower()]
    assert touched == []
    assert rollup_rows() == rows


@pytest.mark.django_db
def test_rebuild_rollups_recounts_a_range_with_a_progress_bar(clock, settings):
    now = clock(datetime(2026, 11, 29, 12, tzinfo=ZoneInfo("UTC")))
    random_history(random.Random(3), now, 80)
    out, err = StringIO(), StringIO()

    call_command(
        "rebuild_rollups",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-10",
        stdout=out,
        stderr=err,
    )

    assert "recounted 10 day(s), 2026-11-01 to 2026-11-10" in out.getvalue()
    assert "10/10" in err.getvalue()  # tqdm's bar
    days = set(RollupDay.objects.values_list("day", flat=True))
    assert days == {date(2026, 11, d) for d in range(1, 11)}
    assert set(DailyRollup.objects.values_list("day", flat=True)) <= days

    call_command("rebuild_rollups", stdout=out, stderr=StringIO())
    window = {
        date(2026, 11, 29) - timedelta(days=i)
        for i in range(settings.ROLLUP_WINDOW_DAYS)
    }
    assert set(RollupDay.objects.values_list("day", flat=True)) == days | window


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "yesterday"], "'yesterday' is not a date"),
        (["--to", "2026-13-01"], "'2026-13-01' is not a date"),
        (["--from", "2026-11-10", "--to", "2026-11-01"], "--from 2026-11-10 is after"),
        (["--to", "2026-11-30"], "--to 2026-11-30 is after today"),
    ],
)
def test_rebuild_rollups_refuses_bad_ranges(args, message, clock):
    clock(datetime(2026, 11, 29, 12, tzinfo=ZoneInfo("UTC")))
    with pytest.raises(CommandError, match=message):
        call_command("rebuild_rollups", *args, stdout=StringIO(), stderr=StringIO())
    assert not RollupDay.objects.exists()


@pytest.mark.django_db
def test_the_refresh_task_is_scheduled_by_name():
    from django_q.models import Schedule

    call_command("setup_schedules", stdout=StringIO())
    schedule = Schedule.objects.get(name="refresh-dashboard-rollups")
    assert schedule.func == "payments.tasks.refresh_rollups"
    assert schedule.minutes == 5 and schedule.repeats == -1
    assert "payments.tasks.refresh_rollups" in services.schedulable_tasks(
        allowed=tasks.SCHEDULABLE_TASKS
    )


@pytest.mark.django_db
def test_selectors_refuse_empty_windows():
    now = timezone.now()
    with pytest.raises(ValueError, match="at least one day"):
        selectors.daily_paid_volume(days=0, now=now)
    with pytest.raises(ValueError, match="recent_days must be 1..30"):
        selectors.gateway_stats(days=30, recent_days=31, now=now)


def test_only_the_rollup_service_writes_rollups_and_the_dashboard_reads_them():
    """No status change, webhook or refund path names the rollup models (parsed)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    names = {"DailyRollup", "RollupDay"}
    users = set()
    for path in sorted((root / "payments").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        found = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        found |= {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        if found & names:
            users.add(str(path.relative_to(root)))
    assert users == {
        "payments/selectors/dashboard.py",
        "payments/services/rollups.py",
    }
