"""Admin of the checkout catalogue."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import display

from ..models import Plan
from .common import money


@admin.register(Plan)
class PlanAdmin(ModelAdmin):
    list_display = ("code", "name", "price_display", "currency", "active", "sort_order")
    list_filter = ("active",)
    search_fields = ("code", "name")
    ordering = ("sort_order", "price")
    fields = (
        "code",
        "name",
        "description",
        "price",
        "currency",
        "active",
        "sort_order",
    )

    @display(description=_("price"), ordering="price", formatting="price")
    def price_display(self, obj: Plan) -> str:
        return money(obj.price, obj.currency)
