"""The admin dashboard: its figures, what each role sees, the sidebar badge."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backoffice.dashboard import review_badge
from payments import selectors, services
from payments.models import (
    DeliveryOutcome,
    Payment,
    ReconciliationRun,
    Refund,
    RefundStatus,
    WebhookDelivery,
)
from payments.roles import roles_setup
from payments.selectors import dashboard as dashboard_selectors
from payments.states import PaymentStatus as S
from tests.factories import PlanFactory, payment_in

pytestmark = pytest.mark.django_db


def make(
    status, *, gateway="sandbox", amount="10.00", currency="USD", age=None, **extra
):
    """A payment brought to `status` through the services, then dated `age` ago."""
    plan = PlanFactory(code=f"p-{currency}", price=Decimal(amount), currency=currency)
    payment = payment_in(
        status, plan=plan, amount=Decimal(amount), payment_gateway=gateway
    )
    now = timezone.now()
    created = now - (age or timedelta(minutes=5))
    fields = {"date_created": created, **extra}
    if status in (S.COMPLETED, S.PARTIALLY_REFUNDED, S.REFUNDED):
        fields.setdefault("date_paid", created + timedelta(minutes=1))
    Payment.objects.filter(pk=payment.pk).update(**fields)
    payment.refresh_from_db()
    return payment


@pytest.fixture
def data():
    day = timedelta(days=1)
    paid_today = make(S.COMPLETED, gateway="mpgs", amount="20.00")
    make(S.COMPLETED, gateway="mpgs", amount="30.00", age=3 * day)
    make(
        S.COMPLETED, gateway="coinpayments", amount="7.50", currency="EUR", age=2 * day
    )
    make(S.COMPLETED, gateway="mpgs", amount="99.00", age=45 * day)  # outside 30 days
    make(S.FAILED, gateway="mpgs", age=day)
    make(S.EXPIRED, gateway="coinpayments", age=day)
    make(S.PENDING, gateway="mpgs")
    stuck = make(S.PENDING, gateway="coinpayments", age=3 * day)
    flagged = make(
        S.COMPLETED,
        gateway="mpgs",
        amount="5.00",
        age=10 * day,
        needs_review=True,
        review_reason="amount mismatch",
    )
    Refund.objects.create(
        payment=paid_today,
        amount=Decimal("4.00"),
        currency="USD",
        status=RefundStatus.SUCCEEDED,
        date_completed=timezone.now(),
    )
    Refund.objects.create(
        payment=paid_today,
        amount=Decimal("1.00"),
        currency="USD",
        status=RefundStatus.FAILED,
        date_completed=timezone.now(),
    )
    ReconciliationRun.objects.create(
        trigger="schedule",
        checked=12,
        changed=3,
        errors=1,
        finished_at=timezone.now(),
    )
    WebhookDelivery.objects.create(
        gateway="mpgs", outcome=DeliveryOutcome.REJECTED, error="bad secret"
    )
    WebhookDelivery.objects.create(gateway="mpgs", outcome=DeliveryOutcome.APPLIED)
    return {"stuck": stuck, "flagged": flagged, "paid_today": paid_today}


def test_selectors_compute_the_figures(data):
    now = timezone.now()
    volumes = selectors.paid_volume(days=30, now=now)
    assert [(v.currency, v.amount, v.count) for v in volumes] == [
        ("USD", Decimal("55.00"), 3),
        ("EUR", Decimal("7.50"), 1),
    ]
    assert selectors.pending_counts(now=now) == (2, 1)
    assert selectors.needs_review_count() == 1
    refunds = selectors.refund_volume(days=30, now=now)
    assert [(v.currency, v.amount, v.count) for v in refunds] == [
        ("USD", Decimal("4.00"), 1)
    ]
    stats = {
        s.gateway: s for s in selectors.gateway_stats(days=30, recent_days=7, now=now)
    }
    # mpgs, last 7 days: 2 paid, 1 failed (the flagged one is 10 days old).
    assert (stats["mpgs"].recent_paid, stats["mpgs"].recent_ended) == (2, 3)
    assert stats["mpgs"].by_status == {"COMPLETED": 3, "FAILED": 1, "PENDING": 1}
    assert stats["coinpayments"].success_rate == 0.5
    attention = selectors.payments_needing_attention(now=now)
    assert [p.pk for p in attention] == [data["stuck"].pk, data["flagged"].pk]
    days = selectors.daily_paid_volume(days=30, now=now)
    assert len(days.dates) == 30 and days.dates[-1] == timezone.localdate(now)
    assert sum(days.amounts["USD"]) == Decimal("55.00")
    paid_on = timezone.localdate(data["paid_today"].date_paid)
    assert days.amounts["USD"][days.dates.index(paid_on)] == Decimal("20.00")
    assert [(v.currency, v.amount, v.count) for v in days.totals(30)] == [
        ("USD", Decimal("55.00"), 3),
        ("EUR", Decimal("7.50"), 1),
    ]


@pytest.mark.parametrize("zone", ["UTC", "Asia/Riyadh", "America/New_York"])
def test_each_payment_counts_on_its_local_day(zone, settings):
    """Around local midnights, over a DST change in New York (1 November 2026)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    settings.TIME_ZONE = zone
    local = ZoneInfo(zone)
    now = datetime(2026, 11, 29, 12, 0, tzinfo=local)
    first = datetime(2026, 10, 31, tzinfo=local)  # the window's first local midnight
    end = datetime(2026, 11, 30, tzinfo=local)  # and the one after it
    tick = timedelta(microseconds=1)
    moments = [first - tick, first, end - tick, end]  # the outside two are left out
    for day in (1, 2, 8, 28):  # each side of the DST change, and others
        midnight = datetime(2026, 11, day, tzinfo=local)
        moments += [midnight - tick, midnight, midnight + timedelta(hours=23)]
    currencies = ("USD", "EUR")
    for n, moment in enumerate(moments):
        make(
            S.COMPLETED,
            amount=f"{n + 1}.00",
            currency=currencies[n % 2],
            date_paid=moment,
        )

    days = selectors.daily_paid_volume(days=30, now=now)

    assert days.dates[0].isoformat() == "2026-10-31"
    assert days.dates[-1].isoformat() == "2026-11-29"
    expected = {c: [Decimal(0)] * 30 for c in currencies}
    counted = {c: [0] * 30 for c in currencies}
    for n, moment in enumerate(moments):
        if first <= moment < end:
            index = days.dates.index(moment.astimezone(local).date())
            expected[currencies[n % 2]][index] += Decimal(n + 1)
            counted[currencies[n % 2]][index] += 1
    assert days.amounts == expected
    assert days.counts == counted
    assert sum(sum(c) for c in counted.values()) == len(moments) - 2


def staff(client, django_user_model, role):
    roles_setup()
    user = django_user_model.objects.create_user(role.lower(), is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return client


BLOCKS = (
    "Paid today",
    "Needs review",
    "Refunds, last 30 days",
    "Last reconciliation",
    "Webhook problems",
    "Payments needing attention",
)


@pytest.mark.parametrize(
    ("role", "shown"),
    [
        ("Support", set(BLOCKS)),
        ("Operator", set(BLOCKS)),
        ("Finance", set(BLOCKS) - {"Last reconciliation", "Webhook problems"}),
    ],
)
def test_each_role_sees_only_what_it_can_open(
    client, django_user_model, data, role, shown
):
    page = staff(client, django_user_model, role).get(reverse("admin:index"))
    content = page.content.decode()
    assert page.status_code == 200
    assert {block for block in BLOCKS if block in content} == shown
    assert ("/admin/auth/user/" in content) is False
    assert ("/admin/django_q/schedule/" in content) is False


def test_dashboard_shows_the_numbers_and_charts(admin_client, data):
    page = admin_client.get(reverse("admin:index"))
    content = page.content.decode()
    assert "55.00 USD" in content and "7.50 EUR" in content
    assert "checked 12, changed 3, errors 1" in content
    assert data["stuck"].ref_id in content and "amount mismatch" in content
    chart = json.loads(page.context["status_chart"])
    assert chart["labels"] == ["coinpayments", "mpgs"]
    completed = next(d for d in chart["datasets"] if d["label"] == "Completed")
    assert completed["data"] == [1, 3]
    # Paid volume: one chart per currency, its value axis named after it.
    charts = page.context["volume_charts"]
    assert [c["currency"] for c in charts] == ["USD", "EUR"]  # largest first
    for item in charts:
        data = json.loads(item["data"])
        options = json.loads(item["options"])
        assert [d["label"] for d in data["datasets"]] == [item["currency"]]
        assert options["scales"]["y"]["title"]["text"] == f"Paid, {item['currency']}"
        assert options["scales"]["x"]["title"]["text"] == "Day (local)"
    deliveries = page.context["deliveries"]
    assert (
        deliveries["count"] == 1
        and deliveries["recent"][0]["outcome"] == "Rejected (signature)"
    )


@pytest.mark.parametrize("rolled_up", [True, False], ids=["rollups", "all-live"])
def test_dashboard_queries_do_not_grow_with_the_data(admin_client, data, rolled_up):
    # The first page renews the new session (a write once a minute at most).
    admin_client.get(reverse("admin:index"))
    if rolled_up:
        services.rollups_refresh()
    selectors.forget_review_badge()  # both pages count the badge
    with CaptureQueriesContext(connection) as few:
        admin_client.get(reverse("admin:index"))
    for i in range(30):
        make(
            S.COMPLETED, gateway="mpgs", age=timedelta(days=i % 20), needs_review=i % 2
        )
    if rolled_up:
        services.rollups_refresh()
    selectors.forget_review_badge()
    with CaptureQueriesContext(connection) as many:
        admin_client.get(reverse("admin:index"))
    assert len(many) == len(few)
    assert len(few) <= 16


def test_sidebar_badge_counts_payments_needing_review(rf, admin_user, data):
    request = rf.get("/admin/")
    request.user = admin_user
    assert review_badge(request) == "1"
    # A flag cleared through the services is counted at once.
    services.payment_resolve_review(
        payment_id=data["flagged"].pk,
        actor=services.Actor("admin", admin_user),
        message="ok",
    )
    assert review_badge(request) == ""
    # So is a payment saved through the ORM.
    data["stuck"].needs_review = True
    data["stuck"].save()
    assert review_badge(request) == "1"


def test_sidebar_badge_is_counted_at_most_every_few_seconds(
    rf, admin_user, data, settings, monkeypatch
):
    """A change this process did not make (another worker's) shows within
    REVIEW_BADGE_SECONDS; within them the badge costs no query."""
    settings.REVIEW_BADGE_SECONDS = 10
    clock = [1000.0]
    monkeypatch.setattr(dashboard_selectors.time, "monotonic", lambda: clock[0])
    request = rf.get("/admin/")
    request.user = admin_user
    assert review_badge(request) == "1"
    Payment.objects.update(needs_review=False)  # no signal, as from another process
    clock[0] += 9.9
    with CaptureQueriesContext(connection) as counted:
        assert review_badge(request) == "1"
    assert not [q for q in counted if "needs_review" in q["sql"]]
    clock[0] += 0.2
    assert review_badge(request) == ""
    settings.REVIEW_BADGE_SECONDS = 0
    Payment.objects.filter(pk=data["stuck"].pk).update(needs_review=True)
    assert review_badge(request) == "1"


def sidebar_badges(content: str) -> list[str]:
    return re.findall(r'class="sidebar-badge[^>]*>\s*([^<\s]+)\s*<', content)


def test_sidebar_shows_the_badge(admin_client, data):
    assert sidebar_badges(
        admin_client.get(reverse("admin:index")).content.decode()
    ) == ["1"]
    services.payment_resolve_review(
        payment_id=data["flagged"].pk, actor=services.Actor("admin"), message="ok"
    )
    assert (
        sidebar_badges(admin_client.get(reverse("admin:index")).content.decode()) == []
    )
