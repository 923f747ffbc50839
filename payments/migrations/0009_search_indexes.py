"""Indexes of the payment list's forgiving search (selectors.payment_search).

References and gateway ids are matched whatever their case, through
expression indexes on LOWER(column) (declared in Payment.Meta). An e-mail
domain (`@example.com`) is a prefix of the reversed e-mail: on PostgreSQL,
`pay_email_domain` on REVERSE(LOWER(email)) with text_pattern_ops serves
that prefix LIKE whatever the database's collation. SQLite gets no such
index (the search scans there), so it is created here, for PostgreSQL only,
outside the model state. On a large table, create it beforehand with
CREATE INDEX CONCURRENTLY (docs/runbook.md); IF NOT EXISTS then skips it.
"""

import django.db.models.functions.text
from django.db import migrations, models

EMAIL_DOMAIN_INDEX = "pay_email_domain"


def create_email_domain_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {EMAIL_DOMAIN_INDEX} ON payments_payment "
        "(REVERSE(LOWER(email)) text_pattern_ops)"
    )


def drop_email_domain_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {EMAIL_DOMAIN_INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0008_dashboard_rollups"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="payment",
            index=models.Index(
                django.db.models.functions.text.Lower("ref_id"),
                name="pay_ref_id_lower",
            ),
        ),
        migrations.AddIndex(
            model_name="payment",
            index=models.Index(
                django.db.models.functions.text.Lower("gateway_transaction_id"),
                name="pay_gateway_txn_lower",
            ),
        ),
        migrations.AddIndex(
            model_name="payment",
            index=models.Index(
                django.db.models.functions.text.Lower("crypto_address"),
                name="pay_crypto_address_lower",
            ),
        ),
        migrations.RunPython(
            create_email_domain_index, drop_email_domain_index, elidable=False
        ),
    ]
