"""Changelist rows rendered in one pass, with unfold's markup.

unfold builds every cell with `lookup_field` and `format_html`, reverses the
change URL for every row and renders each row through the template engine
(about a third of a 50-row payment page). The columns of a list are the same
on every row, so `FastRows` works out each column's tag, classes and display
callable once per page and then only calls the callables. The cells it makes
are the very strings unfold makes (a test compares them cell by cell); a list
it cannot render that way (editable, sortable by drag, sections, row actions,
a column that is not an admin method) falls back to unfold's own renderer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, time

from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ObjectDoesNotExist
from django.urls import NoReverseMatch, reverse
from django.utils.safestring import SafeData, SafeString, mark_safe

from ..unfold_internals import (
    LINK_CLASSES,
    STRIPES,
    TABLE_ACTION_CELL_CLASSES,
    TABLE_CELL_CLASSES,
    TEMPLATED_DISPLAYS,
    display_for_value,
)
from .common import escaped

PK_MARKER = "__changelist_pk__"
LINK_CLASS = " ".join(LINK_CLASSES)


@dataclass(frozen=True)
class Column:
    """How one column of the list renders, worked out once per page."""

    display: Callable
    opening: str  # "<td class=…>" or "<th class=…>"
    opening_nowrap: str  # the same for a date or time value (unfold adds "nowrap")
    closing: str
    empty: str
    boolean: bool
    link: bool


class FastRows:
    """Render a changelist's rows; `FastRows.for_changelist` is None if it cannot."""

    def __init__(
        self,
        cl: ChangeList,
        columns: list[Column],
        url_parts: tuple[str, str],
        empty: str,
    ):
        self.cl = cl
        self.columns = columns
        self.url_prefix, self.url_suffix = url_parts
        self.empty = empty

    @classmethod
    def for_changelist(cls, cl: ChangeList, actions_row=None) -> FastRows | None:
        """Plan the columns of `cl`, or return None when unfold must render it."""
        admin = cl.model_admin
        if (
            actions_row
            or getattr(cl, "formset", None)
            or cl.is_popup
            or cl.to_field
            or getattr(admin, "ordering_field", None)
            or getattr(admin, "list_sections", None)
            or cl.list_display_links is None
            # The URL is reversed once with a marker; only integer keys need no
            # quoting that reverse() would do differently per row.
            or cl.opts.pk.get_internal_type()
            not in ("AutoField", "BigAutoField", "SmallAutoField")
        ):
            return None
        default_empty = admin.get_empty_value_display()
        columns = []
        linked = False
        for name in cl.list_display:
            display = getattr(admin, name, None) if isinstance(name, str) else None
            if display is None or not callable(display):
                return None  # a model field or a plain callable: unfold's path
            if any(getattr(display, attr, False) for attr in TEMPLATED_DISPLAYS):
                return None
            if name == "action_checkbox":
                classes = list(TABLE_ACTION_CELL_CLASSES)
            else:
                classes = [f"field-{name}", *TABLE_CELL_CLASSES]
                if getattr(display, "formatting", None) == "price":
                    classes.append("!text-end")
            # As unfold's items_for_result: the first listed link column, or
            # the very first column when none is listed.
            link = not linked and (
                name in cl.list_display_links or not cl.list_display_links
            )
            tag = "th" if link else "td"
            linked = linked or link
            columns.append(
                Column(
                    display=display,
                    opening=f'<{tag} class="{" ".join(classes)}">',
                    opening_nowrap=f'<{tag} class="{" ".join([*classes, "nowrap"])}">',
                    closing=f"</{tag}>",
                    empty=str(getattr(display, "empty_value_display", default_empty)),
                    boolean=bool(getattr(display, "boolean", False)),
                    link=link,
                )
            )
        try:
            url = reverse(
                f"admin:{cl.opts.app_label}_{cl.opts.model_name}_change",
                args=(PK_MARKER,),
                current_app=admin.admin_site.name,
            )
        except NoReverseMatch:
            return None
        url = add_preserved_filters(
            {"preserved_filters": cl.preserved_filters, "opts": cl.opts}, url
        )
        prefix, _, suffix = url.partition(PK_MARKER)
        return cls(cl, columns, (prefix, suffix), str(default_empty))

    def cells(self, obj) -> list[str]:
        """Return the cells of one row, each as unfold's items_for_result makes it."""
        out = []
        for column in self.columns:
            opening = column.opening
            try:
                value = column.display(obj)
            except ObjectDoesNotExist:
                shown = escaped(self.empty)
            else:
                if isinstance(value, date | time):
                    opening = column.opening_nowrap
                shown = self._shown(value, column)
            if column.link:
                url = escaped(f"{self.url_prefix}{quote(obj.pk)}{self.url_suffix}")
                shown = f'<a href="{url}" class="{LINK_CLASS}" >{shown}</a>'
            out.append(opening + shown + column.closing)
        return out

    @staticmethod
    def _shown(value, column: Column) -> str:
        if isinstance(value, SafeData) and not column.boolean:
            return value
        return escaped(display_for_value(value, column.empty, column.boolean))

    def rows(self) -> Iterator[str]:
        """Yield each row's <tbody>, striped as unfold stripes them."""
        for index, obj in enumerate(self.cl.result_list):
            yield (
                f'<tbody class="relative {STRIPES[index % 2]}" x-data="{{rowOpen: false}}">'
                '<tr class="data-row relative">'
                + "".join(self.cells(obj))
                + "</tr></tbody>"
            )

    def html(self) -> SafeString:
        """Return every row of the page as one safe string."""
        return mark_safe("".join(self.rows()))  # noqa: S308 - every value escaped above
