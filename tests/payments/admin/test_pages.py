"""What the admin's pages show: compact times, labels, the payment page's summary."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin
from django.urls import reverse

from payments.admin.common import when
from payments.admin.payment import PaymentAdmin
from payments.models import Payment
from payments.states import PaymentStatus as S
from tests.factories import move_to, payment_in

NOW = datetime(2026, 12, 7, 14, 3, 9, tzinfo=UTC)


def test_a_time_is_compact_with_the_year_only_when_not_this_one(settings):
    settings.TIME_ZONE = "UTC"
    this_year = when(datetime(2026, 3, 5, 9, 7, 1, tzinfo=UTC), now=NOW)
    last_year = when(datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC), now=NOW)

    assert this_year == (
        '<span class="whitespace-nowrap" title="2026-03-05 09:07:01 UTC">'
        "5 Mar 09:07</span>"
    )
    assert ">31 Dec 2025 23:59<" in last_year
    assert when(None) == "-"


def test_a_time_is_shown_in_local_time(settings):
    settings.TIME_ZONE = "Asia/Riyadh"
    assert ">7 Dec 17:03<" in when(NOW, now=NOW)


def test_the_payment_page_summary_warns_of_a_review(admin_client):
    late = payment_in(S.EXPIRED, email="late@example.com")
    move_to(S.COMPLETED, [late])
    late.refresh_from_db()
    page = admin_client.get(reverse("admin:payments_payment_change", args=[late.pk]))
    content = page.content.decode()

    assert page.status_code == 200
    summary = page.context["summary"]
    assert summary["ref_id"] == late.ref_id
    assert ">Completed<" in summary["status"]
    assert "Needs review" in summary["review"] and "bg-orange-100" in summary["review"]
    assert "late payment" in summary["review_reason"]
    assert summary["email_url"].endswith("/customer/?email=late%40example.com")
    # The summary and timeline come before the fields; no tick for the review.
    assert content.index('id="payment-summary"') < content.index("<fieldset")
    assert 'id="timeline"' in content and "Expired → Completed" in content
    review_field = PaymentAdmin(Payment, admin.site).review_state(late)
    assert "Needs review" in review_field and "bg-orange-100" in review_field


def test_a_payment_without_review_says_so_and_shows_no_warning(admin_client):
    paid = payment_in(S.COMPLETED)
    page = admin_client.get(reverse("admin:payments_payment_change", args=[paid.pk]))
    content = page.content.decode()
    assert page.context["summary"]["review"] is None
    assert 'id="review-reason"' not in content and "Not flagged" in content


def test_the_actions_are_one_menu(admin_client):
    paid = payment_in(S.COMPLETED)
    page = admin_client.get(reverse("admin:payments_payment_change", args=[paid.pk]))
    (menu,) = page.context["actions_detail"]
    assert str(menu["title"]) == "Actions"
    assert [str(item["title"]) for item in menu["items"]] == [
        "Refresh from gateway",
        "Add note",
        "Refund",
        "Record manual refund",
    ]


def test_favicon_ico_redirects_to_the_static_icon(client):
    for method in (client.get, client.head):
        answer = method("/favicon.ico")
        assert answer.status_code == 302
        assert answer["Location"] == "/static/payments/favicon.svg"
    icon = client.get(answer["Location"])
    assert icon.status_code == 200 and icon["Content-Type"].startswith("image/svg")
    assert client.post("/favicon.ico").status_code == 405
