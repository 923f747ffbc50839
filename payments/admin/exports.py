"""Finance in the admin: payment exports, background export jobs, settlement report.

The payment changelist gets django-import-export's **Export** button (the
filtered and searched list) and its **Export selected** action, for users
holding `payments.export_payment`. Its rows, like the list's, are
`selectors.payment_list` of the filters in the query string. The files are
written by `services.exports` (streamed; formula-safe), not by a tablib
dataset: up to `EXPORT_SYNC_LIMIT` rows in the request, more by an
`ExportJob` that a django-q2 cluster runs from the stored filters; its
requester follows the progress on the job's page and downloads the file there.
"""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.db.models.fields import BLANK_CHOICE_DASH
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
)
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from import_export.admin import ExportActionMixin
from import_export.formats.base_formats import CSV, XLSX
from unfold.contrib.filters.admin import ChoicesDropdownFilter
from unfold.contrib.import_export.forms import ExportForm
from unfold.decorators import display

from audit import log as audit_log

from .. import selectors, tasks
from ..models import ExportFormat, ExportJob, ExportStatus
from ..resources import PaymentResource
from ..services import exports
from .common import (
    BackofficeModelAdmin,
    ReadOnlyAdminMixin,
    has_perm,
    label,
    money,
    when,
)

EXPORT_PERMISSION = "payments.export_payment"
SETTLEMENT_PERMISSION = "payments.view_settlement"
FORMATS = {CSV: ExportFormat.CSV, XLSX: ExportFormat.XLSX}
JOB_STATUS_COLOURS = {
    ExportStatus.QUEUED: "info",
    ExportStatus.RUNNING: "primary",
    ExportStatus.DONE: "success",
    ExportStatus.FAILED: "danger",
    ExportStatus.EXPIRED: "default",
}


def export_filters(request: HttpRequest) -> str:
    """Return the list's filters and search as a job stores them (a query string).

    The values as `selectors.payment_filters_from_query` read them, written
    out again: ISO dates, whatever the locale they were typed in. Raise
    PaymentFilterError for a value the list cannot filter by.
    """
    return selectors.payment_filters_from_query(request.GET).as_query()


def filter_names(query: str) -> list[str]:
    """The names of an export's filters, without their values (audit log)."""
    return sorted(QueryDict(query).keys())


class PaymentExportMixin(ExportActionMixin):
    """Export and Export selected, streamed, in the background when large."""

    resource_classes = [PaymentResource]
    export_formats = [CSV, XLSX]
    export_form_class = ExportForm
    # The payment page has its own actions; no export button there.
    show_change_form_export = False
    change_form_template = None
    # import-export's form, headed by the number of rows it will write.
    export_template_name = "admin/payments/payment/export.html"

    def has_export_permission(self, request: HttpRequest) -> bool:
        return has_perm(request, EXPORT_PERMISSION)

    # Django 6.1 passes the page an action list is for (`action_location`).
    # import-export's get_actions() and unfold's get_action_choices() predate
    # it; for such overrides Django reads their source file on every call to
    # place a deprecation warning and offers no actions on
    # the change form. These two keep exactly that behaviour, in the new form.
    def get_actions(
        self, request: HttpRequest, action_location=ActionLocation.CHANGE_LIST
    ) -> dict:
        if action_location != ActionLocation.CHANGE_LIST:
            return {}
        return super().get_actions(request)

    def get_action_choices(
        self,
        request: HttpRequest,
        default_choices=BLANK_CHOICE_DASH,
        action_location=ActionLocation.CHANGE_LIST,
    ) -> list[tuple[str, str]]:
        return super().get_action_choices(request, default_choices)

    def get_export_queryset(self, request: HttpRequest) -> QuerySet:
        """Return the payments of the list's filters and search, newest first.

        The rows of `selectors.payment_list`, as on the list and in a
        background job; a column the list was sorted by does not reorder them.
        """
        return selectors.payment_list(
            filters=selectors.payment_filters_from_query(request.GET)
        )

    def init_request_context_data(self, request: HttpRequest, form) -> dict:
        """Add how many rows the export of the list's filters will write.

        Exact up to ADMIN_EXACT_COUNT_LIMIT, else "more than" it with the
        planner's estimate (PostgreSQL). Not for ticked rows: the form counts
        those itself.
        """
        context = super().init_request_context_data(request, form)
        if "export_items" not in form.initial and "export_items" not in request.POST:
            rows = selectors.row_count(self.get_export_queryset(request), estimate=True)
            context["export_row_count"] = rows
            # Known only when the count is exact or already past the limit.
            context["export_in_background"] = (
                rows.exact > request_limit()
                if rows.is_exact
                else rows.limit >= request_limit()
            )
        return context

    def export_action(self, request: HttpRequest):
        try:
            return super().export_action(request)
        except selectors.PaymentFilterError as exc:
            messages.error(
                request,
                _("These filters are not valid, nothing was exported: %s") % exc,
            )
            return HttpResponseRedirect(reverse("admin:payments_payment_changelist"))

    def export_admin_action(self, request: HttpRequest, queryset):
        """Export the ticked payments; "select all" exports the filters instead.

        Ticking "select all N payments" sends the filters, not the ids: the
        export form then exports the filtered list without listing its keys.
        """
        if not self.has_export_permission(request):
            raise PermissionDenied
        if request.POST.get("select_across") != "1":
            return super().export_admin_action(request, queryset)
        url = reverse("admin:payments_payment_export")
        filters = export_filters(request)
        return HttpResponseRedirect(f"{url}?{filters}" if filters else url)

    def get_valid_export_item_pks(self, request: HttpRequest):
        """Return only the posted keys that the filtered list holds.

        django-import-export's default lists every key of the table to check
        the posted ones against.
        """
        posted = [
            pk for pk in request.POST.getlist("export_items") if str(pk).isdigit()
        ]
        return (
            self.get_export_queryset(request)
            .filter(pk__in=posted)
            .values_list("pk", flat=True)
        )

    def _do_file_export(self, file_format, request, queryset, export_form=None):
        if not self.has_export_permission(request):
            raise PermissionDenied
        fmt = FORMATS[type(file_format)]
        limit = request_limit()
        selected = (
            export_form is not None and "export_items" in export_form.changed_data
        )
        # A bounded count: at most limit + 1 keys are read.
        if not selected and queryset[: limit + 1].count() > limit:
            return self._start_job(request, fmt)
        out, rows = exports.export_to_temporary(queryset, fmt)
        audit_log.record(
            audit_log.EXPORT_DOWNLOADED,
            request=request,
            target=("payments.payment", ""),
            detail={
                "format": fmt,
                "rows": rows,
                # Names only: a search value may be a customer's e-mail.
                "filters": filter_names(export_filters(request)),
                "selected": selected,
            },
        )
        return FileResponse(
            out,
            as_attachment=True,
            filename=exports.export_filename(fmt),
            content_type=exports.CONTENT_TYPES[fmt],
        )

    def _start_job(self, request: HttpRequest, fmt: str) -> HttpResponse:
        job = tasks.enqueue_export(
            user=request.user, filters=export_filters(request), fmt=fmt
        )
        audit_log.record(
            audit_log.EXPORT_REQUESTED,
            request=request,
            target=job,
            detail={"format": fmt, "filters": filter_names(job.filters)},
        )
        messages.success(
            request,
            _(
                "More than %(limit)s payments: export #%(job)s is being written in "
                "the background. Its progress and the file are on this page."
            )
            % {"limit": f"{request_limit():,}", "job": job.pk},
        )
        return HttpResponseRedirect(
            reverse("admin:payments_exportjob_change", args=[job.pk])
        )

    def get_urls(self):
        return [
            path(
                "settlement/",
                self.admin_site.admin_view(settlement_view),
                name="payments_settlement",
            ),
            *super().get_urls(),
        ]


def request_limit() -> int:
    """The most rows an export writes within the request (EXPORT_SYNC_LIMIT)."""
    return settings.EXPORT_SYNC_LIMIT


# -- export jobs ----------------------------------------------------------------------------


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdminMixin, BackofficeModelAdmin):
    """Export jobs: Finance sees all; a requester sees their own.

    Until a job ends, its page and the list keep its status, progress, rows,
    file and times current: static/payments/export_job.js polls the job's
    state (`state_view`, JSON of the same cells as rendered here) every few
    seconds and stops once the job is done, failed or expired.
    """

    list_display = (
        "__str__",
        "requested_by",
        "status_label",
        "progress_bar",
        "rows_display",
        "created",
        "finished_display",
        "expires_display",
        "download",
    )
    list_filter = (("status", ChoicesDropdownFilter), "format")
    list_select_related = ("requested_by",)
    list_per_page = 50
    fields = (
        "requested_by",
        "filters_display",
        "format",
        "status_label",
        "progress_bar",
        "expected_display",
        "rows_display",
        "size_display",
        "download",
        "error_display",
        "created_at",
        "started_display",
        "finished_display",
        "duration_display",
        "expires_display",
    )
    readonly_fields = fields

    class Media:
        js = ("payments/export_job.js",)

    def _may_export(self, request: HttpRequest) -> bool:
        return has_perm(request, EXPORT_PERMISSION)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._may_export(request) or self._has_own_jobs(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        if self._may_export(request):
            return True
        if obj is None:
            return self._has_own_jobs(request)
        return obj.requested_by_id == request.user.pk

    def _has_own_jobs(self, request: HttpRequest) -> bool:
        user = request.user
        return (
            user.is_active
            and user.is_staff
            and ExportJob.objects.filter(requested_by=user).exists()
        )

    def get_queryset(self, request: HttpRequest):
        queryset = super().get_queryset(request)
        if self._may_export(request):
            return queryset
        return queryset.filter(requested_by=request.user)

    def get_urls(self):
        return [
            path(
                "<int:job_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="payments_exportjob_download",
            ),
            path(
                "<int:job_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="payments_exportjob_progress",
            ),
            path(
                "<int:job_id>/state/",
                self.admin_site.admin_view(self.state_view),
                name="payments_exportjob_state",
            ),
            *super().get_urls(),
        ]

    def _job_for(self, request: HttpRequest, job_id: int) -> ExportJob:
        job = ExportJob.objects.filter(pk=job_id).first()
        # Someone else's job answers as a missing one: ids are not to be probed.
        if job is None or not (
            self._may_export(request) or job.requested_by_id == request.user.pk
        ):
            raise Http404("no such export")
        return job

    def download_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """Send the file to its requester or to a user who may export payments."""
        job = self._job_for(request, job_id)
        if job.status != ExportStatus.DONE or not job.file:
            raise Http404("this export has no file (not finished, or expired)")
        try:
            handle = job.file.open("rb")
        except FileNotFoundError as exc:
            raise Http404("the export file is gone") from exc
        audit_log.record(
            audit_log.EXPORT_DOWNLOADED,
            request=request,
            target=job,
            detail={"format": job.format},
        )
        return FileResponse(
            handle,
            as_attachment=True,
            filename=job.file.name.rsplit("/", 1)[-1],
            content_type=exports.CONTENT_TYPES[job.format],
        )

    def progress_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """The progress bar alone (its cell as the job's page shows it)."""
        job = self._job_for(request, job_id)
        return HttpResponse(self.progress_bar(job))

    @display(description=_("created"), ordering="created_at")
    def created(self, obj: ExportJob):
        return when(obj.created_at)

    def state_view(self, request: HttpRequest, job_id: int) -> JsonResponse:
        """The job's changing cells, as HTML, and whether it is still running.

        Polled by static/payments/export_job.js; never cached.
        """
        job = self._job_for(request, job_id)
        response = JsonResponse(
            {
                "job": job.pk,
                "status": job.status,
                "running": job_running(job),
                "cells": {name: str(html) for name, html in job_cells(job).items()},
            }
        )
        response["Cache-Control"] = "no-store"
        return response

    def _cell(self, obj: ExportJob, name: str):
        """One changing cell, marked for the poller (it replaces the inner HTML)."""
        if not obj.pk:
            return job_cells(obj)[name]
        state = ""
        if name == "status":
            # The poller's handle: where to ask, and whether to keep asking.
            state = format_html(
                ' data-export-state="{}" data-export-running="{}"',
                reverse("admin:payments_exportjob_state", args=[obj.pk]),
                "1" if job_running(obj) else "0",
            )
        return format_html(
            '<span data-export-job="{}" data-export-cell="{}"{}>{}</span>',
            obj.pk,
            name,
            state,
            job_cells(obj)[name],
        )

    @display(description=_("status"), ordering="status")
    def status_label(self, obj: ExportJob):
        return self._cell(obj, "status")

    @display(description=_("progress"))
    def progress_bar(self, obj: ExportJob):
        return self._cell(obj, "progress")

    @display(description=_("expected rows"))
    def expected_display(self, obj: ExportJob):
        return self._cell(obj, "expected")

    @display(description=_("rows"), ordering="row_count")
    def rows_display(self, obj: ExportJob):
        return self._cell(obj, "rows")

    @display(description=_("file size"))
    def size_display(self, obj: ExportJob):
        return self._cell(obj, "size")

    @display(description=_("file"))
    def download(self, obj: ExportJob):
        return self._cell(obj, "file")

    @display(description=_("error"))
    def error_display(self, obj: ExportJob):
        return self._cell(obj, "error")

    @display(description=_("started at"))
    def started_display(self, obj: ExportJob):
        return self._cell(obj, "started")

    @display(description=_("finished at"), ordering="finished_at")
    def finished_display(self, obj: ExportJob):
        return self._cell(obj, "finished")

    @display(description=_("duration"))
    def duration_display(self, obj: ExportJob):
        return self._cell(obj, "duration")

    @display(description=_("expires at"), ordering="expires_at")
    def expires_display(self, obj: ExportJob):
        return self._cell(obj, "expires")

    @display(description=_("filters"))
    def filters_display(self, obj: ExportJob):
        return obj.filters or _("(none: every payment)")


def job_running(job: ExportJob) -> bool:
    """Tell whether a job may still change (queued or running)."""
    return job.status in (ExportStatus.QUEUED, ExportStatus.RUNNING)


def _when(value) -> str:
    """A time compactly, the full timestamp on hover (as on every list)."""
    return when(value)


def _download_link(job: ExportJob):
    if job.status != ExportStatus.DONE or not job.file:
        return "-"
    url = reverse("admin:payments_exportjob_download", args=[job.pk])
    return format_html(
        '<a class="text-primary-600 underline" href="{}">{}</a>', url, _("Download")
    )


def job_cells(job: ExportJob) -> dict[str, str]:
    """The HTML of each cell of a job that changes while it runs."""
    progress = format_html(
        '<div class="flex items-center gap-2 min-w-32" data-progress="{}">'
        '<div class="bg-base-200 dark:bg-base-700 h-2 rounded-full w-24">'
        '<div class="bg-primary-600 h-2 rounded-full" style="width: {}%"></div>'
        "</div><span>{} %</span> {}</div>",
        job.progress,
        job.progress,
        job.progress,
        _download_link(job) if job.status == ExportStatus.DONE else "",
    )
    return {
        "status": label(job.status, job.get_status_display(), JOB_STATUS_COLOURS),
        "progress": progress,
        "expected": "-" if job.expected_rows is None else f"{job.expected_rows:,}",
        "rows": "-" if job.row_count is None else f"{job.row_count:,}",
        "size": "-" if job.file_size is None else filesizeformat(job.file_size),
        "file": _download_link(job),
        "error": job.error or "-",
        "started": _when(job.started_at),
        "finished": _when(job.finished_at),
        "duration": (f"{job.duration.total_seconds():.1f} s" if job.duration else "-"),
        "expires": _when(job.expires_at),
    }


# -- settlement summary ---------------------------------------------------------------------


class SettlementForm(forms.Form):
    start = forms.DateField(label=_("Paid from"))
    end = forms.DateField(label=_("Paid to (included)"))

    MAX_DAYS = 366

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if end < start:
                self.add_error("end", _("must not be before the start"))
            elif (end - start).days >= self.MAX_DAYS:
                self.add_error("end", _("a range covers a year at most"))
        return cleaned


def default_range(today: date) -> dict[str, date]:
    return {"start": today - timedelta(days=6), "end": today}


SETTLEMENT_PAGE_ROWS = 40


def settlement_view(request: HttpRequest) -> HttpResponse:
    """Payments paid per day (per month over 62 days), gateway and currency.

    Totals per currency come first and cover the whole range; the rows are
    paginated, and a month's row opens that month per day. The CSV and XLSX
    files always hold one row per day, whatever the page shows.
    """
    if not has_perm(request, SETTLEMENT_PERMISSION):
        raise PermissionDenied
    data = request.GET if "start" in request.GET else None
    today = timezone.localdate()
    form = SettlementForm(data, initial=default_range(today))
    if data is None:
        start, end = default_range(today).values()
        valid = True
    else:
        valid = form.is_valid()
        start, end = (form.cleaned_data.get("start"), form.cleaned_data.get("end"))
    fmt = request.GET.get("format")
    if valid and fmt in ExportFormat.values:
        rows = selectors.settlement_summary(start=start, end=end)
        out = exports.settlement_to_temporary(
            rows, selectors.settlement_totals(rows), fmt
        )
        audit_log.record(
            audit_log.EXPORT_DOWNLOADED,
            request=request,
            target=("payments.settlement", ""),
            detail={"format": fmt, "start": str(start), "end": str(end)},
        )
        return FileResponse(
            out,
            as_attachment=True,
            filename=f"settlement-{start}-{end}.{fmt}",
            content_type=exports.CONTENT_TYPES[fmt],
        )
    grouping = selectors.settlement_grouping(start, end) if valid else "day"
    rows = (
        selectors.settlement_summary(start=start, end=end, by=grouping) if valid else []
    )
    totals = selectors.settlement_totals(rows)
    page = Paginator(rows, SETTLEMENT_PAGE_ROWS).get_page(request.GET.get("page"))
    query = urlencode({"start": start, "end": end}) if valid else ""
    context = {
        **admin.site.each_context(request),
        "title": _("Settlement summary"),
        "form": form,
        "valid": valid,
        "start": start,
        "end": end,
        "by_month": grouping == "month",
        "daily_up_to": selectors.DAILY_UP_TO_DAYS,
        "totals": [_total(row) for row in totals],
        "table": {
            "headers": [
                _("Month") if grouping == "month" else _("Day"),
                *selectors.SETTLEMENT_HEADERS[1:],
            ],
            "rows": [_table_row(row, start, end) for row in page.object_list],
        },
        "page": page,
        "page_query": query,
        "has_rows": bool(rows),
        "csv_url": f"?{query}&format=csv",
        "xlsx_url": f"?{query}&format=xlsx",
    }
    return render(request, "admin/payments/settlement.html", context)


def _total(row: selectors.SettlementRow) -> dict:
    return {
        "currency": row.currency,
        "count": f"{row.count:,}",
        "paid": money(row.paid, row.currency),
        "refunded": money(row.refunded, row.currency),
        "net": money(row.net, row.currency),
    }


def _table_row(row: selectors.SettlementRow, start: date, end: date) -> list:
    if row.period == "month":
        first, last = selectors.month_range(row.day, start, end)
        month = format_html(
            '<a class="text-primary-600 dark:text-primary-500 whitespace-nowrap" '
            'href="?{}" title="{}">{}</a>',
            urlencode({"start": first, "end": last}),
            _("Open this month per day"),
            row.day.strftime("%b %Y"),
        )
    else:
        month = row.day.isoformat()
    return [
        month,
        row.gateway,
        row.currency,
        f"{row.count:,}",
        money(row.paid, row.currency),
        money(row.refunded, row.currency),
        money(row.net, row.currency),
    ]
