"""The back-office admin: pages render, search and filters, dialog actions."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.paginator import EmptyPage
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule, Task
from django_q.tasks import async_task
from unfold.admin import ModelAdmin as UnfoldModelAdmin

from gateways import registry
from payments import services
from payments.admin.common import BackofficeAdminMixin
from payments.models import (
    EventKind,
    ExportJob,
    IdempotencyRecord,
    Payment,
    PaymentEvent,
    Plan,
    ReconciliationRun,
    Refund,
    RefundStatus,
    WebhookDelivery,
)
from payments.roles import roles_setup
from payments.services.transitions import SYSTEM
from payments.states import PaymentStatus
from tests.factories import PlanFactory

pytestmark = pytest.mark.django_db

SUBMITTED = {"_form_submitted": "True"}


@pytest.fixture
def usd_plan(db):
    return PlanFactory(
        code="gb-10", name="10 GB", price=Decimal("10.00"), currency="USD"
    )


def create_payment(plan, email="alice@example.com") -> Payment:
    return services.payment_create(
        plan=plan, gateway_code="sandbox", email=email, site_url="http://testserver"
    )


@pytest.fixture
def pending(sandbox, usd_plan):
    return create_payment(usd_plan)


@pytest.fixture
def completed(sandbox, usd_plan):
    """A payment the payer paid, applied by a signed sandbox notification."""
    payment = create_payment(usd_plan, email="bob@example.com")
    body, headers = sandbox.choose(payment.gateway_session_id, "paid")
    outcome = services.webhook_ingest(
        gateway_code="sandbox", body=body, headers=headers, remote_addr="127.0.0.1"
    )
    assert outcome.delivery.outcome == WebhookDelivery.Outcome.APPLIED
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    return payment


def change_url(payment: Payment) -> str:
    return reverse("admin:payments_payment_change", args=[payment.pk])


def admin_url(model, view: str, *args) -> str:
    """Reverse an admin URL such as admin:payments_payment_<view>."""
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def action_url(name: str, obj) -> str:
    return reverse(f"admin:payments_{obj._meta.model_name}_{name}", args=[obj.pk])


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def events(payment: Payment, kind: str):
    return PaymentEvent.objects.filter(payment=payment, kind=kind)


# --- every page renders ---------------------------------------------------------------


@pytest.fixture
def everything(completed, pending, admin_user):
    """At least one row of every model the admin shows."""
    services.refund_request(
        payment_id=completed.pk,
        amount=Decimal("1"),
        actor=services.Actor("admin", user=admin_user),
        reason="goodwill",
        manual=True,
    )
    services.refund_request(
        payment_id=completed.pk,
        amount=Decimal("2"),
        actor=services.Actor("admin", user=admin_user),
        reason="partial",
    )
    services.payment_add_note(
        payment_id=completed.pk, actor=services.Actor("admin", admin_user), message="hi"
    )
    WebhookDelivery.objects.create(
        gateway="mpgs",
        headers={"X-Notification-Secret": "[redacted]"},
        body="{}",
        outcome=WebhookDelivery.Outcome.REJECTED,
        signature_valid=False,
    )
    IdempotencyRecord.objects.create(
        key="key-1",
        fingerprint="f" * 64,
        payment=pending,
        response_status=201,
        response_body={"ref_id": pending.ref_id},
    )
    ReconciliationRun.objects.create(trigger="schedule", checked=2, changed=1)
    ExportJob.objects.create(requested_by=admin_user, filters="q=x", format="csv")
    Group.objects.create(name="Support")
    AccessAttempt.objects.create(
        username="boss",
        ip_address="203.0.113.7",
        user_agent="curl",
        path_info="/admin/login/",
        failures_since_start=10,
        attempt_time=timezone.now(),
    )
    Schedule.objects.create(
        name="reconcile",
        func="payments.tasks.reconcile_pending",
        schedule_type=Schedule.MINUTES,
        minutes=5,
    )
    now = timezone.now()
    for success in (True, False):
        Task.objects.create(
            id=uuid.uuid4().hex,
            name=f"task-{success}",
            func="math.floor",
            started=now,
            stopped=now,
            success=success,
            result="ok",
        )
    async_task("math.floor", 1.5)


def test_every_registered_model_renders(admin_client, everything):
    registered = {model._meta.label for model in admin.site._registry}
    assert {
        "payments.Plan",
        "payments.Payment",
        "payments.PaymentEvent",
        "payments.Refund",
        "payments.WebhookDelivery",
        "payments.ReconciliationRun",
        "payments.IdempotencyRecord",
        "payments.ExportJob",
        "auth.User",
        "auth.Group",
        "django_q.Schedule",
        "django_q.Success",
        "django_q.Failure",
        "django_q.OrmQ",
    } <= registered
    unstyled = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if not isinstance(model_admin, UnfoldModelAdmin)
    ]
    assert unstyled == []
    failures = []
    for model in admin.site._registry:
        obj = model._default_manager.first()
        assert obj is not None, f"no {model._meta.label} to show"
        urls = [admin_url(model, "changelist"), admin_url(model, "change", obj.pk)]
        if model in (Plan, User, Group, Schedule):
            urls.append(admin_url(model, "add"))
        for url in urls:
            status = admin_client.get(url).status_code
            if status != 200:
                failures.append((url, status))
    assert failures == []


# --- issue 22: URL lookups, history pages, framing ----------------------------------


def listed_pks(response) -> list:
    return [obj.pk for obj in response.context["cl"].result_list]


def test_every_admin_refuses_lookups_its_filters_do_not_make(admin_client, everything):
    """`?<field>__startswith=` on any column answers 400, or is ignored: never applied.

    Django's own lookup_allowed lets any lookup on a model's own columns
    through, so a list answering "rows or none" reads a column the page hides.
    """
    applied = []
    for model, model_admin in admin.site._registry.items():
        assert isinstance(model_admin, BackofficeAdminMixin), model._meta.label
        url = admin_url(model, "changelist")
        baseline = admin_client.get(url)
        assert baseline.status_code == 200, url
        assert listed_pks(baseline), f"no {model._meta.label} listed"
        for field in model._meta.concrete_fields:
            if field.is_relation:
                continue
            lookup = f"{field.name}__startswith"
            response = admin_client.get(url, {lookup: "no-value-starts-like-this"})
            if response.status_code == 400:
                continue
            if response.status_code != 200 or listed_pks(response) != listed_pks(
                baseline
            ):
                applied.append((url, lookup, response.status_code))
    assert applied == []


def test_hidden_provider_data_cannot_be_probed_through_the_address(
    client, django_user_model, pending
):
    """The probe of issue 22: as support, the right and a wrong prefix answer alike."""
    Payment.objects.filter(pk=pending.pk).update(
        gateway_data={"success_indicator": "ind-SECRET-4711"}
    )
    PaymentEvent.objects.create(
        payment=pending, kind=EventKind.NOTE, data={"secret": "ind-SECRET-4711"}
    )
    support = role_client(client, django_user_model, "Support")
    payments_url = admin_url(Payment, "changelist")
    right = support.get(
        payments_url,
        {
            "ref_id": pending.ref_id,
            "gateway_data__success_indicator__startswith": "ind-SECRET",
        },
    )
    wrong = support.get(
        payments_url,
        {"ref_id": pending.ref_id, "gateway_data__success_indicator__startswith": "x"},
    )
    assert right.status_code == wrong.status_code == 200
    assert listed_pks(right) == listed_pks(wrong) == [pending.pk]
    events_url = admin_url(PaymentEvent, "changelist")
    assert support.get(events_url).status_code == 200
    for prefix in ("ind-SECRET", "x"):
        probe = support.get(events_url, {"data__secret__startswith": prefix})
        assert probe.status_code == 400


def test_the_filters_of_each_list_still_apply(admin_client, everything):
    """The parameters the filter widgets write are the ones let through."""
    refunds = admin_url(Refund, "changelist")
    manual = admin_client.get(refunds, {"status__exact": RefundStatus.MANUAL})
    assert manual.status_code == 200
    shown = [refund.status for refund in manual.context["cl"].result_list]
    assert shown == [RefundStatus.MANUAL]
    users = admin_client.get(admin_url(User, "changelist"), {"is_staff__exact": "0"})
    assert users.status_code == 200
    assert listed_pks(users) == []


def test_every_history_page_opens(admin_client, admin_user, everything):
    """Issue 22: the payment's history page was a 500 (the list's `.only()` leaked)."""
    payment = Payment.objects.first()
    LogEntry.objects.create(
        user=admin_user,
        content_type=ContentType.objects.get_for_model(Payment),
        object_id=str(payment.pk),
        object_repr=payment.ref_id,
        action_flag=CHANGE,
        change_message="checked by hand",
    )
    failures = []
    for model in admin.site._registry:
        obj = model._default_manager.first()
        url = admin_url(model, "history", obj.pk)
        status = admin_client.get(url).status_code
        if status != 200:
            failures.append((url, status))
    assert failures == []
    page = admin_client.get(admin_url(Payment, "history", payment.pk))
    assert "checked by hand" in page.content.decode()


def test_payment_history_opens_for_support(client, django_user_model, pending):
    support = role_client(client, django_user_model, "Support")
    response = support.get(admin_url(Payment, "history", pending.pk))
    assert response.status_code == 200


def test_no_admin_page_may_be_framed(admin_client, everything):
    """X-Frame-Options agrees with the CSP's frame-ancestors 'none' (issue 22)."""
    disagreeing = []
    for model in admin.site._registry:
        obj = model._default_manager.first()
        urls = [
            admin_url(model, "changelist"),
            admin_url(model, "change", obj.pk),
            admin_url(model, "history", obj.pk),
        ]
        if model in (Plan, User, Group, Schedule):
            urls.append(admin_url(model, "add"))
        for url in urls:
            response = admin_client.get(url)
            policy = response.get("Content-Security-Policy", "")
            if (
                response.get("X-Frame-Options") != "DENY"
                or "frame-ancestors 'none'" not in policy
            ):
                disagreeing.append((url, response.get("X-Frame-Options"), policy))
    assert disagreeing == []


def test_payment_page_hides_gateway_data_and_shows_actions(admin_client, pending):
    Payment.objects.filter(pk=pending.pk).update(
        gateway_data={"successIndicator": "ind-SECRET-4711"}
    )
    content = admin_client.get(change_url(pending)).content.decode()
    assert "ind-SECRET-4711" not in content
    assert "successIndicator" not in content
    for name in ("refresh_from_gateway", "add_note", "refund", "record_manual_refund"):
        assert action_url(name, pending) in content
    # Only shown while the payment needs review.
    assert action_url("resolve_review", pending) not in content
    # Read-only: no form field for the e-mail, no save button.
    assert 'name="email"' not in content
    assert 'name="_save"' not in content


def test_payment_page_shows_timeline_oldest_first(admin_client, completed):
    services.payment_add_note(
        payment_id=completed.pk, actor=SYSTEM, message="latest note"
    )
    content = admin_client.get(change_url(completed)).content.decode()
    positions = [
        content.index(text)
        for text in ("via Sandbox (test card)", "Pending → Completed", "latest note")
    ]
    assert positions == sorted(positions)


# --- list: search and filters -------------------------------------------------------------


def listed(response, *payments: Payment) -> list[bool]:
    content = response.content.decode()
    return [change_url(payment) in content for payment in payments]


def opened(response) -> str | None:
    """Return the page a search redirected to, or None if it listed results."""
    return response.headers["Location"] if response.status_code == 302 else None


def test_search_that_finds_one_payment_opens_it(admin_client, pending, completed):
    url = reverse("admin:payments_payment_changelist")
    assert opened(admin_client.get(url, {"q": pending.ref_id})) == change_url(pending)
    transaction_id = completed.gateway_transaction_id
    assert opened(admin_client.get(url, {"q": transaction_id})) == change_url(completed)
    # E-mails in any case, pasted with spaces around or inside.
    for typed in ("bob@exam", "BOB@Example.COM", "  bob@example.com\t", "bob @ex"):
        assert opened(admin_client.get(url, {"q": typed})) == change_url(completed)
    assert opened(
        admin_client.get(url, {"q": f" {pending.ref_id[:12]} {pending.ref_id[12:]} "})
    ) == change_url(pending)


def test_search_that_finds_several_lists_them(admin_client, pending, completed):
    url = reverse("admin:payments_payment_changelist")
    Payment.objects.filter(pk=pending.pk).update(email="bobby@example.com")
    response = admin_client.get(url, {"q": "BOB"})
    assert response.status_code == 200
    assert listed(response, pending, completed) == [True, True]
    # A fragment of a reference is not a match: references are searched exactly.
    response = admin_client.get(url, {"q": pending.ref_id[:8]})
    assert response.status_code == 200
    assert listed(response, pending, completed) == [False, False]


def test_search_stays_on_indexed_lookups(admin_client, pending):
    """No UPPER()/ILIKE and no infix LIKE: each branch can use a b-tree index."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("admin:payments_payment_changelist")
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(url, {"q": "ALICE@EXAMPLE"})
    search = [
        q["sql"]
        for q in queries
        if "payments_payment" in q["sql"] and "LIKE" in q["sql"]
    ]
    assert search
    for sql in search:
        assert "UPPER(" not in sql and "ILIKE" not in sql
        assert "'%alice" not in sql.lower()
        assert "alice@example%" in sql


def test_filter_by_status_gateway_review_and_date(admin_client, pending, completed):
    url = reverse("admin:payments_payment_changelist")
    response = admin_client.get(url, {"status__exact": "COMPLETED"})
    assert response.status_code == 200
    assert listed(response, pending, completed) == [False, True]
    response = admin_client.get(url, {"status__exact": "PENDING"})
    assert listed(response, pending, completed) == [True, False]

    assert listed(
        admin_client.get(url, {"payment_gateway": "sandbox"}), pending, completed
    ) == [True, True]
    assert listed(
        admin_client.get(url, {"payment_gateway": "mpgs"}), pending, completed
    ) == [False, False]

    Payment.objects.filter(pk=pending.pk).update(needs_review=True)
    assert listed(
        admin_client.get(url, {"needs_review__exact": "1"}), pending, completed
    ) == [True, False]

    Payment.objects.filter(pk=completed.pk).update(
        date_created=timezone.now() - timedelta(days=10)
    )
    today = timezone.localdate().isoformat()
    assert listed(
        admin_client.get(url, {"date_created_from": today, "date_created_to": today}),
        pending,
        completed,
    ) == [True, False]


def test_changelist_counts_only_up_to_the_limit(admin_client, pending, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from payments.admin.common import CountedPaginator

    settings.ADMIN_EXACT_COUNT_LIMIT = 7
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:payments_payment_changelist"))
    changelist = response.context["cl"]
    assert changelist.show_full_result_count is False
    assert isinstance(changelist.paginator, CountedPaginator)
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"]]
    # One bounded count (no COUNT(*) of the whole table); the badge has its own.
    assert [sql for sql in counts if "LIMIT 8" in sql] != []
    assert [
        sql for sql in counts if "needs_review" not in sql and "LIMIT" not in sql
    ] == []


# --- dialog actions -------------------------------------------------------------------------


def test_refresh_dialog_get_has_no_side_effect(admin_client, sandbox, pending):
    sandbox.choose(pending.gateway_session_id, "paid")
    before = PaymentEvent.objects.filter(payment=pending).count()

    response = admin_client.get(action_url("refresh_from_gateway", pending))

    assert response.status_code == 200
    assert "_form_submitted" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == PaymentStatus.PENDING
    assert pending.last_checked_at is None
    assert PaymentEvent.objects.filter(payment=pending).count() == before
    # A POST without the dialog's form does not run the action either.
    admin_client.post(action_url("refresh_from_gateway", pending), {})
    pending.refresh_from_db()
    assert pending.status == PaymentStatus.PENDING


def test_refresh_dialog_post_refreshes(admin_client, admin_user, sandbox, pending):
    sandbox.choose(pending.gateway_session_id, "paid")

    response = admin_client.post(
        action_url("refresh_from_gateway", pending), SUBMITTED, follow=True
    )

    assert response.redirect_chain == [(change_url(pending), 302)]
    pending.refresh_from_db()
    assert pending.status == PaymentStatus.COMPLETED
    change = events(pending, EventKind.STATUS_CHANGE).get()
    assert (change.actor, change.source) == (admin_user, "admin")
    assert shown_messages(response) == ["Refreshed: the payment is now Completed."]


def test_refresh_dialog_via_htmx_redirects_with_header(admin_client, pending):
    response = admin_client.post(
        action_url("refresh_from_gateway", pending), SUBMITTED, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == change_url(pending)


def test_refresh_reports_a_gateway_outage(admin_client, gateway_settings, pending):
    gateway_settings["sandbox"]["fail"] = "status"
    registry.reset()

    response = admin_client.post(
        action_url("refresh_from_gateway", pending), SUBMITTED, follow=True
    )

    assert response.status_code == 200
    assert "could not be reached" in shown_messages(response)[0]
    assert events(pending, EventKind.GATEWAY_ERROR).count() == 1


def test_refund_dialog_shows_refundable_amount(admin_client, completed):
    response = admin_client.get(action_url("refund", completed))
    assert response.status_code == 200
    assert "Refundable now: <strong>10.00 USD</strong>" in response.content.decode()
    assert not Refund.objects.exists()


def test_refund_over_refundable_amount_is_refused(admin_client, completed):
    response = admin_client.post(
        action_url("refund", completed),
        {**SUBMITTED, "amount": "50", "reason": "customer asked"},
    )

    assert response.status_code == 200
    assert re.search(r"at most 10\.0+ USD can be refunded", response.content.decode())
    assert not Refund.objects.exists()
    completed.refresh_from_db()
    assert completed.status == PaymentStatus.COMPLETED
    assert completed.amount_refunded == 0


def test_refund_of_an_unpaid_payment_is_refused(admin_client, pending):
    response = admin_client.post(
        action_url("refund", pending), {**SUBMITTED, "amount": "1", "reason": "x"}
    )
    assert response.status_code == 200
    assert "cannot be refunded" in response.content.decode()
    assert not Refund.objects.exists()


def test_partial_refund_through_the_gateway(admin_client, admin_user, completed):
    response = admin_client.post(
        action_url("refund", completed),
        {**SUBMITTED, "amount": "4", "reason": "one day unused"},
        follow=True,
    )

    refund = Refund.objects.get()
    assert (refund.status, refund.amount, refund.requested_by) == (
        RefundStatus.SUCCEEDED,
        Decimal("4"),
        admin_user,
    )
    completed.refresh_from_db()
    assert completed.status == PaymentStatus.PARTIALLY_REFUNDED
    assert shown_messages(response) == ["Refunded 4.00 USD."]


def test_manual_refund_is_recorded(admin_client, completed):
    response = admin_client.post(
        action_url("record_manual_refund", completed),
        {**SUBMITTED, "amount": "10", "reason": "bank transfer 123"},
        follow=True,
    )

    refund = Refund.objects.get()
    assert refund.status == RefundStatus.MANUAL
    completed.refresh_from_db()
    assert completed.status == PaymentStatus.REFUNDED
    assert shown_messages(response) == ["Recorded a manual refund of 10.00 USD."]


def test_add_note(admin_client, admin_user, pending):
    response = admin_client.post(
        action_url("add_note", pending),
        {**SUBMITTED, "message": "customer called about it"},
    )

    assert response.status_code == 302
    note = events(pending, EventKind.NOTE).get()
    assert (note.actor, note.source, note.message) == (
        admin_user,
        "admin",
        "customer called about it",
    )


def test_add_note_requires_a_message(admin_client, pending):
    response = admin_client.post(action_url("add_note", pending), SUBMITTED)
    assert response.status_code == 200
    assert not events(pending, EventKind.NOTE).exists()


def test_resolve_review(admin_client, admin_user, pending):
    assert admin_client.get(action_url("resolve_review", pending)).status_code == 403
    Payment.objects.filter(pk=pending.pk).update(
        needs_review=True, review_reason="underpaid: 5.00 of 10.00 USD"
    )
    dialog = admin_client.get(action_url("resolve_review", pending))
    assert "underpaid: 5.00 of 10.00 USD" in dialog.content.decode()

    response = admin_client.post(
        action_url("resolve_review", pending),
        {**SUBMITTED, "message": "customer paid the rest by transfer"},
    )

    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.needs_review is False
    resolved = events(pending, EventKind.REVIEW_RESOLVED).get()
    assert resolved.actor == admin_user


def test_action_on_unknown_payment_is_404(admin_client):
    url = reverse("admin:payments_payment_add_note", args=["999999"])
    assert admin_client.get(url).status_code == 404
    url = reverse("admin:payments_payment_add_note", args=["not-a-number"])
    assert admin_client.get(url).status_code == 404


# --- what staff cannot do ---------------------------------------------------------------------


def test_payments_and_events_cannot_be_added_changed_or_deleted(
    admin_client, completed
):
    event = PaymentEvent.objects.filter(payment=completed).first()
    for obj in (completed, event):
        delete_url = admin_url(obj, "delete", obj.pk)
        assert admin_client.get(delete_url).status_code == 403
        assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
        assert admin_client.get(admin_url(obj, "add")).status_code == 403
        change = admin_url(obj, "change", obj.pk)
        assert admin_client.post(change, {"email": "x@example.com"}).status_code == 403
    assert Payment.objects.filter(pk=completed.pk, email="bob@example.com").exists()
    assert PaymentEvent.objects.filter(pk=event.pk).exists()


def role_client(client, django_user_model, role: str):
    """A client logged in as a non-superuser member of one role group."""
    roles_setup()
    user = django_user_model.objects.create_user(role.lower(), is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return client


@pytest.fixture
def support_client(client, django_user_model):
    return role_client(client, django_user_model, "Support")


@pytest.fixture
def operator_client(client, django_user_model):
    return role_client(client, django_user_model, "Operator")


def test_support_staff_can_refresh_and_note_but_not_refund(support_client, completed):
    content = support_client.get(change_url(completed)).content.decode()
    assert action_url("refresh_from_gateway", completed) in content
    assert action_url("add_note", completed) in content
    assert action_url("refund", completed) not in content

    response = support_client.post(
        action_url("refund", completed), {**SUBMITTED, "amount": "1", "reason": "x"}
    )

    assert response.status_code == 403
    assert not Refund.objects.exists()
    note = support_client.post(
        action_url("add_note", completed), {**SUBMITTED, "message": "called"}
    )
    assert note.status_code == 302


def test_operators_refund_but_still_cannot_edit(operator_client, completed):
    content = operator_client.get(change_url(completed)).content.decode()
    assert action_url("refund", completed) in content
    assert 'name="_save"' not in content

    response = operator_client.post(
        action_url("refund", completed), {**SUBMITTED, "amount": "1", "reason": "x"}
    )

    assert response.status_code == 302
    assert Refund.objects.get().status == RefundStatus.SUCCEEDED
    change = operator_client.post(change_url(completed), {"email": "x@example.com"})
    assert change.status_code == 403


# --- webhook deliveries -------------------------------------------------------------------------


def test_reprocess_delivery(admin_client, completed):
    delivery = WebhookDelivery.objects.get(payment=completed)
    url = reverse("admin:payments_webhookdelivery_reprocess", args=[delivery.pk])
    page = admin_client.get(
        reverse("admin:payments_webhookdelivery_change", args=[delivery.pk])
    )
    assert url in page.content.decode()
    assert "[redacted]" in page.content.decode()  # the signature header
    before = events(completed, EventKind.WEBHOOK).count()

    assert admin_client.get(url).status_code == 200
    assert events(completed, EventKind.WEBHOOK).count() == before

    response = admin_client.post(url, SUBMITTED, follow=True)

    assert shown_messages(response) == ["Re-processed: Applied."]
    assert events(completed, EventKind.WEBHOOK).count() == before + 1


def test_rejected_delivery_cannot_be_reprocessed(admin_client):
    delivery = WebhookDelivery.objects.create(
        gateway="sandbox",
        headers={},
        body="{}",
        signature_valid=False,
        outcome=WebhookDelivery.Outcome.REJECTED,
    )
    url = reverse("admin:payments_webhookdelivery_reprocess", args=[delivery.pk])
    assert admin_client.post(url, SUBMITTED).status_code == 403


def test_deep_pages_list_the_same_rows_as_offset_paging(usd_plan):
    from payments.admin.common import DeepPagePaginator
    from tests.factories import PaymentFactory

    PaymentFactory.create_batch(30, plan=usd_plan)
    ordered = Payment.objects.select_related("plan").order_by("-date_created", "-pk")
    paginator = DeepPagePaginator(ordered, 2)
    expected = list(ordered.values_list("pk", flat=True))
    for number in (1, 10, 11, 12, 15):
        page = paginator.page(number)
        assert [p.pk for p in page.object_list] == expected[(number - 1) * 2 :][:2]
    assert all(p.plan.code == usd_plan.code for p in paginator.page(12).object_list)
    # The count is exact (30 rows): there is no page 16 to list.
    assert paginator.num_pages == 15
    with pytest.raises(EmptyPage):
        paginator.page(16)


def test_each_listed_payment_has_its_own_action_checkbox(
    admin_client, pending, completed
):
    """The row checkbox is rendered once and filled per row: each keeps its pk."""
    content = admin_client.get(reverse("admin:payments_payment_changelist")).content
    values = re.findall(
        r'<input type="checkbox" name="_selected_action" value="([^"]*)"',
        content.decode(),
    )
    assert sorted(values) == sorted([str(pending.pk), str(completed.pk)])
