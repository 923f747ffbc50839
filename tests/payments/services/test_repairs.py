"""Repairs: a final status for a stuck payment needs a reason and two people."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import IntegrityError

from payments import services
from payments.exceptions import RepairNotAllowed
from payments.models import EventKind, Payment, PaymentRepair
from payments.states import REPAIR_TARGETS, TRANSITIONS, repair_targets
from tests.factories import PaymentFactory, payment_in

S = Payment.Status
pytestmark = pytest.mark.django_db


@pytest.fixture
def repairers(django_user_model):
    """Two staff users holding repair_payment, and one without it."""
    permission = Permission.objects.get(codename="repair_payment")

    def user(name: str, allowed: bool = True):
        made = django_user_model.objects.create_user(name, is_staff=True)
        if allowed:
            made.user_permissions.add(permission)
        return django_user_model.objects.get(pk=made.pk)  # fresh permission cache

    return user("rita"), user("ravi"), user("nina", allowed=False)


def by(user) -> services.Actor:
    return services.Actor("admin", user=user)


def test_every_repair_target_is_a_move_the_transition_table_allows():
    for source, targets in REPAIR_TARGETS.items():
        assert targets <= TRANSITIONS[source]
    assert repair_targets(S.PENDING) == {S.COMPLETED, S.FAILED, S.EXPIRED}
    assert repair_targets(S.EXPIRED) == {S.COMPLETED}
    assert repair_targets(S.COMPLETED) == frozenset()


def test_a_second_person_confirms_and_the_timeline_names_both(repairers):
    rita, ravi, _ = repairers
    payment = PaymentFactory()
    proposal = services.repair_propose(
        payment_id=payment.pk,
        actor=by(rita),
        to_status=S.COMPLETED,
        reason="bank statement 2026-12-01 shows 10.00 USD; the provider lost the order",
    )
    payment.refresh_from_db()
    assert payment.status == S.PENDING  # nothing changes on a proposal
    assert proposal.status == PaymentRepair.Status.PROPOSED

    done = services.repair_confirm(repair_id=proposal.pk, actor=by(ravi))

    payment.refresh_from_db()
    assert done.status == PaymentRepair.Status.CONFIRMED and done.decided_by == ravi
    assert payment.status == S.COMPLETED
    assert payment.amount_paid == payment.amount == Decimal("10.00")
    assert payment.date_paid is not None
    [repair] = payment.events.filter(kind=EventKind.REPAIR)
    assert "proposed by rita, confirmed by ravi" in repair.message
    assert "bank statement" in repair.message and repair.actor == ravi
    [change] = payment.events.filter(kind=EventKind.STATUS_CHANGE)
    assert (change.from_status, change.to_status) == (S.PENDING, S.COMPLETED)
    assert (
        change.data["proposed_by"] == "rita" and change.data["confirmed_by"] == "ravi"
    )


def test_the_proposer_cannot_confirm_or_reject_their_own_proposal(repairers):
    rita, _, _ = repairers
    payment = PaymentFactory()
    proposal = services.repair_propose(
        payment_id=payment.pk, actor=by(rita), to_status=S.FAILED, reason="lost"
    )
    with pytest.raises(RepairNotAllowed, match="you proposed this repair"):
        services.repair_confirm(repair_id=proposal.pk, actor=by(rita))
    with pytest.raises(RepairNotAllowed, match="you proposed this repair"):
        services.repair_reject(repair_id=proposal.pk, actor=by(rita), reason="no")
    payment.refresh_from_db()
    assert payment.status == S.PENDING
    # The database refuses it too.
    with pytest.raises(IntegrityError):
        PaymentRepair.objects.filter(pk=proposal.pk).update(decided_by=rita)


def test_a_reason_and_the_permission_are_required(repairers):
    rita, ravi, nina = repairers
    payment = PaymentFactory()
    with pytest.raises(RepairNotAllowed, match="give a reason"):
        services.repair_propose(
            payment_id=payment.pk, actor=by(rita), to_status=S.FAILED, reason="  "
        )
    with pytest.raises(RepairNotAllowed, match="may not repair"):
        services.repair_propose(
            payment_id=payment.pk, actor=by(nina), to_status=S.FAILED, reason="x"
        )
    proposal = services.repair_propose(
        payment_id=payment.pk, actor=by(rita), to_status=S.FAILED, reason="lost"
    )
    with pytest.raises(RepairNotAllowed, match="may not repair"):
        services.repair_confirm(repair_id=proposal.pk, actor=by(nina))
    with pytest.raises(RepairNotAllowed, match="give a reason"):
        services.repair_reject(repair_id=proposal.pk, actor=by(ravi), reason="")
    assert not payment.events.filter(kind=EventKind.REPAIR).exists()


@pytest.mark.parametrize(
    ("status", "target"),
    [
        (S.COMPLETED, S.FAILED),
        (S.PENDING, S.REFUNDED),
        (S.PENDING, S.PENDING),
        (S.EXPIRED, S.FAILED),
        (S.REFUNDED, S.COMPLETED),
    ],
)
def test_only_the_repair_tables_targets_may_be_proposed(repairers, status, target):
    rita, _, _ = repairers
    payment = payment_in(status)
    with pytest.raises(RepairNotAllowed, match="cannot be repaired to"):
        services.repair_propose(
            payment_id=payment.pk, actor=by(rita), to_status=target, reason="x"
        )
    assert not PaymentRepair.objects.exists()


def test_one_open_proposal_per_payment_and_a_rejection_changes_nothing(repairers):
    rita, ravi, _ = repairers
    payment = payment_in(S.EXPIRED)
    proposal = services.repair_propose(
        payment_id=payment.pk, actor=by(rita), to_status=S.COMPLETED, reason="paid late"
    )
    with pytest.raises(RepairNotAllowed, match="already awaits a decision"):
        services.repair_propose(
            payment_id=payment.pk, actor=by(ravi), to_status=S.COMPLETED, reason="y"
        )
    rejected = services.repair_reject(
        repair_id=proposal.pk, actor=by(ravi), reason="no money on the statement"
    )
    payment.refresh_from_db()
    assert rejected.status == PaymentRepair.Status.REJECTED
    assert payment.status == S.EXPIRED
    [event] = payment.events.filter(kind=EventKind.REPAIR_REJECTED)
    assert "rejected by ravi: no money on the statement" in event.message
    with pytest.raises(RepairNotAllowed, match="rejected already"):
        services.repair_confirm(repair_id=proposal.pk, actor=by(ravi))


def test_a_payment_that_moved_since_the_proposal_is_not_repaired(repairers):
    rita, ravi, _ = repairers
    payment = PaymentFactory()
    proposal = services.repair_propose(
        payment_id=payment.pk, actor=by(rita), to_status=S.FAILED, reason="lost"
    )
    from tests.factories import move_to

    move_to(S.COMPLETED, [payment])  # the provider settled it after all
    with pytest.raises(RepairNotAllowed, match="completed now, not PENDING"):
        services.repair_confirm(repair_id=proposal.pk, actor=by(ravi))
    payment.refresh_from_db()
    assert payment.status == S.COMPLETED


def test_a_failed_repair_keeps_its_reason(repairers):
    rita, ravi, _ = repairers
    payment = PaymentFactory()
    proposal = services.repair_propose(
        payment_id=payment.pk,
        actor=by(rita),
        to_status=S.FAILED,
        reason="provider has no such order",
    )
    services.repair_confirm(repair_id=proposal.pk, actor=by(ravi), reason="agreed")
    payment.refresh_from_db()
    assert payment.status == S.FAILED
    assert payment.failure_reason == "repaired: provider has no such order"
