"""Every use of unfold's internals, fenced in one module.

unfold (pinned in requirements.txt) offers no public extension point for
rendering a changelist's rows another way, so the one-pass rows
(`payments.admin.rows`, `payments.templatetags.payments_admin`) and the table wrapper
(`templates/admin/fast_change_list_results.html`) rebuild unfold's markup from
the values below. tests/test_unfold_internals.py holds each one to unfold's
installed code and templates, so an upgrade that changes any of them fails
the suite before a page drifts from unfold's look.
"""

from __future__ import annotations

# The classes unfold's `result_list` tag puts on a row's cells and links:
# module-level lists of unfold.templatetags.unfold_list, not documented API.
# The list's column headers and unfold's own table, used as they are when the
# one-pass rows cannot render a list (the `{% unfold_result_list %}` tag's code).
from unfold.templatetags.unfold_list import (  # noqa: F401
    LINK_CLASSES,
    TABLE_ACTION_CELL_CLASSES,
    TABLE_CELL_CLASSES,
    result_headers,  # noqa: F401
)
from unfold.templatetags.unfold_list import result_list as unfold_result_list  # noqa: F401

# How unfold formats a plain value in a list cell (dates, booleans, empty).
from unfold.utils import display_for_value  # noqa: F401

# The row stripes that unfold's admin/change_list_results.html alternates
# with `{% cycle %}` on each <tbody>.
STRIPES = ("", "bg-base-50 dark:bg-white/[.02]")

# The classes of the wrapper <div> around the table in unfold's
# admin/change_list_results.html, for a list with and without a search box
# or filters (copied into fast_change_list_results.html).
TABLE_WRAPPER = (
    "overflow-x-auto scrollbar-default border border-base-200 shadow-xs "
    "dark:border-base-800 bg-white dark:bg-base-900"
)

# Column attributes that make unfold render a cell through a template of its
# own (unfold.decorators.display's label / dropdown / header options).
TEMPLATED_DISPLAYS = ("label", "dropdown", "header")
