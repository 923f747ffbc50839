"""The forgiving search: ids in any case, e-mails by start or domain, Ctrl-K too.

`selectors.payment_search` holds the rules; the changelist, exports and the
command palette (`backoffice.admin_callbacks.command_search`) use them. On
PostgreSQL each branch is served by an index (checked with EXPLAIN).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.urls import reverse

from payments import selectors
from payments.models import Payment
from payments.selectors.payments import email_domain_of
from tests.factories import PaymentFactory
from tests.payments.admin.test_exports import as_user, staff

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:payments_payment_changelist"
COMMAND_SEARCH = "admin:search"


@pytest.fixture
def people(db):
    """Payments at a few domains, with gateway ids and a crypto address."""
    made = {
        "alice": PaymentFactory(email="alice@example.com"),
        "bob": PaymentFactory(email="bob@example.com"),
        "sub": PaymentFactory(email="carol@mail.example.com"),
        "other": PaymentFactory(email="dave@notexample.com"),
        "net": PaymentFactory(email="erin@example.net"),
    }
    Payment.objects.filter(pk=made["bob"].pk).update(
        gateway_transaction_id="Txn-AbC123", crypto_address="bc1QxyZ"
    )
    for payment in made.values():
        payment.refresh_from_db()
    return made


def found(term: str) -> set[str]:
    queryset = selectors.payment_list(filters=selectors.PaymentFilters(search=term))
    return set(queryset.values_list("email", flat=True))


def names(people, *keys: str) -> set[str]:
    return {people[key].email for key in keys}


def test_a_reference_matches_in_any_case(people):
    ref = people["alice"].ref_id
    for typed in (ref, ref.upper(), ref.lower(), f" {ref.swapcase()} "):
        assert found(typed) == names(people, "alice"), typed
    # A fragment is not a match: a reference is searched whole.
    assert found(ref[:10].upper()) == set()


def test_gateway_ids_match_in_any_case(people):
    for typed in ("Txn-AbC123", "TXN-ABC123", "txn-abc123", "BC1QXYZ", "bc1qxyz"):
        assert found(typed) == names(people, "bob"), typed
    assert found("txn-abc") == set()


def test_an_email_matches_by_its_start_in_any_case(people):
    assert found("ALICE@EX") == names(people, "alice")
    assert found("alice@example.com") == names(people, "alice")
    assert found("Da") == names(people, "other")


def test_an_email_domain_finds_every_email_at_exactly_that_domain(people):
    at_example = names(people, "alice", "bob")
    assert found("@example.com") == at_example
    assert found("@EXAMPLE.COM") == at_example
    # Without the @, a term with a dot names a domain too.
    assert found("example.com") == at_example
    assert found("mail.example.com") == names(people, "sub")
    assert found("@example.net") == names(people, "net")
    # A domain's start is not a domain: no partial domains, no subdomains.
    assert found("@example") == set()
    assert found("@exam") == set()
    assert found("@") == set()


@pytest.mark.parametrize(
    ("term", "domain"),
    [
        ("@example.com", "example.com"),
        ("@Example.COM", "example.com"),
        ("example.com", "example.com"),
        ("@localhost", "localhost"),
        ("localhost", ""),  # no dot and no @: a reference or an e-mail start
        ("alice@example.com", ""),  # an e-mail, searched by its start
        ("@", ""),
        ("@-bad.com", ""),
        ("@a@b.com", ""),
        ("x%y.com", ""),
    ],
)
def test_what_names_an_email_domain(term, domain):
    assert email_domain_of(term) == domain


def test_the_changelist_opens_a_reference_typed_in_upper_case(admin_client, people):
    url = reverse(CHANGELIST)
    response = admin_client.get(url, {"q": people["alice"].ref_id.upper()})
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:payments_payment_change", args=[people["alice"].pk]
    )


def test_the_changelist_lists_a_domains_payments(admin_client, people):
    response = admin_client.get(reverse(CHANGELIST), {"q": "@example.com"})
    assert response.status_code == 200
    listed = {p.email for p in response.context["cl"].result_list}
    assert listed == names(people, "alice", "bob")


def test_an_export_of_a_domain_search_counts_its_rows(client, people):
    user = staff("fiona", "Finance")
    response = as_user(client, user).get(
        reverse("admin:payments_payment_export"), {"q": "@example.com"}
    )
    assert response.status_code == 200
    assert response.context["export_row_count"].exact == 2


# --- the command palette (Ctrl-K) -----------------------------------------------------------


def command_results(client, term: str) -> str:
    response = client.get(reverse(COMMAND_SEARCH), {"s": term})
    assert response.status_code == 200
    return response.content.decode()


def test_ctrl_k_finds_payments_by_the_lists_rules_for_support(client, people):
    support = as_user(client, staff("sam", "Support"))
    page = command_results(support, people["bob"].ref_id.upper())
    assert people["bob"].ref_id in page
    assert reverse("admin:payments_payment_change", args=[people["bob"].pk]) in page
    page = command_results(support, "@example.com")
    assert people["alice"].ref_id in page and people["bob"].ref_id in page
    assert people["sub"].ref_id not in page and people["other"].ref_id not in page


def test_ctrl_k_shows_no_payment_to_who_may_not_view_payments(client, people):
    nobody = User.objects.create_user("norm", is_staff=True)
    page = command_results(as_user(client, nobody), people["bob"].ref_id)
    assert people["bob"].ref_id not in page


def test_ctrl_k_lists_at_most_ten_payments_newest_first(client, db):
    from backoffice.admin_callbacks import COMMAND_SEARCH_PAYMENTS

    made = [PaymentFactory(email=f"c{n}@bulk.example") for n in range(12)]
    page = command_results(as_user(client, staff("sam", "Support")), "@bulk.example")
    shown = [p for p in made if p.ref_id in page]
    assert len(shown) == COMMAND_SEARCH_PAYMENTS
    assert shown == made[-COMMAND_SEARCH_PAYMENTS:]


# --- PostgreSQL: each branch is served by an index ----------------------------------------


def plan_of(term: str) -> str:
    queryset = selectors.payment_list(filters=selectors.PaymentFilters(search=term))
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        # A handful of rows: make the planner show which index it can use.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the indexes are PostgreSQL's"
)
def test_on_postgresql_every_search_branch_uses_an_index(people):
    plan = plan_of("@example.com")
    assert "pay_email_domain" in plan, plan
    assert "Seq Scan" not in plan, plan
    plan = plan_of(people["alice"].ref_id.upper())
    for index in ("pay_ref_id_lower", "pay_gateway_txn_lower", "pay_crypto_address_"):
        assert index in plan, plan
    assert "Seq Scan" not in plan, plan
