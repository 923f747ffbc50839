"""Headers, static files and the debug page, as a production deployment shows them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.test import RequestFactory
from django.views.debug import technical_500_response

from payments import services
from tests.conftest import production_env, subprocess_database_url
from tests.servers import gunicorn

ROOT = Path(__file__).resolve().parent.parent


def csp(response) -> dict[str, list[str]]:
    """Parse a Content-Security-Policy header into {directive: [values]}."""
    header = response.headers["Content-Security-Policy"]
    policy = {}
    for part in header.split(";"):
        name, *values = part.split()
        policy[name] = values
    return policy


# --- Content-Security-Policy ----------------------------------------------------------


@pytest.mark.django_db
def test_customer_pages_run_only_our_scripts_and_nonced_inline_ones(
    client, plan, sandbox
):
    checkout = client.get("/checkout/")
    policy = csp(checkout)
    assert policy["default-src"] == ["'self'"]
    # No inline script on this page, so not even a nonce; never unsafe-*.
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]

    payment = services.payment_create(
        plan=plan, gateway_code="sandbox", email="a@example.com", site_url=""
    )
    result = client.get(f"/checkout/return/{payment.ref_id}/")
    assert result.status_code == 200
    assert csp(result)["script-src"][0] == "'self'"
    hosted = client.get(payment.payment_url.removeprefix("http://testserver"))
    assert hosted.status_code == 200
    assert "'unsafe-eval'" not in csp(hosted)["script-src"]


@pytest.mark.django_db
def test_the_admin_has_its_own_policy(admin_client):
    for url in ("/admin/", "/admin/payments/payment/"):
        policy = csp(admin_client.get(url))
        # Alpine.js (unfold) evaluates its attributes; styles are inline.
        assert policy["script-src"] == ["'self'", "'unsafe-eval'"]
        assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
        assert policy["form-action"] == ["'self'"]
        assert policy["frame-ancestors"] == ["'none'"]


@pytest.mark.django_db
def test_the_admin_login_page_has_the_admin_policy(client):
    policy = csp(client.get("/admin/login/"))
    assert policy["script-src"] == ["'self'", "'unsafe-eval'"]


@pytest.mark.django_db
def test_mpgs_script_origin_is_allowed_on_its_pay_page_only(client, plan, providers):
    fake = providers
    payment = services.payment_create(
        plan=plan,
        gateway_code="mpgs",
        email="c@example.com",
        site_url="http://testserver",
    )
    pay = client.get(f"/checkout/pay/{payment.ref_id}/")
    assert pay.status_code == 200
    policy = csp(pay)
    assert fake.url in policy["script-src"]
    assert fake.url in policy["frame-src"]
    assert fake.url in policy["connect-src"]
    # Every inline script and style of the page carries this response's nonce.
    assert policy["script-src"][:2] == ["'self'", policy["style-src"][1]]
    nonce = policy["script-src"][1].removeprefix("'nonce-").removesuffix("'")
    html = pay.content.decode()
    inline = re.findall(r"<(?:script|style)(?![^>]*\b(?:src=|type=))([^>]*)>", html)
    assert inline and all(f'nonce="{nonce}"' in attrs for attrs in inline)
    assert f'<script src="{fake.url}/static/checkout/checkout.min.js"' in html

    for other in ("/checkout/", f"/checkout/return/{payment.ref_id}/", "/admin/"):
        header = client.get(other).headers["Content-Security-Policy"]
        assert fake.url not in header


@pytest.mark.django_db
def test_debug_mode_reports_instead_of_enforcing(client, settings, plan, sandbox):
    """DEBUG's own error pages have inline styles: with DEBUG the policy only reports."""
    from django.utils.csp import CSP

    policy = {"default-src": [CSP.SELF], "script-src": [CSP.SELF, CSP.NONCE]}
    settings.SECURE_CSP = {}
    settings.SECURE_CSP_REPORT_ONLY = policy
    response = client.get("/checkout/")
    assert "Content-Security-Policy" not in response.headers
    assert response.headers["Content-Security-Policy-Report-Only"] == (
        "default-src 'self'; script-src 'self'"
    )


# --- TEST MODE -------------------------------------------------------------------------


@pytest.mark.django_db
def test_pages_show_test_mode_while_the_sandbox_is_offered(
    client, admin_client, plan, sandbox
):
    for response in (
        client.get("/checkout/"),
        client.get("/admin/login/"),
        admin_client.get("/admin/"),
        admin_client.get("/admin/payments/payment/"),
    ):
        assert response.status_code == 200
        html = response.content.decode()
        assert 'id="test-mode"' in html
        assert "TEST MODE" in html


@pytest.mark.django_db
def test_no_test_mode_banner_without_the_sandbox(client, admin_client, plan, providers):
    providers_only = ["coinpayments", "mpgs"]
    from django.conf import settings

    settings.PAYMENT_GATEWAYS = providers_only
    for response in (client.get("/checkout/"), admin_client.get("/admin/")):
        assert response.status_code == 200
        assert "TEST MODE" not in response.content.decode()


# --- the debug page ----------------------------------------------------------------------


SECRETS = {
    "DATABASE_URL": "postgres://app:db-pass-1234@db.internal:5432/payments",
    "REDIS_URL": "redis://:redis-pass-5678@cache.internal:6379/0",
    "MPGS_API_PASSWORD": "mpgs-pass-9999",
    "METRICS_TOKEN": "metrics-token-4242",
    "COINPAYMENTS_IPN_SECRET": "ipn-secret-3131",
    "SITE_URL": "https://ops:site-pass-7777@shop.example.com",
}
PASSWORDS = ["db-pass-1234", "redis-pass-5678", "mpgs-pass-9999"]
PASSWORDS += ["metrics-token-4242", "ipn-secret-3131", "site-pass-7777"]
PASSWORDS += ["amqp-pass-2020"]


# The test's DATABASES gains a password on the page only; no query runs.
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_the_debug_page_masks_urls_passwords_and_secrets(settings):
    settings.DEBUG = True
    for name, value in SECRETS.items():
        setattr(settings, name, value)
    redis_url = SECRETS["REDIS_URL"]
    settings.Q_BROKER_URL = redis_url
    settings.CACHES = {**settings.CACHES, "other": {"LOCATION": redis_url}}
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": redis_url}
    database = {**settings.DATABASES["default"], "PASSWORD": PASSWORDS[0]}
    settings.DATABASES = {"default": database}
    # Under runserver the environment arrives in request.META.
    request = RequestFactory().get(
        "/boom/",
        DATABASE_URL=SECRETS["DATABASE_URL"],
        REDIS_URL=redis_url,
        AMQP="amqp://user:amqp-pass-2020@mq.internal/",
    )

    html = debug_page(request, SECRETS["DATABASE_URL"])

    assert "RuntimeError" in html
    assert "DATABASE_URL" in html and "Q_CLUSTER" in html
    leaked = [secret for secret in PASSWORDS if secret in html]
    assert leaked == []
    # Only the password goes: the host of a connection URL stays readable.
    assert "mq.internal" in html


def debug_page(request, connection_url: str) -> str:
    """Render Django's technical 500 page for an error raised here."""
    try:
        raise RuntimeError(f"cannot reach {connection_url.split('@')[-1]}")
    except RuntimeError:
        return technical_500_response(request, *sys.exc_info()).content.decode()


# --- a production process: gunicorn, DEBUG off, after collectstatic ------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_production_serves_static_files_with_hashed_compressed_names(
    plan, collected_static
):
    env = production_env(
        DATABASE_URL=subprocess_database_url(),
        STATIC_ROOT=str(collected_static),
        PAYMENT_GATEWAYS="coinpayments,mpgs",
    )
    with gunicorn(env) as base:
        plain = requests.get(f"{base}/static/payments/checkout.js", timeout=10)
        assert plain.status_code == 200
        assert "javascript" in plain.headers["Content-Type"]
        assert "checkout-form" in plain.text

        page = requests.get(
            f"{base}/checkout/", headers={"X-Forwarded-Proto": "https"}, timeout=10
        )
        assert page.status_code == 200
        hashed = re.search(
            r'src="(/static/payments/checkout\.[0-9a-f]{12}\.js)"', page.text
        )
        assert hashed, page.text
        asset = requests.get(
            base + hashed.group(1), headers={"Accept-Encoding": "gzip"}, timeout=10
        )
        assert asset.status_code == 200
        assert asset.headers["Content-Encoding"] == "gzip"
        assert "immutable" in asset.headers["Cache-Control"]
        assert asset.text == plain.text

        # The same response carries the production security headers.
        assert page.headers["Strict-Transport-Security"] == (
            "max-age=31536000; includeSubDomains; preload"
        )
        assert "script-src 'self';" in page.headers["Content-Security-Policy"]
        assert requests.get(f"{base}/static/nope.js", timeout=10).status_code == 404


@pytest.mark.slow
def test_gunicorn_refuses_to_start_with_a_short_secret_key():
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "backoffice.wsgi", "--bind", "127.0.0.1:0"],
        cwd=ROOT,
        env=production_env(SECRET_KEY="short"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is too weak for DEBUG off" in result.stderr


@pytest.mark.django_db
def test_every_page_says_when_the_providers_are_simulated(
    client, admin_client, plan, providers, settings
):
    settings.DEMO_PROVIDERS_URL = providers.url
    settings.PAYMENT_GATEWAYS = ["coinpayments", "mpgs"]  # no sandbox: still said
    for response in (
        client.get("/checkout/"),
        client.get("/admin/login/"),
        admin_client.get("/admin/"),
        admin_client.get("/admin/payments/payment/"),
    ):
        assert response.status_code == 200
        html = response.content.decode()
        assert 'id="test-mode"' in html
        assert "simulated" in html
    admin_page = admin_client.get("/admin/").content.decode()
    assert "TEST MODE · simulated providers" in admin_page
    assert "[TEST MODE]" in admin_page  # the title prefix


def test_the_fakes_hosted_pages_say_they_are_simulated(providers):
    import requests

    page = requests.get(f"{providers.url}/cp/checkout/unknown", timeout=10)
    assert page.status_code == 404
    assert 'id="simulated-provider"' in page.text
    assert "no money moves" in page.text
