"""django-import-export resources: payments (export only) and plans (import).

`PaymentResource` has the columns, order and headers of every payment export
(`services.exports.COLUMNS`) and applies the same cell rules: formula-safe
text, amounts at their currency's precision, dates in UTC. The admin's
exports stream through `services.exports` instead of building a tablib
dataset in memory; this resource is what django-import-export's own
machinery exports (the benchmark's baseline). Payments are never imported:
only the services write them.
"""

from __future__ import annotations

from typing import Any

from import_export import fields, resources

from .models import Payment, Plan
from .services import plan_save
from .services.exports import CHUNK_ROWS, COLUMNS, cell_converters


class PaymentsAreReadOnly(Exception):
    """Payments are changed by the services only, never by an import."""


class PaymentResource(resources.ModelResource):
    """Payments as Finance reads them; export only."""

    # One field per export column, named as the column, headed by its header.
    locals().update(
        {
            column.name: fields.Field(
                attribute=None if column.source == "net" else column.source,
                column_name=column.header,
                readonly=True,
            )
            for column in COLUMNS
        }
    )

    class Meta:
        model = Payment
        fields = tuple(column.name for column in COLUMNS)
        export_order = tuple(column.name for column in COLUMNS)
        chunk_size = CHUNK_ROWS

    def get_queryset(self):
        return super().get_queryset().select_related("plan")

    def export_field(self, field, instance, **kwargs) -> Any:
        """Export a cell by the exports' rules (native types kept for XLSX)."""
        native = bool(kwargs.get("force_native_type"))
        name, convert = _CONVERTERS[native][field.column_name]
        if name == "net":
            value = instance.amount_paid - instance.amount_refunded
        else:
            value = field.get_value(instance)
        return convert(value, instance.currency)

    def import_data(self, *args, **kwargs):
        raise PaymentsAreReadOnly("payments cannot be imported")


_CONVERTERS = {
    native: {
        column.header: (column.name, convert)
        for column, convert in zip(
            COLUMNS, cell_converters(for_xlsx=native), strict=True
        )
    }
    for native in (False, True)
}


# A plan's editable fields: the plan page's form and the plan import's columns.
PLAN_FIELDS = (
    "code",
    "name",
    "description",
    "price",
    "currency",
    "active",
    "sort_order",
)


class PlanResource(resources.ModelResource):
    """The checkout catalogue from a CSV or XLSX file, keyed by plan code.

    Each row is validated like the plan form (ISO currency, price precision)
    and saved through `services.plan_save`, which records price changes and
    who made them.
    """

    class Meta:
        model = Plan
        import_id_fields = ("code",)
        fields = PLAN_FIELDS
        clean_model_instances = True
        skip_unchanged = True
        report_skipped = True
        use_transactions = True

    def before_save_instance(self, instance, row, **kwargs):
        self._importing_user = kwargs.get("user")

    def do_instance_save(self, instance, is_create):
        plan_save(plan=instance, user=getattr(self, "_importing_user", None))
