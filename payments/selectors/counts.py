"""How many rows a list or an export holds, without counting a whole table.

An admin list and an export form state a true figure: the exact count up to
`ADMIN_EXACT_COUNT_LIMIT`, otherwise only that there are more. The count is
one `COUNT(*)` over a subquery stopped at limit + 1 rows, so it costs at
most limit + 1 index or row reads whatever the table's size. Above the limit
an export form adds the PostgreSQL planner's estimate, labelled as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from django.db.models import QuerySet
from django.utils.translation import gettext


def exact_count_limit() -> int:
    """The largest count a list or export states exactly (ADMIN_EXACT_COUNT_LIMIT)."""
    return settings.ADMIN_EXACT_COUNT_LIMIT


def bounded_count(queryset: QuerySet, *, limit: int) -> int:
    """Count the rows of `queryset`, stopping past `limit`: at most limit + 1.

    One query, `SELECT COUNT(*) FROM (SELECT ... LIMIT limit + 1)`; the order
    is dropped, since it cannot change a count.
    """
    return queryset.order_by()[: limit + 1].count()


def planner_estimate(queryset: QuerySet) -> int | None:
    """Return PostgreSQL's estimate of the rows `queryset` selects, else None.

    The planner's `Plan Rows` of `EXPLAIN (FORMAT JSON)`, which reads no rows.
    An estimate from table statistics, not a count: callers must say so.
    Other databases give no estimate in a form worth showing.
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


@dataclass(frozen=True)
class RowCount:
    """A true statement of a row count: exact, or "more than `limit`"."""

    exact: int | None
    limit: int
    # The planner's estimate when the count is not exact (PostgreSQL only).
    estimate: int | None = None

    @property
    def is_exact(self) -> bool:
        return self.exact is not None

    @property
    def estimated(self) -> bool:
        """Tell whether the text carries the planner's estimate ("about N")."""
        return self.exact is None and (self.estimate or 0) > self.limit

    def __str__(self) -> str:
        if self.exact is not None:
            return f"{self.exact:,}"
        if self.estimated:
            return gettext("more than %(limit)s, about %(estimate)s") % {
                "limit": f"{self.limit:,}",
                "estimate": f"{self.estimate:,}",
            }
        return gettext("more than %(limit)s") % {"limit": f"{self.limit:,}"}


def row_count(
    queryset: QuerySet, *, limit: int | None = None, estimate: bool = False
) -> RowCount:
    """Count `queryset` exactly up to `limit` (ADMIN_EXACT_COUNT_LIMIT by default).

    Above it the count is not exact; with `estimate`, PostgreSQL's planner
    estimate is added (one EXPLAIN, no rows read).
    """
    limit = exact_count_limit() if limit is None else limit
    counted = bounded_count(queryset, limit=limit)
    if counted <= limit:
        return RowCount(exact=counted, limit=limit)
    guess = planner_estimate(queryset) if estimate else None
    return RowCount(exact=None, limit=limit, estimate=guess)
