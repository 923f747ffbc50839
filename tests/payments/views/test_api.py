"""POST /api/payments/ and the status endpoint."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from payments import services
from payments.exceptions import GatewayNotConfigured
from payments.models import EventKind, IdempotencyRecord, Payment, ReconciliationRun
from payments.roles import roles_setup
from payments.services.checkout import (
    StoredAnswer,
    idempotency_begin,
    idempotency_finish,
)

URL = "/api/payments/"


def post_json(client, data, **headers):
    body = data if isinstance(data, (str, bytes)) else json.dumps(data)
    return client.post(URL, body, content_type="application/json", headers=headers)


@pytest.fixture
def valid(plan, sandbox):
    return {"plan": plan.code, "payment_gateway": "sandbox", "email": "ana@example.com"}


@pytest.mark.django_db
def test_create_returns_201_with_server_price(client, valid, plan):
    response = post_json(client, valid)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {"ref_id", "status", "payment_url", "expiry_datetime"}
    assert body["status"] == "PENDING"
    assert "/sandbox/pay/" in body["payment_url"]
    assert "email" not in body
    payment = Payment.objects.get(ref_id=body["ref_id"])
    assert (payment.amount, payment.currency) == (plan.price, plan.currency)
    assert 16 <= len(payment.ref_id) <= 40
    kinds = list(payment.events.values_list("kind", flat=True))
    assert kinds == [EventKind.CREATED, EventKind.CHECKOUT]


@pytest.mark.django_db
def test_form_post_redirects_to_provider_page(client, valid):
    response = client.post(URL, valid)
    assert response.status_code == 303
    assert "/sandbox/pay/" in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"plan": None}, "plan", "required"),
        ({"plan": "no-such-plan"}, "plan", "unknown plan"),
        ({"payment_gateway": None}, "payment_gateway", "required"),
        ({"payment_gateway": "paypal"}, "payment_gateway", "unknown gateway"),
        ({"payment_gateway": "mpgs"}, "payment_gateway", "payment method unavailable"),
        ({"email": "not-an-email"}, "email", "valid email"),
        ({"email": None}, "email", "required"),
        ({"amount": "0.01"}, "amount", "set by the server"),
        ({"status": "COMPLETED"}, "status", "set by the server"),
        ({"payment_url": "https://evil.example/"}, "payment_url", "set by the server"),
        ({"plan": ["a", "b"]}, "plan", "must be a string"),
        ({"crypto_currency": "DOGE"}, "crypto_currency", "not offered"),
    ],
)
def test_bad_input_is_400_naming_the_field(client, valid, change, field, reason):
    data = {**valid, **change}
    data = {k: v for k, v in data.items() if v is not None}
    response = post_json(client, data)
    assert response.status_code == 400
    body = response.json()
    assert field in body["fields"], body
    assert reason in " ".join(body["fields"][field]).lower()
    assert Payment.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"", "application/json", 400, "empty"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "JSON object"),
        (b"plan=x", "text/plain", 400, "unsupported content type"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        (b"{" + b" " * (1024 * 1024) + b"}", "application/json", 413, "bytes"),
    ],
)
def test_malformed_bodies_get_json_errors(
    client, valid, body, content_type, status, message
):
    response = client.post(URL, body, content_type=content_type)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert message in response.json()["error"]
    assert Payment.objects.count() == 0


@pytest.mark.django_db
def test_wrong_method_and_missing_content_type(client, valid):
    assert client.get(URL).status_code == 405
    response = client.generic("POST", URL, b'{"plan": "x"}')
    assert response.status_code == 400
    assert "Content-Type" in response.json()["fields"]


@pytest.mark.django_db
def test_gateway_down_is_503_and_keeps_a_failed_payment(
    client, valid, gateway_settings
):
    from gateways import registry

    gateway_settings["sandbox"]["fail"] = "create"
    registry.reset()
    response = post_json(client, valid)
    assert response.status_code == 503
    body = response.json()
    assert "unavailable" in body["error"]
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.FAILED
    assert "forced create failure" in payment.failure_reason
    assert body["ref_id"] == payment.ref_id
    kinds = set(payment.events.values_list("kind", flat=True))
    assert {
        EventKind.CREATED,
        EventKind.GATEWAY_ERROR,
        EventKind.STATUS_CHANGE,
    } <= kinds


@pytest.mark.django_db
def test_form_post_with_the_provider_down_gets_the_page_with_the_reason(
    client, valid, gateway_settings
):
    from gateways import registry

    gateway_settings["sandbox"]["fail"] = "create"
    registry.reset()
    response = client.post(URL, valid)
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "the payment provider is unavailable" in page
    assert 'name="payment_gateway"' in page
    assert Payment.objects.get().status == Payment.Status.FAILED


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_a_gateway_lost_after_validation_is_503_without_naming_a_setting(
    client, valid, monkeypatch, accept
):
    """Both the checkout form and the JSON API answer GatewayNotConfigured by code."""

    def unconfigured(**_fields):
        raise GatewayNotConfigured("SANDBOX_WEBHOOK_SECRET is missing")

    monkeypatch.setattr(services, "payment_create", unconfigured)
    response = client.post(URL, valid, headers={"Accept": accept})
    assert response.status_code == 503
    assert response["Content-Type"].startswith(accept)
    text = response.content.decode()
    assert "payment method unavailable" in text
    assert "SANDBOX_WEBHOOK_SECRET" not in text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "final"), [(201, True), (503, False), (503, True), (201, False)]
)
def test_the_idempotency_store_keeps_what_the_view_calls_final(status, final):
    """Whether an answer is replayed is the caller's word, not its status code."""
    answer = StoredAnswer(status, '{"error": "x"}')
    record = idempotency_begin(key="k-final", fingerprint="f")
    idempotency_finish(record=record, answer=answer, final=final, payment=None)
    if final:
        assert idempotency_begin(key="k-final", fingerprint="f") == answer
    else:
        assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_same_idempotency_key_gives_one_payment_and_same_body(client, valid):
    first = post_json(client, valid, **{"Idempotency-Key": "order-123"})
    second = post_json(client, valid, **{"Idempotency-Key": "order-123"})
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert Payment.objects.count() == 1
    assert IdempotencyRecord.objects.get().payment.ref_id == first.json()["ref_id"]


@pytest.mark.django_db
def test_a_provider_outage_is_not_replayed_under_its_idempotency_key(
    client, valid, gateway_settings
):
    from gateways import registry

    gateway_settings["sandbox"]["fail"] = "create"
    registry.reset()
    first = post_json(client, valid, **{"Idempotency-Key": "retry-me"})
    assert first.status_code == 503
    assert not IdempotencyRecord.objects.exists()

    gateway_settings["sandbox"]["fail"] = ""
    registry.reset()
    second = post_json(client, valid, **{"Idempotency-Key": "retry-me"})
    third = post_json(client, valid, **{"Idempotency-Key": "retry-me"})

    assert second.status_code == third.status_code == 201
    assert second.content == third.content
    assert Payment.objects.filter(status=Payment.Status.PENDING).count() == 1


@pytest.mark.django_db
def test_idempotency_key_reused_with_other_params_is_refused(client, valid):
    post_json(client, valid, **{"Idempotency-Key": "k1"})
    response = post_json(
        client, {**valid, "email": "bob@example.com"}, **{"Idempotency-Key": "k1"}
    )
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["fields"]
    assert Payment.objects.count() == 1


@pytest.mark.django_db
def test_status_endpoint_shows_public_fields_only(client, valid):
    ref_id = post_json(client, valid).json()["ref_id"]
    response = client.get(f"/api/payments/status/{ref_id}/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "ref_id",
        "status",
        "amount",
        "currency",
        "payment_gateway",
        "payment_url",
        "expiry_datetime",
        "date_paid",
        "amount_paid",
        "under_review",
    }
    assert body["amount"] == "24.00"
    assert body["date_paid"] is None
    assert body["amount_paid"] == "0.00" and body["under_review"] is False


@pytest.mark.django_db
def test_status_unknown_reference_is_json_404(client):
    response = client.get("/api/payments/status/nope-nope-nope-nope/")
    assert response.status_code == 404
    assert response.json()["error"] == "unknown payment reference"


@pytest.mark.django_db
def test_status_refresh_is_throttled(client, valid, sandbox, monkeypatch):
    ref_id = post_json(client, valid).json()["ref_id"]
    calls = []
    original = type(sandbox).fetch_status

    def counting(self, ref):
        calls.append(ref.ref_id)
        return original(self, ref)

    monkeypatch.setattr(type(sandbox), "fetch_status", counting)
    for _ in range(5):
        assert client.get(f"/api/payments/status/{ref_id}/").status_code == 200
    assert calls == [ref_id]


@pytest.mark.django_db
def test_update_pending_needs_staff_or_token(client, settings, admin_client):
    settings.RECONCILE_API_TOKEN = "s3cret-token"
    url = "/api/payments/update-pending/"
    assert client.post(url).status_code == 401
    assert (
        client.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    response = client.post(url, headers={"Authorization": "Bearer s3cret-token"})
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert admin_client.post(url).status_code == 202


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "api_status", "admin_status"),
    [("Finance", 403, 403), ("Support", 202, 302), ("Operator", 202, 302)],
)
def test_update_pending_asks_for_what_run_now_asks(
    client, django_user_model, role, api_status, admin_status
):
    """Issue 22: Finance got 403 on Run now but 202 here; both now say the same."""
    roles_setup()
    user = django_user_model.objects.create_user(role.lower(), is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)

    response = client.post("/api/payments/update-pending/")
    run_now = client.post(
        reverse("admin:payments_reconciliationrun_run_now"), {"_form_submitted": "1"}
    )

    assert response.status_code == api_status
    assert run_now.status_code == admin_status
    runs = ReconciliationRun.objects.values_list("trigger", flat=True)
    if api_status == 403:
        assert "Run now" in response.json()["error"]
        assert list(runs) == []
    else:
        assert sorted(runs) == sorted(["api", f"admin:{user.username}"])


@pytest.mark.django_db
def test_update_pending_refuses_an_inactive_or_non_staff_session(
    client, django_user_model
):
    user = django_user_model.objects.create_user("customer", is_staff=False)
    client.force_login(user)
    assert client.post("/api/payments/update-pending/").status_code == 403
    assert not ReconciliationRun.objects.exists()


@pytest.mark.django_db
def test_checkout_page_offers_only_configured_gateways(client, plan, sandbox):
    response = client.get("/checkout/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="payment_gateway" value="sandbox"' in html
    assert plan.name in html
    # CoinPayments and MPGS have no credentials in tests: not offered at all, and
    # nothing on the page says which setting is missing.
    assert 'value="mpgs"' not in html
    assert 'value="coinpayments"' not in html
    assert "MPGS_" not in html and "COINPAYMENTS_" not in html


@pytest.mark.django_db
def test_checkout_page_offers_a_gateway_once_configured(client, plan, providers):
    html = client.get("/checkout/").content.decode()
    assert 'name="payment_gateway" value="mpgs"' in html
    assert 'name="payment_gateway" value="coinpayments"' in html


@pytest.mark.django_db
def test_checkout_page_without_any_configured_gateway_says_so(
    client, plan, gateway_settings, settings
):
    settings.PAYMENT_GATEWAYS = ["coinpayments", "mpgs"]
    html = client.get("/checkout/").content.decode()
    assert 'name="payment_gateway"' not in html
    assert "No payment method is available right now" in html


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_one_payment(
    live_server, plan, sandbox
):
    import threading

    import requests

    barrier = threading.Barrier(6)
    answers = []

    def send():
        barrier.wait()
        response = requests.post(
            f"{live_server.url}{URL}",
            json={
                "plan": plan.code,
                "payment_gateway": "sandbox",
                "email": "c@example.com",
            },
            headers={"Idempotency-Key": "same-key"},
            timeout=20,
        )
        answers.append((response.status_code, response.json()))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert Payment.objects.count() == 1
    ref_id = Payment.objects.get().ref_id
    codes = sorted(code for code, _ in answers)
    assert len(answers) == 6 and set(codes) <= {201, 409}
    assert all(body["ref_id"] == ref_id for code, body in answers if code == 201)
    assert all("in progress" in body["error"] for code, body in answers if code == 409)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/payments/status/%00abcdefabcdefabcdef/",
        "/checkout/return/a%00b/",
        "/checkout/pay/x%00y/",
        "/sandbox/pay/t%00t/",
    ],
)
def test_nul_and_odd_characters_in_urls_are_404_not_500(client, path):
    response = client.get(path)
    assert response.status_code == 404
    if path.startswith("/api/"):
        assert response.json()["error"] == "unknown payment reference"


@pytest.mark.django_db
def test_nul_in_fields_is_a_400(client, valid):
    response = post_json(
        client, {**valid, "plan": "eu\u00005gb", "email": "a\u0000@b.c"}
    )
    assert response.status_code == 400
    assert {"plan", "email"} <= set(response.json()["fields"])


@pytest.mark.django_db
def test_unknown_api_paths_are_json_404_for_any_method(client):
    for method in (client.get, client.post):
        response = method("/api/nothing/here/")
        assert response.status_code == 404
        assert response.json()["error"] == "no such API endpoint"


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["x" * 256, "bad\u0000key", "caf\u00e9"])
def test_malformed_idempotency_key_is_400(client, valid, key):
    response = post_json(client, valid, **{"Idempotency-Key": key})
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["fields"]
    assert Payment.objects.count() == 0


def test_return_page_notes_the_return_once_per_status(client, valid, sandbox):
    """Reloading the result page must not add a RETURN event on every visit."""
    from datetime import timedelta

    from django.utils import timezone

    ref_id = post_json(client, valid).json()["ref_id"]
    payment = Payment.objects.get(ref_id=ref_id)

    def visit():
        # Past the 2 s throttle, as a payer reloading a minute later would be.
        Payment.objects.filter(pk=payment.pk).update(
            last_refreshed_at=timezone.now() - timedelta(minutes=1)
        )
        assert client.get(f"/checkout/return/{ref_id}/").status_code == 200

    for _ in range(3):
        visit()
    returns = payment.events.filter(kind=EventKind.RETURN)
    assert list(returns.values_list("data__status", flat=True)) == ["PENDING"]

    sandbox.choose(payment.gateway_session_id, "paid")
    visit()
    visit()
    payment.refresh_from_db()
    assert payment.status == Payment.Status.COMPLETED
    assert returns.count() == 1
    assert payment.events.filter(kind=EventKind.STATUS_CHANGE).count() == 1


@pytest.mark.django_db
def test_a_form_body_with_an_idempotency_key_gets_the_json_api_and_its_key(
    client, valid
):
    def post():
        return client.post(URL, valid, headers={"Idempotency-Key": "form-order-1"})

    first, second = post(), post()

    assert first.status_code == second.status_code == 201
    assert first["Content-Type"].startswith("application/json")
    assert first.content == second.content
    assert Payment.objects.count() == 1
