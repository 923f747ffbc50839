"""One customer's payments: every payment of an e-mail address, and its totals.

E-mail addresses are stored lower-cased (migration 0002), so a customer is
found by equality on the e-mail index: the totals in one grouped query, a
page of payments in another, however many payments the table holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet, Sum

from ..models import Payment

CUSTOMER_PAGE_SIZE = 50
ZERO = Decimal("0")
# What a row of the customer's payment list shows (and nothing the gateway sent).
CUSTOMER_PAYMENT_FIELDS = (
    "ref_id",
    "email",
    "amount",
    "currency",
    "payment_gateway",
    "status",
    "needs_review",
    "amount_paid",
    "amount_refunded",
    "amount_charged_back",
    "date_created",
    "date_paid",
)


@dataclass(frozen=True)
class CustomerTotals:
    """A customer's money in one currency."""

    currency: str
    payments: int
    paid: Decimal
    refunded: Decimal
    charged_back: Decimal
    open_reviews: int


@dataclass(frozen=True)
class CustomerSummary:
    """What support sees of one customer: totals per currency and a page of payments."""

    email: str
    totals: tuple[CustomerTotals, ...]
    page: Page

    @property
    def payment_count(self) -> int:
        return sum(t.payments for t in self.totals)

    @property
    def open_reviews(self) -> int:
        return sum(t.open_reviews for t in self.totals)


def customer_email(text: str) -> str:
    """Normalise an e-mail address as payments store it (trimmed, lower case)."""
    return (text or "").strip().lower()


def customer_payments(email: str) -> QuerySet:
    """Return a customer's payments, newest first (the e-mail index's rows only)."""
    return (
        Payment.objects.filter(email=customer_email(email))
        .only(*CUSTOMER_PAYMENT_FIELDS)
        .order_by("-date_created", "-id")
    )


def customer_totals(email: str) -> tuple[CustomerTotals, ...]:
    """Sum a customer's payments per currency, in one query."""
    rows = (
        Payment.objects.filter(email=customer_email(email))
        .values("currency")
        .annotate(
            payments=Count("id"),
            paid=Sum("amount_paid"),
            refunded=Sum("amount_refunded"),
            charged_back=Sum("amount_charged_back"),
            open_reviews=Count("id", filter=Q(needs_review=True)),
        )
        .order_by("currency")
    )
    return tuple(
        CustomerTotals(
            currency=row["currency"],
            payments=row["payments"],
            paid=row["paid"] or ZERO,
            refunded=row["refunded"] or ZERO,
            charged_back=row["charged_back"] or ZERO,
            open_reviews=row["open_reviews"],
        )
        for row in rows
    )


class _CountedPaginator(Paginator):
    """A paginator told its count (the totals query has it): no COUNT query."""

    def __init__(self, object_list, per_page, *, count: int):
        super().__init__(object_list, per_page)
        self.__dict__["count"] = count


def customer_summary(email: str, *, page: int | str = 1) -> CustomerSummary:
    """Return a customer's totals per currency and one page (50) of their payments.

    An unknown or empty address gives no totals and an empty page; a page
    number out of range gives the last page.
    """
    email = customer_email(email)
    totals = customer_totals(email) if email else ()
    count = sum(t.payments for t in totals)
    rows = customer_payments(email) if email else Payment.objects.none()
    paginator = _CountedPaginator(rows, CUSTOMER_PAGE_SIZE, count=count)
    return CustomerSummary(email=email, totals=totals, page=paginator.get_page(page))
