"""The payment list: one query for the admin's changelist and for exports.

The admin's list filters put their values in the URL; an export job stores
that query string. Both turn it into `PaymentFilters` with
`payment_filters_from_query` and take their rows from `payment_list`, so an
export holds what the list shows because there is one query, not two kept
alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower, Reverse
from django.db.models.lookups import Exact, StartsWith
from django.http import QueryDict
from django.utils import timezone

from gateways.money import currency_problem

from ..exceptions import PaymentFilterError
from ..models import Payment
from ..states import PaymentStatus
from .checkout import gateway_choices

# The query parameters of the payment changelist's filters, named as the
# filter widgets name them (Django's `<field>__exact`, unfold's range
# `<field>_from` / `<field>_to`, the gateway dropdown's own name, the search box).
STATUS_PARAMETER = "status__exact"
GATEWAY_PARAMETER = "payment_gateway"
CURRENCY_PARAMETER = "currency__exact"
NEEDS_REVIEW_PARAMETER = "needs_review__exact"
CREATED_FROM_PARAMETER = "date_created_from"
CREATED_TO_PARAMETER = "date_created_to"
PAID_FROM_PARAMETER = "date_paid_from"
PAID_TO_PARAMETER = "date_paid_to"
SEARCH_PARAMETER = "q"
PAYMENT_FILTER_PARAMETERS = (
    STATUS_PARAMETER,
    GATEWAY_PARAMETER,
    CURRENCY_PARAMETER,
    NEEDS_REVIEW_PARAMETER,
    CREATED_FROM_PARAMETER,
    CREATED_TO_PARAMETER,
    PAID_FROM_PARAMETER,
    PAID_TO_PARAMETER,
    SEARCH_PARAMETER,
)
# Newest first; the key breaks ties, so pages never overlap (index pay_created_id).
PAYMENT_LIST_ORDERING = ("-date_created", "-id")
FLAGS = {"1": True, "true": True, "0": False, "false": False}
# What may follow the `@` of an e-mail address in a domain search.
EMAIL_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?", re.IGNORECASE)
# Each query parameter's non-empty values.
Values = dict[str, list[str]]


@dataclass(frozen=True)
class PaymentFilters:
    """What a payment list is narrowed to; every default means "no filter".

    Several values of one filter select payments matching any of them; the
    filters together select payments matching all. Date ranges are whole
    local days, both ends included.
    """

    statuses: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    currencies: tuple[str, ...] = ()
    created_from: date | None = None
    created_to: date | None = None
    paid_from: date | None = None
    paid_to: date | None = None
    needs_review: bool | None = None
    search: str = ""

    def as_query(self) -> str:
        """Return the changelist query string that selects these payments."""
        params = QueryDict(mutable=True)
        params.setlist(STATUS_PARAMETER, list(self.statuses))
        params.setlist(GATEWAY_PARAMETER, list(self.gateways))
        params.setlist(CURRENCY_PARAMETER, list(self.currencies))
        if self.needs_review is not None:
            params[NEEDS_REVIEW_PARAMETER] = "1" if self.needs_review else "0"
        days = (
            (CREATED_FROM_PARAMETER, self.created_from),
            (CREATED_TO_PARAMETER, self.created_to),
            (PAID_FROM_PARAMETER, self.paid_from),
            (PAID_TO_PARAMETER, self.paid_to),
        )
        for name, day in days:
            if day is not None:
                params[name] = day.isoformat()
        if self.search:
            params[SEARCH_PARAMETER] = self.search
        return params.urlencode()


def search_term_of(raw: str | None) -> str:
    """Return a pasted search term without any white space (ids and e-mails have none)."""
    return "".join((raw or "").split())


def day_from_text(text: str) -> date:
    """Read a day typed in a date filter: ISO, or the active locale's input formats.

    Raise ValueError when the text is not a day.
    """
    try:
        return forms.DateField().clean(text.strip())
    except ValidationError as exc:
        raise ValueError(f"{text!r} is not a date") from exc


def local_day_start(day: date) -> datetime:
    """Return the moment a day begins in the current time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))


def payment_filters_from_query(
    params: QueryDict | Mapping[str, str | Iterable[str]] | str,
) -> PaymentFilters:
    """Build the filters of a payment list from its changelist query parameters.

    Takes a QueryDict, a mapping (a value or a list of values per name) or a
    query string. Parameters that are not filters (the order `o`, the page
    `p`, `_changelist_filters`...) are ignored; an empty value means no
    filter. Raise PaymentFilterError, naming the parameter, for a value that
    cannot be a filter (an unknown status, gateway or currency, a bad date).
    """
    values = _values_by_name(params)
    created_from = _day(values, CREATED_FROM_PARAMETER)
    created_to = _day(values, CREATED_TO_PARAMETER)
    paid_from = _day(values, PAID_FROM_PARAMETER)
    paid_to = _day(values, PAID_TO_PARAMETER)
    _check_range(created_from, created_to, CREATED_TO_PARAMETER)
    _check_range(paid_from, paid_to, PAID_TO_PARAMETER)
    search = values.get(SEARCH_PARAMETER, [])
    return PaymentFilters(
        statuses=_codes(values, STATUS_PARAMETER, str.upper, _status_problem),
        gateways=_codes(values, GATEWAY_PARAMETER, str.lower, _gateway_problem),
        currencies=_codes(values, CURRENCY_PARAMETER, str.upper, currency_problem),
        created_from=created_from,
        created_to=created_to,
        paid_from=paid_from,
        paid_to=paid_to,
        needs_review=_flag(values, NEEDS_REVIEW_PARAMETER),
        search=search_term_of(search[-1]) if search else "",
    )


def payment_list(*, filters: PaymentFilters) -> QuerySet[Payment]:
    """Return the payments the filters select, newest first (unevaluated).

    Callers choose the columns (`.only()`, `.values_list()`) and joins.
    """
    queryset = Payment.objects.all()
    if filters.statuses:
        queryset = queryset.filter(status__in=filters.statuses)
    if filters.gateways:
        queryset = queryset.filter(payment_gateway__in=filters.gateways)
    if filters.currencies:
        queryset = queryset.filter(currency__in=filters.currencies)
    if filters.needs_review is not None:
        queryset = queryset.filter(needs_review=filters.needs_review)
    queryset = _within_days(
        queryset, "date_created", filters.created_from, filters.created_to
    )
    queryset = _within_days(queryset, "date_paid", filters.paid_from, filters.paid_to)
    queryset = payment_search(queryset=queryset, term=filters.search)
    return queryset.order_by(*PAYMENT_LIST_ORDERING)


def payment_search(*, queryset: QuerySet[Payment], term: str) -> QuerySet[Payment]:
    """Match a pasted reference or id whatever its case; an e-mail by start or domain.

    - a reference, gateway transaction id or crypto address: the whole
      value, in any case (`LOWER(column) = term`, served by the `*_lower`
      expression indexes);
    - an e-mail: by its start (`alice@exa`), as stored (lower-case);
    - an e-mail domain: `@example.com`, or `example.com` (a term with a dot
      and no `@`), finds every e-mail at exactly that domain (not its
      subdomains): the reversed e-mail starts with `moc.elpmaxe@`, a prefix
      `LIKE` that PostgreSQL serves from the reversed-string index
      `pay_email_domain` (migration 0009; SQLite scans).

    Only equality and prefix `LIKE` on indexed expressions: `icontains`
    (`%x%`) is served by no b-tree index, and one unindexable branch of the
    OR would scan the whole table.
    """
    term = search_term_of(term).lower()
    if not term:
        return queryset
    match = (
        Q(Exact(Lower("ref_id"), term))
        | Q(Exact(Lower("gateway_transaction_id"), term))
        | Q(Exact(Lower("crypto_address"), term))
    )
    if not term.startswith("@"):
        match |= Q(email__startswith=term)
    domain = email_domain_of(term)
    if domain:
        match |= Q(StartsWith(Reverse(Lower("email")), f"@{domain}"[::-1]))
    return queryset.filter(match)


def email_domain_of(term: str) -> str:
    """Return the e-mail domain a search term names, or "".

    `@example.com` names example.com; so does `example.com`, a term with a
    dot and no `@` (references and gateway ids have no dot). A term with a
    local part (`alice@example.com`) is an e-mail's start, not a domain.
    """
    candidate = term.removeprefix("@")
    if "@" in candidate or not EMAIL_DOMAIN.fullmatch(candidate):
        return ""
    if term.startswith("@") or "." in candidate:
        return candidate.lower()
    return ""


def _within_days(
    queryset: QuerySet[Payment], field: str, first: date | None, last: date | None
) -> QuerySet[Payment]:
    # Plain >= and < on the column (no date cast), so its index still applies.
    if first is not None:
        queryset = queryset.filter(**{f"{field}__gte": local_day_start(first)})
    if last is not None:
        end = local_day_start(last + timedelta(days=1))
        queryset = queryset.filter(**{f"{field}__lt": end})
    return queryset


def _values_by_name(
    params: QueryDict | Mapping[str, str | Iterable[str]] | str,
) -> Values:
    """Return every non-empty value of each parameter, in the order given."""
    if isinstance(params, str):
        params = QueryDict(params.removeprefix("?"))
    if isinstance(params, QueryDict):
        pairs = params.lists()
    else:
        pairs = (
            (name, [value] if isinstance(value, str) else list(value))
            for name, value in params.items()
        )
    values = {}
    for name, given in pairs:
        kept = [str(value).strip() for value in given if str(value).strip()]
        if kept:
            values[name] = kept
    return values


def _codes(
    values: Values,
    name: str,
    normalise: Callable[[str], str],
    problem_of: Callable[[str], str],
) -> tuple[str, ...]:
    codes = sorted({normalise(value) for value in values.get(name, [])})
    for code in codes:
        problem = problem_of(code)
        if problem:
            raise PaymentFilterError(name, problem)
    return tuple(codes)


def _status_problem(code: str) -> str:
    if code in PaymentStatus.values:
        return ""
    return f"{code!r} is not a payment status ({', '.join(PaymentStatus.values)})"


def _gateway_problem(code: str) -> str:
    known = [known for known, _name in gateway_choices()]
    if code in known:
        return ""
    return f"{code!r} is not a gateway ({', '.join(known)})"


def _flag(values: Values, name: str) -> bool | None:
    given = values.get(name)
    if not given:
        return None
    flag = FLAGS.get(given[-1].lower())
    if flag is None:
        raise PaymentFilterError(name, f"{given[-1]!r} is not 1 (yes) or 0 (no)")
    return flag


def _day(values: Values, name: str) -> date | None:
    given = values.get(name)
    if not given:
        return None
    # The first value, as unfold's range filter reads (and shows) it.
    try:
        return day_from_text(given[0])
    except ValueError as exc:
        raise PaymentFilterError(name, str(exc)) from exc


def _check_range(first: date | None, last: date | None, name: str) -> None:
    if first is not None and last is not None and last < first:
        raise PaymentFilterError(
            name, f"{last.isoformat()} is before the start, {first.isoformat()}"
        )
