"""Four-eyes refunds and two-person repairs (issue 23, items 2 and 4)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def mark_manual_refunds(apps, schema_editor):
    """Refunds recorded by hand so far keep saying so in the new flag."""
    Refund = apps.get_model("payments", "Refund")
    Refund.objects.filter(status="MANUAL").update(manual=True)


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0010_delivery_hardening"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="PaymentRepair",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                (
                    "from_status",
                    models.CharField(
                        choices=[
                            ("PENDING", "Pending"),
                            ("COMPLETED", "Completed"),
                            ("FAILED", "Failed"),
                            ("EXPIRED", "Expired"),
                            ("PARTIALLY_REFUNDED", "Partially refunded"),
                            ("REFUNDED", "Refunded"),
                            ("VOIDED", "Voided"),
                        ],
                        max_length=24,
                    ),
                ),
                (
                    "to_status",
                    models.CharField(
                        choices=[
                            ("PENDING", "Pending"),
                            ("COMPLETED", "Completed"),
                            ("FAILED", "Failed"),
                            ("EXPIRED", "Expired"),
                            ("PARTIALLY_REFUNDED", "Partially refunded"),
                            ("REFUNDED", "Refunded"),
                            ("VOIDED", "Voided"),
                        ],
                        max_length=24,
                    ),
                ),
                ("reason", models.TextField()),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("PROPOSED", "Proposed"),
                            ("CONFIRMED", "Confirmed"),
                            ("REJECTED", "Rejected"),
                        ],
                        default="PROPOSED",
                        max_length=16,
                    ),
                ),
                ("proposed_at", models.DateTimeField(auto_now_add=True)),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("decision_reason", models.TextField(blank=True)),
            ],
            options={
                "ordering": ["-proposed_at", "-id"],
            },
        ),
        migrations.AlterModelOptions(
            name="payment",
            options={
                "ordering": ["-date_created"],
                "permissions": [
                    ("refresh_payment", "Can refresh a payment from its gateway"),
                    ("note_payment", "Can add a note to a payment's timeline"),
                    (
                        "refund_payment",
                        "Can refund a payment or record a manual refund",
                    ),
                    (
                        "resolve_review_payment",
                        "Can resolve a payment flagged for review",
                    ),
                    ("export_payment", "Can export payments"),
                    ("view_settlement", "Can view settlement reports"),
                    (
                        "repair_payment",
                        "Can propose or confirm a repair of a payment the provider cannot settle",
                    ),
                ],
            },
        ),
        migrations.AlterModelOptions(
            name="refund",
            options={
                "ordering": ["-date_created"],
                "permissions": [
                    (
                        "approve_refund",
                        "Can approve or reject a refund awaiting approval",
                    )
                ],
            },
        ),
        migrations.AddField(
            model_name="refund",
            name="decided_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="refund",
            name="decided_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="refund",
            name="decision_reason",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="refund",
            name="manual",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(mark_manual_refunds, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="paymentevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("CREATED", "Created"),
                    ("CHECKOUT", "Checkout opened"),
                    ("STATUS_CHANGE", "Status change"),
                    ("WEBHOOK", "Webhook"),
                    ("REFRESH", "Refresh"),
                    ("RETURN", "Payer returned"),
                    ("GATEWAY_ERROR", "Gateway error"),
                    ("REFUND_REQUESTED", "Refund requested"),
                    ("REFUND_SUCCEEDED", "Refund succeeded"),
                    ("REFUND_FAILED", "Refund failed"),
                    ("NOTE", "Note"),
                    ("REVIEW_FLAGGED", "Flagged for review"),
                    ("REVIEW_RESOLVED", "Review resolved"),
                    ("IGNORED_TRANSITION", "Ignored transition"),
                    ("CHARGEBACK", "Chargeback"),
                    ("REFUND_APPROVED", "Refund approved"),
                    ("REFUND_REJECTED", "Refund rejected"),
                    ("REFUND_LAPSED", "Refund lapsed"),
                    ("REPAIR_PROPOSED", "Repair proposed"),
                    ("REPAIR_REJECTED", "Repair rejected"),
                    ("REPAIR", "Repair"),
                ],
                max_length=24,
            ),
        ),
        migrations.AlterField(
            model_name="refund",
            name="status",
            field=models.CharField(
                choices=[
                    ("AWAITING_APPROVAL", "Awaiting approval"),
                    ("PENDING", "Pending"),
                    ("SUCCEEDED", "Succeeded"),
                    ("FAILED", "Failed"),
                    ("MANUAL", "Manual (recorded)"),
                    ("REJECTED", "Rejected"),
                    ("LAPSED", "Lapsed (not approved in time)"),
                ],
                default="PENDING",
                max_length=24,
            ),
        ),
        migrations.AddIndex(
            model_name="refund",
            index=models.Index(
                condition=models.Q(("status", "AWAITING_APPROVAL")),
                fields=["date_created"],
                name="refund_awaiting",
            ),
        ),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("decided_by__isnull", True),
                    models.Q(("decided_by", models.F("requested_by")), _negated=True),
                    _connector="OR",
                ),
                name="refund_decided_by_another",
            ),
        ),
        migrations.AddField(
            model_name="paymentrepair",
            name="decided_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="paymentrepair",
            name="payment",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="repairs",
                to="payments.payment",
            ),
        ),
        migrations.AddField(
            model_name="paymentrepair",
            name="proposed_by",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddConstraint(
            model_name="paymentrepair",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "PROPOSED")),
                fields=("payment",),
                name="repair_one_open_per_payment",
            ),
        ),
        migrations.AddConstraint(
            model_name="paymentrepair",
            constraint=models.CheckConstraint(
                condition=models.Q(("reason", ""), _negated=True),
                name="repair_reason_given",
            ),
        ),
        migrations.AddConstraint(
            model_name="paymentrepair",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("decided_by__isnull", True),
                    models.Q(("decided_by", models.F("proposed_by")), _negated=True),
                    _connector="OR",
                ),
                name="repair_decided_by_another",
            ),
        ),
    ]
