"""Helpers shared by the payments admins: money, labels, permissions, filters."""

from __future__ import annotations

import html
import json
import sys
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.admin import FieldListFilter, widgets
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import models
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.functional import Promise, cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timezone import localtime
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import DropdownFilter, RangeDateFilter
from unfold.views import ChangeList

from .. import selectors
from ..models import DeliveryOutcome, EventKind, RefundStatus
from ..services import Actor
from ..states import PaymentStatus


def colours(choices: type[models.TextChoices], **variants: str) -> dict[str, str]:
    """Map every value of `choices` to an unfold label variant (grey by default).

    Unfold shows the raw value instead of its label for a value missing here.
    """
    return {value: variants.get(value, "default") for value in choices.values}


PAYMENT_STATUS_COLOURS = colours(
    PaymentStatus,
    PENDING="info",
    COMPLETED="success",
    FAILED="danger",
    PARTIALLY_REFUNDED="warning",
    REFUNDED="primary",
    VOIDED="danger",
)
REFUND_STATUS_COLOURS = colours(
    RefundStatus,
    AWAITING_APPROVAL="warning",
    PENDING="info",
    SUCCEEDED="success",
    FAILED="danger",
    MANUAL="primary",
)
EVENT_KIND_COLOURS = colours(
    EventKind,
    STATUS_CHANGE="primary",
    GATEWAY_ERROR="danger",
    REFUND_SUCCEEDED="success",
    REFUND_FAILED="danger",
    NOTE="info",
    REVIEW_FLAGGED="warning",
    REVIEW_RESOLVED="success",
    IGNORED_TRANSITION="warning",
    CHARGEBACK="danger",
    REFUND_APPROVED="success",
    REFUND_REJECTED="danger",
    REPAIR_PROPOSED="warning",
    REPAIR="primary",
)
DELIVERY_OUTCOME_COLOURS = colours(
    DeliveryOutcome,
    RECEIVED="info",
    APPLIED="success",
    REJECTED="danger",
    UNMATCHED="warning",
    REVIEW="warning",
    ERROR="danger",
)


money = selectors.money_text


# These run for every cell of a list: an f-string over `escaped` gives
# format_html's output at about half its cost.


def escaped(text: Any) -> str:
    """What conditional_escape returns, without its check for lazy arguments.

    Django's `escape` is wrapped by keep_lazy, which looks at every argument
    on every call; a list page calls it a few hundred times.
    """
    if isinstance(text, Promise):
        text = str(text)
    if hasattr(text, "__html__"):
        return text.__html__()
    return html.escape(str(text))


def nowrap(text: str) -> SafeString:
    """Keep a list cell on one line (references, amounts, dates)."""
    return SafeString(f'<span class="whitespace-nowrap">{escaped(text)}</span>')


def truncated(text: str, width: str = "max-w-48") -> SafeString:
    """Show a long value on one line, cut with an ellipsis; hovering shows it all."""
    shown = escaped(text)
    return SafeString(
        f'<span class="block truncate {width}" title="{shown}">{shown}</span>'
    )


def when(moment: datetime | None, *, now: datetime | None = None) -> SafeString:
    """Show a time compactly ("7 Dec 14:03", the year when not this one).

    The full local timestamp is the cell's tooltip; a missing time is "-".
    """
    if moment is None:
        return SafeString("-")
    local = localtime(moment)
    year = "" if local.year == localtime(now or timezone.now()).year else " %Y"
    # strftime, not Django's date filter: this runs for every cell of a list.
    shown = f"{local.day} {local.strftime(f'%b{year} %H:%M')}"
    full = local.strftime("%Y-%m-%d %H:%M:%S %Z")
    return SafeString(
        f'<span class="whitespace-nowrap" title="{escaped(full)}">'
        f"{escaped(shown)}</span>"
    )


# The classes of unfold's label template (unfold/helpers/label.html), per variant.
LABEL_CLASSES = {
    "info": "bg-blue-100 text-blue-700 dark:bg-blue-500/20 dark:text-blue-400",
    "danger": "bg-red-100 text-red-700 dark:bg-red-500/20 dark:text-red-400",
    "warning": "bg-orange-100 text-orange-700 dark:bg-orange-500/20 "
    "dark:text-orange-400",
    "success": "bg-green-100 text-green-700 dark:bg-green-500/20 dark:text-green-400",
    "primary": "bg-primary-100 text-primary-700 dark:bg-primary-500/20 "
    "dark:text-primary-400",
    "default": "bg-base-500/8 text-base-700 dark:bg-base-500/20 dark:text-base-200",
}


def label(value: str, text: Any, variants: dict[str, str]) -> SafeString:
    """Render an unfold-style label without a template per cell (list pages).

    Unlike unfold's own label it keeps the text's case: a status reads as its
    label ("Partially refunded") on every page, lists and dashboard alike,
    never as what looks like the stored code.
    """
    classes = LABEL_CLASSES.get(
        variants.get(value, "default"), LABEL_CLASSES["default"]
    )
    return format_html(
        '<span class="payments-label inline-block font-semibold rounded-default text-xs '
        'whitespace-nowrap h-6 leading-6 px-2 {}">{}</span>',
        classes,
        text,
    )


def pretty_json(value: Any) -> SafeString:
    """Show stored JSON indented, escaped."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="whitespace-pre-wrap text-xs">{}</pre>', text)


def preformatted(text: str) -> SafeString:
    """Show raw text (a webhook body) as it arrived, escaped."""
    return format_html(
        '<pre class="whitespace-pre-wrap break-all text-xs">{}</pre>', text
    )


def admin_actor(request: HttpRequest) -> Actor:
    """Return the actor recorded for changes made from the admin."""
    return Actor("admin", user=request.user)


def has_perm(request: HttpRequest, permission: str) -> bool:
    """Tell whether the user holds a permission (superusers hold them all)."""
    user = request.user
    return user.is_active and user.has_perm(permission)


def superuser_only(request: HttpRequest) -> bool:
    """Users, groups, plan edits and schedules belong to superusers alone."""
    return request.user.is_active and request.user.is_superuser


def find(model: type[Model], object_id: Any) -> Any:
    """Return the object with this primary key, or None (also for a malformed id)."""
    try:
        return model.objects.filter(pk=object_id).first()
    except (ValueError, TypeError, ValidationError):
        return None


def back_to(request: HttpRequest, url: str) -> HttpResponse:
    """Leave a dialog action for `url`: htmx follows HX-Redirect, a plain form a 302."""
    if request.headers.get("HX-Request"):
        return HttpResponse(headers={"HX-Redirect": url})
    return HttpResponseRedirect(url)


class CountAbove(int):
    """A row count known only to exceed `bound`: it reads "more than 10,000".

    Django's changelist compares its count with the page size and with
    `list_max_show_all`, and unfold's templates print it ("Select all N
    payments"). As a number it is larger than any page, so the list pages
    and never offers "Show all"; printed, it states only what is known.
    """

    bound: int

    def __new__(cls, bound: int) -> CountAbove:
        count = super().__new__(cls, sys.maxsize)
        count.bound = bound
        return count

    def __str__(self) -> str:
        return gettext("more than %(limit)s") % {"limit": f"{self.bound:,}"}

    __repr__ = __str__


class CountedPaginator(Paginator):
    """A list's paginator that tells the true count, cheaply.

    One `COUNT(*)` over a subquery stopped at ADMIN_EXACT_COUNT_LIMIT + 1
    rows: the exact count up to the limit, else `CountAbove`, whose pages go
    on as far as the rows do (Previous / Next, no page numbers).
    """

    template_name = "admin/payments/counted_pagination.html"

    @cached_property
    def count(self) -> int:
        limit = selectors.exact_count_limit()
        counted = selectors.bounded_count(self.object_list, limit=limit)
        return counted if counted <= limit else CountAbove(limit)

    @property
    def count_is_exact(self) -> bool:
        return not isinstance(self.count, CountAbove)


class CountedChangeList(ChangeList):
    """Unfold's changelist with the count in the footer, not in the header.

    Unfold's header says "N results (Show all)" whenever the full count is
    not shown, and its link opens the unfiltered list, not all the rows:
    making the two counts equal removes it. The paginator's template states
    the count; Django's "Show all" stays where it can show every row (an
    exact count up to `list_max_show_all`).
    """

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.full_result_count = self.result_count


class DeepPagePaginator(CountedPaginator):
    """A counted paginator, with deep pages found through the index.

    Past the first pages, `OFFSET` walks every skipped row and joins it; here
    the page's primary keys are picked first (an index-only walk when the
    order is an index's), then only those rows are read.
    """

    SHALLOW_PAGES = 10

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if number <= self.SHALLOW_PAGES or not isinstance(self.object_list, QuerySet):
            return super().page(number)
        ids = list(
            self.object_list.values_list("pk", flat=True)[
                bottom : bottom + self.per_page
            ]
        )
        rows = self.object_list.model._default_manager.none()
        if ids:
            rows = {obj.pk: obj for obj in self.object_list.filter(pk__in=ids)}
            rows = [rows[pk] for pk in ids if pk in rows]
        return self._get_page(list(rows), number, self)


class GatewayFilter(DropdownFilter):
    """Filter by gateway code from the registry's static list (no SELECT DISTINCT)."""

    title = _("gateway")
    parameter_name = "payment_gateway"
    field_name = "payment_gateway"

    def lookups(self, request, model_admin):
        return selectors.gateway_choices()

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() in dict(selectors.gateway_choices()):
            return queryset.filter(**{self.field_name: self.value()})
        return queryset


class DeliveryGatewayFilter(GatewayFilter):
    parameter_name = "gateway"
    field_name = "gateway"


class DateRangeFilter(RangeDateFilter):
    """Filter a datetime column by whole local days, both ends included.

    Unfold's date range compares a datetime with midnight, which drops the
    last day; this keeps plain `>=` / `<` bounds so an index still applies.
    Dates are read as the payment list reads them (`selectors.day_from_text`).
    """

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        start = self._day("_from")
        end = self._day("_to")
        if start is not None:
            queryset = queryset.filter(
                **{f"{self.field_path}__gte": selectors.local_day_start(start)}
            )
        if end is not None:
            end = selectors.local_day_start(end + timedelta(days=1))
            queryset = queryset.filter(**{f"{self.field_path}__lt": end})
        return queryset

    def _day(self, suffix: str) -> date | None:
        value = self.used_parameters.get(f"{self.parameter_name}{suffix}")
        if not isinstance(value, str) or not value.strip():
            return None
        try:
            return selectors.day_from_text(value)
        except ValueError:
            return None


class ReadOnlyAdminMixin:
    """Records written only by the services: staff may look, never add, edit or delete."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class BackofficeAdminMixin:
    """What every model admin of the back office shares (issue 22).

    Put first in each admin's bases (tests/payments/admin/test_admin.py walks
    the registry):

    - A list's address may hold only the parameters its own filters read.
      Django's `lookup_allowed` lets any lookup on a model's own fields
      through (`?gateway_data__key__startswith=...`), which answers "one row
      or none" about a column the page never shows; here anything else is
      refused (Django's DisallowedModelAdminLookup, a 400 page).
    - Pages are never framed: unfold marks its list and form pages
      `X-Frame-Options: SAMEORIGIN` (for its related-object dialogs), which
      contradicts the admin's CSP `frame-ancestors 'none'`; both say DENY.
    """

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if lookup in self.filter_parameters(request):
            return True
        # Django's raw-id popup narrows its list by the foreign key's
        # limit_choices_to: those exact (lookup, value) pairs stay allowed.
        for fk_lookup in self.model._meta.related_fkey_lookups:
            if callable(fk_lookup):
                fk_lookup = fk_lookup()
            params = widgets.url_params_from_lookup_dict(fk_lookup)
            if (lookup, value) in params.items():
                return True
        return False

    def filter_parameters(self, request: HttpRequest) -> frozenset[str]:
        """Return the query parameters this admin's list filters read."""
        # Built once per request: a filter may read the database to list
        # its choices, and Django asks once per parameter.
        known = request.__dict__.setdefault("_backoffice_filter_parameters", {})
        if self not in known:
            known[self] = frozenset(self._filter_parameters(request))
        return known[self]

    def _filter_parameters(self, request: HttpRequest) -> set[str]:
        names: set[str] = set()
        if self.date_hierarchy:
            names |= {
                f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day")
            }
        for list_filter in self.get_list_filter(request):
            spec = self._filter_spec(list_filter, request)
            names |= {name for name in spec.expected_parameters() if name}
        return names

    def _filter_spec(self, list_filter, request: HttpRequest):
        """Build a filter as Django's ChangeList.get_filters does, with no values."""
        if callable(list_filter):
            return list_filter(request, {}, self.model, self)
        if isinstance(list_filter, (tuple, list)):
            field, spec_class = list_filter
        else:
            field, spec_class = list_filter, FieldListFilter.create
        field_path = None
        if isinstance(field, str):
            field_path = field
            field = get_fields_from_path(self.model, field_path)[-1]
        return spec_class(field, request, {}, self.model, self, field_path=field_path)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        return _not_framed(super().changelist_view(request, extra_context))

    def changeform_view(self, request: HttpRequest, *args, **kwargs):
        return _not_framed(super().changeform_view(request, *args, **kwargs))


class BackofficeModelAdmin(BackofficeAdminMixin, ModelAdmin):
    """unfold's ModelAdmin with the back office's shared rules: every admin's base."""


def _not_framed(response: HttpResponse) -> HttpResponse:
    response["X-Frame-Options"] = "DENY"
    return response
