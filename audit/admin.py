"""The audit log in the admin: read-only, filtered, downloadable as CSV.

Superusers and holders of audit.view_auditentry (the Finance role) see it;
nobody adds, changes or deletes an entry here (on PostgreSQL a trigger
refuses it at the table as well).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBadRequest, StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from unfold.contrib.filters.admin import DropdownFilter, FieldTextFilter
from unfold.decorators import display

from payments.admin.common import BackofficeModelAdmin, DateRangeFilter, pretty_json
from payments.services.exports import neutralise

from . import log
from .models import AuditEntry

CSV_COLUMNS = (
    "seq",
    "created_at",
    "actor",
    "actor_user_id",
    "ip",
    "action",
    "target_model",
    "target_id",
    "reason",
    "detail",
    "hash",
)


def action_names() -> list[str]:
    """Every action name of audit.log, for the filter (no SELECT DISTINCT)."""
    return sorted(
        value
        for name, value in vars(log).items()
        if name.isupper() and isinstance(value, str) and "." in value
    )


class ActionFilter(DropdownFilter):
    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return [(name, name) for name in action_names()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action=self.value())
        return queryset


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(entries) -> Iterator[str]:
    """Yield the CSV header and one formula-safe line per entry."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for entry in entries.iterator(chunk_size=2000):
        cells = [
            entry.seq,
            entry.created_at.isoformat(),
            entry.actor_username,
            "" if entry.actor_user_id is None else entry.actor_user_id,
            entry.ip or "",
            entry.action,
            entry.target_model,
            entry.target_id,
            entry.reason,
            log_detail_text(entry.detail),
            entry.hash,
        ]
        yield writer.writerow([neutralise(cell) for cell in cells])


def log_detail_text(detail) -> str:
    import json

    return json.dumps(detail, sort_keys=True, ensure_ascii=False) if detail else ""


@admin.register(AuditEntry)
class AuditEntryAdmin(BackofficeModelAdmin):
    list_display = (
        "seq",
        "created_at",
        "actor",
        "action",
        "target",
        "ip",
        "reason_short",
    )
    list_filter = (
        ActionFilter,
        ("actor_username", FieldTextFilter),
        ("target_model", FieldTextFilter),
        ("target_id", FieldTextFilter),
        ("created_at", DateRangeFilter),
    )
    list_filter_submit = True
    search_fields = ("actor_username", "target_id")
    search_help_text = "Username, or an object's id."
    ordering = ("-seq",)
    list_per_page = 100
    show_full_result_count = False
    list_before_template = "audit/download_link.html"
    fields = (
        "seq",
        "created_at",
        "actor",
        "ip",
        "action",
        "target",
        "reason",
        "detail_pretty",
        "prev_hash",
        "hash",
    )
    readonly_fields = fields
    actions = None

    @display(description="Actor", ordering="actor_username")
    def actor(self, obj: AuditEntry) -> str:
        return obj.actor_display

    @display(description="Object")
    def target(self, obj: AuditEntry) -> str:
        return obj.target_display

    @display(description="Reason")
    def reason_short(self, obj: AuditEntry) -> str:
        return obj.reason if len(obj.reason) <= 60 else obj.reason[:59] + "…"

    @display(description="Detail")
    def detail_pretty(self, obj: AuditEntry):
        return pretty_json(obj.detail)

    def _may_view(self, request: HttpRequest) -> bool:
        user = request.user
        return user.is_active and (
            user.is_superuser or user.has_perm("audit.view_auditentry")
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._may_view(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._may_view(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path(
                "csv/",
                self.admin_site.admin_view(self.csv_view),
                name="audit_auditentry_csv",
            ),
            *super().get_urls(),
        ]

    def csv_view(self, request: HttpRequest):
        """Stream the entries of the list's filters as CSV, oldest first."""
        if not self._may_view(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("These filters are not valid.")
        entries = changelist.get_queryset(request).order_by("seq")
        log.record(
            log.AUDIT_DOWNLOADED,
            request=request,
            target=(AuditEntry._meta.label_lower, ""),
            detail={"filters": request.GET.urlencode()[:500]},
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return StreamingHttpResponse(
            csv_lines(entries),
            content_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'
            },
        )
