"""Admin of the checkout catalogue: superusers edit and import, Finance reads.

Every save goes through `services.plan_save`, which validates the price for
its currency and records who changed a price, shown on the plan's page.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportMixin
from import_export.formats.base_formats import CSV, XLSX
from unfold.admin import TabularInline
from unfold.contrib.import_export.forms import ImportForm
from unfold.decorators import display

from .. import services
from ..models import Plan, PlanPriceChange
from ..resources import PLAN_FIELDS, PlanResource
from .common import BackofficeModelAdmin, ReadOnlyAdminMixin, money, superuser_only


class PriceChangeInline(ReadOnlyAdminMixin, TabularInline):
    model = PlanPriceChange
    verbose_name = _("price change")
    verbose_name_plural = _("price history")
    fields = ("changed_at", "changed_by", "old", "new")
    readonly_fields = fields
    extra = 0
    show_title = False

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("changed_by")

    @display(description=_("from"))
    def old(self, obj: PlanPriceChange) -> str:
        if obj.old_price is None:
            return "-"
        return money(obj.old_price, obj.old_currency)

    @display(description=_("to"))
    def new(self, obj: PlanPriceChange) -> str:
        return money(obj.new_price, obj.new_currency)


@admin.register(Plan)
class PlanAdmin(ImportMixin, BackofficeModelAdmin):
    list_display = ("code", "name", "price_display", "currency", "active", "sort_order")
    list_filter = ("active",)
    search_fields = ("code", "name")
    ordering = ("sort_order", "price")
    fields = PLAN_FIELDS
    inlines = (PriceChangeInline,)
    # Import from CSV/XLSX (superusers): each row validated, saved through
    # services.plan_save (price history kept).
    resource_classes = [PlanResource]
    import_formats = [CSV, XLSX]
    import_form_class = ImportForm

    def has_import_permission(self, request: HttpRequest) -> bool:
        return superuser_only(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return superuser_only(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return superuser_only(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return superuser_only(request)

    def get_fields(self, request: HttpRequest, obj=None):
        if self.has_change_permission(request, obj):
            return self.fields
        # Read-only viewers see the price at its currency's precision.
        return tuple("price_display" if f == "price" else f for f in self.fields)

    def save_model(self, request: HttpRequest, obj: Plan, form, change) -> None:
        # The form ran Plan.clean already: the service's check passes again.
        services.plan_save(plan=obj, user=request.user)

    @display(description=_("price"), ordering="price", formatting="price")
    def price_display(self, obj: Plan) -> str:
        return money(obj.price, obj.currency)
