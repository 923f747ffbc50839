"""Data migrations keep what existing rows mean."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("payments", "0006_export_job")]
AFTER = [("payments", "0007_money_truth")]


@pytest.mark.django_db(transaction=True)
def test_refund_totals_without_rows_get_a_provider_row_of_their_own():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Plan, Payment = (
        old.get_model("payments", "Plan"),
        old.get_model("payments", "Payment"),
    )
    Refund = old.get_model("payments", "Refund")
    plan = Plan.objects.create(code="p", name="P", price="20.00", currency="USD")

    def payment(ref, refunded):
        return Payment.objects.create(
            ref_id=ref,
            plan=plan,
            email="a@example.com",
            amount=Decimal("20.00"),
            currency="USD",
            payment_gateway="mpgs",
            status="PARTIALLY_REFUNDED" if refunded else "COMPLETED",
            amount_paid=Decimal("20.00"),
            amount_refunded=Decimal(refunded),
        )

    # 8.00 sent from here plus 4.00 made in the portal, recorded as a total.
    mixed = payment("mixed-ref-0000000001", "12.00")
    Refund.objects.create(
        payment=mixed,
        amount=Decimal("8.00"),
        currency="USD",
        status="SUCCEEDED",
        idempotency_id="rf_ours",
    )
    payment("paid-ref-00000000002", "0")

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    Refund = new.get_model("payments", "Refund")
    rows = sorted(
        Refund.objects.values_list("payment__ref_id", "source", "amount", "status")
    )
    assert rows == [
        ("mixed-ref-0000000001", "backoffice", Decimal("8.00"), "SUCCEEDED"),
        ("mixed-ref-0000000001", "provider", Decimal("4.00"), "SUCCEEDED"),
    ]
    executor.loader.build_graph()
    MigrationExecutor(connection).migrate(
        MigrationExecutor(connection).loader.graph.leaf_nodes()
    )


@pytest.mark.django_db(transaction=True)
def test_refunds_recorded_by_hand_keep_saying_so_after_0011():
    before = [("payments", "0008_dashboard_rollups")]
    after = [("payments", "0011_approvals_repairs")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Plan, Payment = (
        old.get_model("payments", "Plan"),
        old.get_model("payments", "Payment"),
    )
    Refund = old.get_model("payments", "Refund")
    plan = Plan.objects.create(code="p", name="P", price="20.00", currency="USD")
    payment = Payment.objects.create(
        ref_id="manual-ref-000000001",
        plan=plan,
        email="a@example.com",
        amount=Decimal("20.00"),
        currency="USD",
        payment_gateway="coinpayments",
        status="REFUNDED",
        amount_paid=Decimal("20.00"),
        amount_refunded=Decimal("20.00"),
    )
    for ident, status in (("rf_by_hand", "MANUAL"), ("rf_sent", "SUCCEEDED")):
        Refund.objects.create(
            payment=payment,
            amount=Decimal("10.00"),
            currency="USD",
            status=status,
            idempotency_id=ident,
        )

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    new = executor.loader.project_state(after).apps
    rows = sorted(
        new.get_model("payments", "Refund").objects.values_list(
            "idempotency_id", "manual"
        )
    )
    assert rows == [("rf_by_hand", True), ("rf_sent", False)]
    executor.loader.build_graph()
    MigrationExecutor(connection).migrate(
        MigrationExecutor(connection).loader.graph.leaf_nodes()
    )
