"""The demo's simulated providers: one fake server on a fixed loopback port.

`manage.py devserver` (what `make run` starts) runs `python -m fakeproviders`
as a child process and gives the web server and the job cluster the
environment from `demo_environment()`: every gateway's API base URL points at
the fake, with the credentials the fake accepts. The fake posts its IPNs,
notifications and events to the web server's webhook URLs, and keeps the
provider-side records in a state file so the next `make run` still knows the
payments of the last one.
"""

from __future__ import annotations

from .server import FakeProviderServer

# The web server's webhook endpoint for a gateway code (payments/urls.py).
WEBHOOK_PATH = "/api/webhooks/{code}/"


def providers_url(port: int) -> str:
    """Return the base URL of the demo's fake provider server."""
    return f"http://127.0.0.1:{port}"


def webhook_url(site_url: str, code: str) -> str:
    """Return the web server's webhook URL for a gateway."""
    return site_url.rstrip("/") + WEBHOOK_PATH.format(code=code)


def demo_server(*, port: int, site_url: str) -> FakeProviderServer:
    """Build (not start) the fake that serves the demo and notifies `site_url`."""
    return FakeProviderServer(
        port=port,
        mpgs_notification_url=webhook_url(site_url, "mpgs"),
        hyperpay_webhook_url=webhook_url(site_url, "hyperpay"),
        stripe_webhook_url=webhook_url(site_url, "stripe"),
    )


def demo_environment(*, port: int, site_url: str) -> dict[str, str]:
    """Return the environment that points every gateway at the demo's fake.

    The names are the settings' own environment variables
    (backoffice/settings.py); DEMO_PROVIDERS_URL tells the pages to say that
    the providers are simulated.
    """
    fake = demo_server(port=port, site_url=site_url)
    url = providers_url(port)
    return {
        "DEMO_PROVIDERS_URL": url,
        "COINPAYMENTS_PUBLIC_KEY": fake.cp_public_key,
        "COINPAYMENTS_PRIVATE_KEY": fake.cp_private_key,
        "COINPAYMENTS_MERCHANT_ID": fake.cp_merchant_id,
        "COINPAYMENTS_IPN_SECRET": fake.cp_ipn_secret,
        "COINPAYMENTS_IPN_URL": webhook_url(site_url, "coinpayments"),
        "COINPAYMENTS_API_URL": f"{url}/api.php",
        "MPGS_API_BASE_URL": url,
        "MPGS_MERCHANT_ID": fake.mpgs_merchant_id,
        "MPGS_API_PASSWORD": fake.mpgs_api_password,
        "MPGS_WEBHOOK_SECRET": fake.mpgs_webhook_secret,
        "HYPERPAY_API_BASE_URL": url,
        "HYPERPAY_ACCESS_TOKEN": fake.hyperpay_access_token,
        "HYPERPAY_ENTITY_ID": fake.hyperpay_entity_id,
        "HYPERPAY_WEBHOOK_KEY": fake.hyperpay_webhook_key,
        # The fake throttles report queries only when a test asks it to.
        "HYPERPAY_QUERY_PER_MINUTE": "0",
        "STRIPE_SECRET_KEY": fake.stripe_secret_key,
        "STRIPE_WEBHOOK_SECRET": fake.stripe_webhook_secret,
        "STRIPE_API_BASE": url,
    }
