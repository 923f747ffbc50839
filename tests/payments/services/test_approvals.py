"""Four-eyes refunds: limits, the 24-hour window, approval, rejection, lapse."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from gateways.base import StatusResult
from payments import services
from payments.approval_limits import parse_approval_limits
from payments.exceptions import ApprovalNotAllowed, RefundNotAllowed
from payments.models import EventKind, Payment, Refund
from payments.roles import roles_setup
from payments.services.status import report_change
from payments.services.transitions import payments_change
from payments.tasks import lapse_refund_approvals

from .test_refunds import paid_payment

Status = Refund.Status
D = Decimal


@pytest.fixture
def people(django_user_model):
    """Two operators, an approver, a support user and a superuser."""
    roles_setup()

    def user(name: str, group: str | None = None, **extra):
        made = django_user_model.objects.create_user(name, is_staff=True, **extra)
        if group:
            made.groups.add(Group.objects.get(name=group))
        return made

    return {
        "alice": user("alice", "Operator"),
        "bob": user("bob", "Operator"),
        "anna": user("anna", "Approver"),
        "sam": user("sam", "Support"),
        "root": user("root", is_superuser=True),
    }


@pytest.fixture
def limits(settings):
    settings.REFUND_APPROVAL_LIMITS = parse_approval_limits("EUR:20,USD:100,*:5")
    return settings


def by(user) -> services.Actor:
    return services.Actor("admin", user=user)


def refund(payment, amount, user, **extra) -> Refund:
    return services.refund_request(
        payment_id=payment.pk, amount=D(amount), actor=by(user), **extra
    )


# --- REFUND_APPROVAL_LIMITS -----------------------------------------------------------


def test_limits_parse_per_currency_and_the_star():
    assert parse_approval_limits(" usd:100 , EUR:99.5,*:10 ") == {
        "USD": D("100"),
        "EUR": D("99.5"),
        "*": D("10"),
    }
    assert parse_approval_limits("") == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("USD100", "'USD100' is not CURRENCY:AMOUNT"),
        ("DOLLAR:100", "'DOLLAR:100' is not CURRENCY:AMOUNT"),
        ("USD:abc", "limit of USD must be a positive amount, not 'abc'"),
        ("USD:-5", "limit of USD must be a positive amount"),
        ("USD:0", "limit of USD must be a positive amount"),
        ("USD:NaN", "limit of USD must be a positive amount"),
        ("USD:1,usd:2", "USD is given twice"),
    ],
)
def test_bad_limits_stop_with_a_clear_message(text, problem):
    with pytest.raises(ImproperlyConfigured, match=problem):
        parse_approval_limits(text)


@pytest.mark.django_db
def test_without_limits_every_refund_is_sent_at_once(
    plan,
    sandbox,
    refund_calls,
    people,
):
    payment = paid_payment(plan, sandbox)
    done = refund(payment, "24", people["alice"])
    assert done.status == Status.SUCCEEDED and len(refund_calls) == 1


@pytest.mark.django_db
def test_at_or_above_the_currencys_limit_the_refund_waits_and_nothing_is_sent(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    payment = paid_payment(plan, sandbox)  # 24.00 EUR, limit EUR:20
    below = refund(payment, "19.99", people["alice"])
    assert below.status == Status.SUCCEEDED
    waiting = refund(payment, "0.01", people["alice"])  # 20.00 in 24 h: at the limit
    assert waiting.status == Status.AWAITING_APPROVAL
    assert refund_calls == [below.idempotency_id]
    [event] = payment.events.filter(
        kind=EventKind.REFUND_REQUESTED, data__refund=waiting.idempotency_id
    )
    assert "awaits approval (20.00 EUR refunded within 24 hours reaches" in (
        event.message
    )


@pytest.mark.django_db
def test_the_star_limit_covers_other_currencies_and_none_means_no_approval(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    payment = paid_payment(plan, sandbox)
    limits.REFUND_APPROVAL_LIMITS = parse_approval_limits("USD:100,*:5")
    assert refund(payment, "5", people["alice"]).status == Status.AWAITING_APPROVAL
    limits.REFUND_APPROVAL_LIMITS = parse_approval_limits("USD:1")
    assert refund(payment, "5", people["alice"]).status == Status.SUCCEEDED


@pytest.mark.django_db
def test_splitting_within_24_hours_does_not_get_round_the_limit(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    payment = paid_payment(plan, sandbox)
    first = refund(payment, "12", people["alice"])
    second = refund(payment, "8", people["bob"])  # 12 + 8 = 20: the limit
    assert (first.status, second.status) == (Status.SUCCEEDED, Status.AWAITING_APPROVAL)
    # A day later the earlier refund no longer counts.
    Refund.objects.filter(pk=first.pk).update(
        date_created=timezone.now() - timedelta(hours=25)
    )
    Refund.objects.filter(pk=second.pk).update(
        date_created=timezone.now() - timedelta(hours=25)
    )
    assert refund(payment, "4", people["alice"]).status == Status.SUCCEEDED


@pytest.mark.django_db
def test_failed_and_rejected_refunds_do_not_count_in_the_window(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
    gateway_settings,
):
    from gateways import registry
    from gateways.base import RefundResult, RefundStatus
    from payments.services.refunds import refund_finish

    payment = paid_payment(plan, sandbox)
    gateway_settings["sandbox"]["fail"] = "refund"
    registry.reset()
    lost = refund(payment, "19", people["alice"])
    assert lost.status == Status.PENDING  # counted while it may still happen
    assert refund(payment, "1", people["alice"]).status == Status.AWAITING_APPROVAL
    failed = refund_finish(
        refund_id=lost.pk,
        result=RefundResult(lost.idempotency_id, RefundStatus.FAILED, message="no"),
    )
    assert failed.status == Status.FAILED
    waiting = Refund.objects.get(status=Status.AWAITING_APPROVAL)
    services.refund_reject(refund_id=waiting.pk, actor=by(people["bob"]), reason="no")
    gateway_settings["sandbox"]["fail"] = ""
    registry.reset()
    # 19 failed and 1 rejected are left out: 19 more stays below 20.
    assert refund(payment, "19", people["alice"]).status == Status.SUCCEEDED


@pytest.mark.django_db
def test_manual_records_always_wait_while_limits_are_set(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    payment = paid_payment(plan, sandbox)
    record = refund(payment, "1", people["alice"], manual=True, reason="sent coins")
    assert record.status == Status.AWAITING_APPROVAL and record.manual
    payment.refresh_from_db()
    assert payment.amount_refunded == 0 and payment.status == Payment.Status.COMPLETED

    done = services.refund_approve(
        refund_id=record.pk, actor=by(people["anna"]), reason="tx seen on chain"
    )
    payment.refresh_from_db()
    assert done.status == Status.MANUAL and done.decided_by == people["anna"]
    assert payment.amount_refunded == D("1") and refund_calls == []


# --- approval -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_another_operator_approves_and_the_refund_is_sent_once(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    payment = paid_payment(plan, sandbox)
    waiting = refund(payment, "24", people["alice"], reason="unused")
    assert refund_calls == []

    done = services.refund_approve(
        refund_id=waiting.pk, actor=by(people["bob"]), reason="checked the usage"
    )

    assert done.status == Status.SUCCEEDED and refund_calls == [waiting.idempotency_id]
    assert (done.requested_by, done.decided_by) == (people["alice"], people["bob"])
    assert done.decision_reason == "checked the usage"
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUNDED
    [approved] = payment.events.filter(kind=EventKind.REFUND_APPROVED)
    assert "requested by alice approved by bob: checked the usage" in approved.message
    with pytest.raises(ApprovalNotAllowed, match="succeeded already"):
        services.refund_approve(
            refund_id=waiting.pk, actor=by(people["anna"]), reason="again"
        )
    assert len(refund_calls) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("requester", ["alice", "root"])
def test_the_requester_never_approves_their_own_refund(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
    requester,
):
    payment = paid_payment(plan, sandbox)
    waiting = refund(payment, "24", people[requester])
    for decide in (services.refund_approve, services.refund_reject):
        with pytest.raises(ApprovalNotAllowed, match="you requested this refund"):
            decide(refund_id=waiting.pk, actor=by(people[requester]), reason="me")
    waiting.refresh_from_db()
    assert waiting.status == Status.AWAITING_APPROVAL and refund_calls == []
    assert not services.may_decide_refund(people[requester], waiting)
    assert services.may_decide_refund(people["anna"], waiting)


@pytest.mark.django_db
def test_only_holders_of_approve_refund_decide_and_always_with_a_reason(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    payment = paid_payment(plan, sandbox)
    waiting = refund(payment, "24", people["alice"])
    with pytest.raises(ApprovalNotAllowed, match="may not approve"):
        services.refund_approve(
            refund_id=waiting.pk, actor=by(people["sam"]), reason="x"
        )
    with pytest.raises(ApprovalNotAllowed, match="give a reason"):
        services.refund_approve(
            refund_id=waiting.pk, actor=by(people["bob"]), reason=" "
        )
    waiting.refresh_from_db()
    assert waiting.status == Status.AWAITING_APPROVAL and refund_calls == []


def _report(payment: Payment, **fields) -> None:
    result = StatusResult(
        ref_id=payment.ref_id,
        amount=payment.amount,
        currency=payment.currency,
        **fields,
    )
    payments_change(
        decisions={payment.pk: lambda p: report_change(p, result)},
        actor=services.Actor("test"),
    )


@pytest.mark.django_db
def test_approval_rechecks_the_balance_after_a_chargeback(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    payment = paid_payment(plan, sandbox)
    waiting = refund(payment, "20", people["alice"])
    _report(payment, status="COMPLETED", amount_charged_back=D("10"))
    payment.refresh_from_db()
    assert payment.amount_charged_back == D("10")

    with pytest.raises(ApprovalNotAllowed, match=r"only 14.00 EUR can be refunded now"):
        services.refund_approve(
            refund_id=waiting.pk, actor=by(people["bob"]), reason="ok"
        )
    waiting.refresh_from_db()
    assert waiting.status == Status.AWAITING_APPROVAL and refund_calls == []
    rejected = services.refund_reject(
        refund_id=waiting.pk, actor=by(people["bob"]), reason="charged back"
    )
    assert rejected.status == Status.REJECTED and refund_calls == []


@pytest.mark.django_db
def test_approval_is_refused_once_the_payment_was_voided(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    payment = paid_payment(plan, sandbox)
    waiting = refund(payment, "20", people["alice"])
    _report(payment, status="VOIDED")
    payment.refresh_from_db()
    assert payment.status == Payment.Status.VOIDED

    with pytest.raises(ApprovalNotAllowed, match="the payment is voided now"):
        services.refund_approve(
            refund_id=waiting.pk, actor=by(people["bob"]), reason="ok"
        )
    assert refund_calls == []


@pytest.mark.django_db
def test_two_awaiting_requests_cannot_over_refund_together(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    payment = paid_payment(plan, sandbox)  # 24.00 EUR
    first = refund(payment, "20", people["alice"])
    assert services.refundable_amount(payment) == D("4")
    with pytest.raises(RefundNotAllowed, match="at most 4.00 EUR"):
        refund(payment, "10", people["bob"])
    second = refund(payment, "4", people["bob"])  # 24 in 24 h: waits too
    assert second.status == Status.AWAITING_APPROVAL
    for waiting, approver in ((first, "bob"), (second, "alice")):
        services.refund_approve(
            refund_id=waiting.pk, actor=by(people[approver]), reason="fine"
        )
    payment.refresh_from_db()
    assert payment.amount_refunded == D("24") and len(refund_calls) == 2


# --- rejection and lapse --------------------------------------------------------------


@pytest.mark.django_db
def test_a_rejected_refund_frees_its_amount_and_sends_nothing(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    payment = paid_payment(plan, sandbox)
    waiting = refund(payment, "24", people["alice"])
    assert services.refundable_amount(payment) == 0
    rejected = services.refund_reject(
        refund_id=waiting.pk, actor=by(people["anna"]), reason="customer used it"
    )
    assert rejected.status == Status.REJECTED and rejected.decided_by == people["anna"]
    assert services.refundable_amount(payment) == D("24") and refund_calls == []
    [event] = payment.events.filter(kind=EventKind.REFUND_REJECTED)
    assert "rejected by anna: customer used it" in event.message
    with pytest.raises(ApprovalNotAllowed, match="rejected already"):
        services.refund_approve(
            refund_id=waiting.pk, actor=by(people["bob"]), reason="x"
        )


@pytest.mark.django_db
def test_unapproved_requests_lapse_after_refund_approval_hours(
    plan,
    sandbox,
    refund_calls,
    people,
    limits,
):
    limits.REFUND_APPROVAL_HOURS = 48
    payment = paid_payment(plan, sandbox)
    old = refund(payment, "20", people["alice"])
    young = refund(payment, "4", people["alice"])
    Refund.objects.filter(pk=old.pk).update(
        date_created=timezone.now() - timedelta(hours=49)
    )
    Refund.objects.filter(pk=young.pk).update(
        date_created=timezone.now() - timedelta(hours=47)
    )

    assert lapse_refund_approvals() == 1
    assert lapse_refund_approvals() == 0  # safe to run twice
    old.refresh_from_db()
    young.refresh_from_db()
    assert (old.status, young.status) == (Status.LAPSED, Status.AWAITING_APPROVAL)
    [event] = payment.events.filter(kind=EventKind.REFUND_LAPSED)
    assert "not approved within 48 h; nothing was sent" in event.message
    assert services.refundable_amount(payment) == D("20") and refund_calls == []
    with pytest.raises(ApprovalNotAllowed, match="lapsed"):
        services.refund_approve(
            refund_id=old.pk, actor=by(people["bob"]), reason="late"
        )
    assert refund_calls == []


# --- two approvers at once, against the fake MPGS over real HTTP ------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_send_one_refund_call(
    live_server, plan, providers, people, limits
):
    import threading

    import requests
    from django.db import connection

    from tests.api import create_payment

    fake = providers
    created = create_payment(live_server.url, plan, "mpgs")
    payment = Payment.objects.get(ref_id=created["ref_id"])
    hosted = f"{fake.url}/checkout/pay/{payment.gateway_session_id}"
    assert (
        "Payment received"
        in requests.post(hosted, data={"action": "pay"}, timeout=10).text
    )
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    waiting = refund(payment, "24", people["alice"])
    assert waiting.status == Status.AWAITING_APPROVAL
    sent = fake.count("mpgs:refund")

    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def approver(name: str) -> None:
        try:
            barrier.wait()
            services.refund_approve(
                refund_id=waiting.pk, actor=by(people[name]), reason="agreed"
            )
            outcomes.append("approved")
        except ApprovalNotAllowed:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=approver, args=(name,))
        for name in ("bob", "anna", "root", "bob")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == ["approved"] + ["refused"] * 3
    assert fake.count("mpgs:refund") == sent + 1
    waiting.refresh_from_db()
    payment.refresh_from_db()
    assert waiting.status == Status.SUCCEEDED
    assert (payment.status, payment.amount_refunded) == (
        Payment.Status.REFUNDED,
        D("24.00"),
    )
    assert payment.events.filter(kind=EventKind.REFUND_APPROVED).count() == 1
