"""Every answer under /api/ is JSON: Django's own errors, crashes and outages."""

from __future__ import annotations

import contextlib
import json
import re
import socket

import pytest
from django.core.exceptions import TooManyFieldsSent
from django.db import connection
from django.http.multipartparser import MultiPartParserError
from django.test import Client, RequestFactory

from payments.exceptions import (
    PaymentError,
    PaymentErrorCode,
    RefundNotAllowed,
)
from payments.models import Payment
from payments.views.errors import ERRORS, error_response

SETTING_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert isinstance(body["error"], str) and body["error"]
    assert "<html" not in response.content.decode().lower()
    return body


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("get", "/api/payments/", "POST"),
        ("put", "/api/payments/", "POST"),
        ("post", "/api/payments/status/abcdefghijklmnop/", "GET"),
        ("delete", "/api/payments/status/abcdefghijklmnop/", "GET"),
        ("get", "/api/payments/update-pending/", "POST"),
        ("get", "/api/webhooks/sandbox/", "POST"),
    ],
)
def test_wrong_method_is_405_json_with_allow(method, path, allowed):
    # CSRF checks on, as for a browser: a POST to a GET-only view is still a 405.
    client = Client(enforce_csrf_checks=True)
    response = getattr(client, method)(path)
    body = assert_json_error(response, 405)
    assert body["error"] == "method not allowed"
    assert response["Allow"] == allowed
    # The security headers set inside survive the rewrite.
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_a_crash_in_a_view_is_a_json_500(settings, plan, sandbox, monkeypatch, debug):
    settings.DEBUG = debug
    from payments import selectors

    def broken(payment):
        raise RuntimeError("boom: secret internals")

    monkeypatch.setattr(selectors, "payment_public", broken)
    client = Client(raise_request_exception=False)
    response = client.post(
        "/api/payments/",
        json.dumps(
            {"plan": plan.code, "payment_gateway": "sandbox", "email": "a@example.com"}
        ),
        content_type="application/json",
    )
    body = assert_json_error(response, 500)
    assert "boom" not in body["error"]


@pytest.mark.django_db
def test_debug_404_pages_under_api_are_json(client, settings):
    settings.DEBUG = True
    response = client.get("/api/payments/status/%00/")
    assert_json_error(response, 404)
    # Outside /api/ the HTML pages stay.
    page = client.get("/checkout/return/no-such-payment-here/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


def test_csrf_failures_under_api_are_json_and_html_elsewhere(settings):
    from django.utils.module_loading import import_string

    view = import_string(settings.CSRF_FAILURE_VIEW)
    factory = RequestFactory()
    api = view(factory.post("/api/payments/"), reason="CSRF token missing")
    assert_json_error(api, 403)
    page = view(factory.post("/checkout/"), reason="CSRF token missing")
    assert page.status_code == 403
    assert page["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_a_staff_post_without_its_csrf_token_is_json_403(admin_user, plan, sandbox):
    """A staff session posting without its CSRF token is refused in JSON."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post("/api/payments/update-pending/")
    assert_json_error(response, 403)


@pytest.mark.parametrize(
    "exception",
    [TooManyFieldsSent("too many"), MultiPartParserError("Invalid boundary")],
)
def test_a_body_django_calls_malformed_is_left_to_djangos_400(exception, settings):
    """Issue 22: a view meeting Django's own "malformed request" got a JSON 500.

    The middleware leaves it to Django, which answers 400 through handler400
    (JSON under /api/); views that read bodies name the problem themselves
    (test_api_fuzz.py).
    """
    from payments.middleware import ApiErrorMiddleware

    settings.DEBUG = False
    middleware = ApiErrorMiddleware(lambda request: None)
    request = RequestFactory().post("/api/payments/")
    assert middleware.process_exception(request, exception) is None
    outage = middleware.process_exception(request, RuntimeError("boom"))
    assert_json_error(outage, 500)


def test_handlers_answer_json_under_api_only():
    import sys

    from django.db import OperationalError

    from payments.views import errors

    factory = RequestFactory()
    assert_json_error(errors.page_not_found(factory.get("/api/x/")), 404)
    assert errors.page_not_found(factory.get("/x/")).status_code == 404
    assert_json_error(errors.bad_request(factory.get("/api/x/")), 400)
    assert_json_error(errors.permission_denied(factory.get("/api/x/")), 403)
    assert_json_error(errors.server_error(factory.get("/api/x/")), 500)
    try:
        raise OperationalError("connection refused")
    except OperationalError:
        assert sys.exc_info()[0] is OperationalError
        outage = errors.server_error(factory.get("/api/x/"))
    assert_json_error(outage, 503)
    assert int(outage["Retry-After"]) > 0


@contextlib.contextmanager
def database_down():
    """Point the default connection at nothing: the next query fails for real.

    PostgreSQL: a closed port on loopback (connection refused). SQLite: a file
    in a directory that does not exist ("unable to open database file").
    """
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-dir/down.sqlite3"
    else:
        connection.settings_dict["HOST"] = "127.0.0.1"
        connection.settings_dict["PORT"] = closed_port()
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("limits", ["on", "off"])
def test_database_down_is_503_json_with_retry_after(plan, sandbox, settings, limits):
    if limits == "on":
        settings.RATE_LIMIT_CREATE = settings.RATE_LIMIT_STATUS = "100/m"
    client = Client(raise_request_exception=False)
    payment = Payment.objects.create(
        plan=plan, email="a@x.io", amount=1, currency="EUR"
    )
    body = json.dumps(
        {"plan": plan.code, "payment_gateway": "sandbox", "email": "a@example.com"}
    )
    with database_down():
        answers = [
            client.post("/api/payments/", body, content_type="application/json"),
            client.get(f"/api/payments/status/{payment.ref_id}/"),
        ]
    for response in answers:
        error = assert_json_error(response, 503)["error"]
        assert "try again" in error
        assert int(response["Retry-After"]) > 0
    assert Payment.objects.count() == 1


@pytest.mark.django_db
def test_cache_down_is_503_json(client, plan, sandbox, settings):
    settings.RATE_LIMIT_CREATE = "20/m"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
        }
    }
    client = Client(raise_request_exception=False)
    response = client.post(
        "/api/payments/",
        json.dumps(
            {"plan": plan.code, "payment_gateway": "sandbox", "email": "a@example.com"}
        ),
        content_type="application/json",
    )
    assert_json_error(response, 503)
    assert int(response["Retry-After"]) > 0
    assert Payment.objects.count() == 0


@pytest.mark.django_db
def test_anonymous_errors_never_name_a_setting(client, plan, sandbox, providers):
    """An unconfigured MPGS, and an MPGS without its webhook secret."""
    from gateways import registry

    answers = []
    saved = dict(providers.gateway_settings()["mpgs"])
    from django.conf import settings

    settings.GATEWAY_SETTINGS["mpgs"]["api_base_url"] = ""
    registry.reset()
    answers.append(
        client.post(
            "/api/payments/",
            json.dumps(
                {"plan": plan.code, "payment_gateway": "mpgs", "email": "a@example.com"}
            ),
            content_type="application/json",
        )
    )
    answers.append(
        client.post("/api/webhooks/mpgs/", b"{}", content_type="application/json")
    )
    settings.GATEWAY_SETTINGS["mpgs"].update(saved, webhook_secret="")
    registry.reset()
    answers.append(
        client.post(
            "/api/webhooks/mpgs/",
            json.dumps({"order": {"id": "x"}}),
            content_type="application/json",
            headers={"X-Notification-Secret": "guess"},
        )
    )
    for response in answers:
        assert response.status_code in (400, 403, 404, 503)
        text = response.content.decode()
        assert not SETTING_NAME.search(text), text
    assert "payment method unavailable" in json.dumps(answers[0].json())
    assert answers[2].json()["error"] == "payment method unavailable"


@pytest.mark.django_db
def test_a_form_body_over_djangos_limit_is_413_json(admin_user, settings):
    """Django's own RequestDataTooBig: a staff form read for its CSRF token."""
    from django.middleware.csrf import get_token

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(admin_user)
    client.cookies["csrftoken"] = get_token(RequestFactory().get("/"))
    response = client.post("/api/payments/update-pending/", {"note": "x" * 4096})
    assert_json_error(response, 413)


@pytest.mark.django_db
def test_the_checkout_pages_own_form_post_still_gets_the_page(client, plan, sandbox):
    response = client.post(
        "/api/payments/",
        {"plan": plan.code, "payment_gateway": "sandbox", "email": "not-an-email"},
    )
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert b'name="payment_gateway"' in response.content


# --- domain errors: a code each, one table of answers ---------------------------------------


def subclasses(kind: type) -> set[type]:
    found = set(kind.__subclasses__())
    return found.union(*(subclasses(sub) for sub in found))


def test_every_domain_error_has_a_code_and_every_code_one_answer():
    errors = subclasses(PaymentError)
    assert all(isinstance(error.code, PaymentErrorCode) for error in errors)
    assert {error.code for error in errors} == set(PaymentErrorCode)
    assert set(ERRORS) == set(PaymentErrorCode)


def test_the_answer_follows_the_error_code_not_its_class():
    class RefundTooLate(RefundNotAllowed):
        pass

    class ProviderGone(PaymentError):
        code = PaymentErrorCode.PROVIDER_UNAVAILABLE

    late = error_response(RefundTooLate("the refund window has closed"))
    assert (late.status_code, json.loads(late.content)["error"]) == (
        400,
        "the refund window has closed",
    )
    gone = error_response(ProviderGone("MPGS timed out"))
    assert gone.status_code == 503
    assert json.loads(gone.content)["error"] == ERRORS[ProviderGone.code].message
