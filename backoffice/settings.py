"""Django settings, read from the environment (or .env) with python-decouple."""

from __future__ import annotations

import os
import re
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from decouple import Csv, config
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse_lazy
from django.utils.csp import CSP

from payments.approval_limits import parse_approval_limits

BASE_DIR = Path(__file__).resolve().parent.parent
(BASE_DIR / "var").mkdir(exist_ok=True)
TESTING = "pytest" in sys.modules or (len(sys.argv) > 1 and sys.argv[1] == "test")

DEBUG = config("DEBUG", default=False, cast=bool)
SECRET_KEY = config("SECRET_KEY", default="")
SECRET_KEY_MIN_LENGTH = 50
if not SECRET_KEY:
    if DEBUG or TESTING:
        # Public, so nothing may derive a secret from it (see SANDBOX_WEBHOOK_SECRET).
        SECRET_KEY = "insecure-dev-only-key-do-not-use-in-production-" + "0" * 8
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off: set it in the environment "
            "or .env (see .env.example)."
        )
elif not DEBUG and (
    len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH or len(set(SECRET_KEY)) < 5
):
    # At settings load, so that runserver, gunicorn and qcluster all refuse.
    raise ImproperlyConfigured(
        f"SECRET_KEY is too weak for DEBUG off: it needs at least "
        f"{SECRET_KEY_MIN_LENGTH} characters, 5 or more of them different. Make "
        "one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
# Keys that signed what is still valid (sessions, password-reset links): set the
# old key here while rotating SECRET_KEY, remove it once those have expired.
SECRET_KEY_FALLBACKS = config("SECRET_KEY_FALLBACKS", default="", cast=Csv())

ALLOWED_HOSTS = config("ALLOWED_HOSTS", default="localhost,127.0.0.1", cast=Csv())
CSRF_TRUSTED_ORIGINS = config("CSRF_TRUSTED_ORIGINS", default="", cast=Csv())
SITE_URL = config("SITE_URL", default="").rstrip("/")

INSTALLED_APPS = [
    # unfold's templates and tags; the admin site is the project's own
    # (backoffice.sites), installed by backoffice.apps.AdminConfig below.
    "unfold.apps.BasicAppConfig",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "unfold.contrib.import_export",
    "backoffice.apps.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "import_export",
    "django_q",
    "backoffice",
    # Staff second factor and audit log (issue 23): before payments, whose
    # admin replaces django-otp's device admins.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "mfa",
    "audit",
    "payments",
    # Last, as its documentation asks: it watches the login signals of the above.
    "axes",
]

MIDDLEWARE = [
    # First, so that every answer under /api/ is JSON, including a database or
    # cache outage met by the middleware below it.
    "payments.middleware.ApiErrorMiddleware",
    # hard1 (issue 22): every provider call a request makes shares one budget.
    "payments.middleware.GatewayBudgetMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files are answered here, before sessions and the database.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Inside the one above: the admin's pages get their own policy.
    "backoffice.security.AdminContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "backoffice.sessions.SessionRenewalMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The TOTP step after the password (issue 23): marks a verified session,
    # then holds an unverified one at the step.
    "django_otp.middleware.OTPMiddleware",
    "mfa.middleware.SecondFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as its documentation asks: turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "backoffice.urls"
CSRF_FAILURE_VIEW = "payments.views.errors.csrf_failure"
WSGI_APPLICATION = "backoffice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "OPTIONS": {
            # Each template compiled once per process (runserver resets the cache
            # when a template file changes).
            "loaders": [
                (
                    "django.template.loaders.cached.Loader",
                    [
                        "django.template.loaders.filesystem.Loader",
                        "django.template.loaders.app_directories.Loader",
                    ],
                )
            ],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "backoffice.context_processors.test_mode",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------

DATABASE_URL = config("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=config("CONN_MAX_AGE", default=60, cast=int)
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # select_for_update is a no-op on SQLite: IMMEDIATE makes writers serialise,
    # so two refunds of one payment cannot both pass the balance check.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so threads in concurrency tests get real connections;
    # one per process, so parallel runs never share it.
    DATABASES["default"]["TEST"] = {
        "NAME": str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Covering indexes (INCLUDE) serve the dashboard on PostgreSQL; SQLite keeps
# their key columns only, which is all it needs.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

REDIS_URL = config("REDIS_URL", default="")
Q_BROKER_URL = config("Q_BROKER_URL", default=REDIS_URL)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    # A database cache is shared by every web and job worker (the sandbox keeps
    # its pretend-provider ledger there); Django creates it with the test DB.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "backoffice_cache",
            # Django's default of 300 entries would cull live sandbox sessions
            # and the sandbox's installation secret.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

# --- auth, i18n, static -------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-gb"
# The back office speaks English only; unfold's language menu lists these.
LANGUAGES = [("en-gb", "English")]
TIME_ZONE = config("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# `manage.py collectstatic` writes here; WhiteNoise serves it with DEBUG off.
STATIC_ROOT = config("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed names need collectstatic's manifest: production only.
    # DEBUG and the tests serve the source files as they are (WhiteNoise finds
    # them through the finders), so neither needs collectstatic.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING
WHITENOISE_AUTOREFRESH = DEBUG or TESTING
MEDIA_ROOT = config("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "admin:index"

# Only staff have sessions. They end after 8 idle hours: a request renews the
# session and its cookie for another 8 when its last renewal is a minute old
# (backoffice.sessions.SessionRenewalMiddleware), not with a write every request.
SESSION_COOKIE_AGE = 8 * 60 * 60
SESSION_RENEW_SECONDS = 60

# Login throttling (django-axes): 10 failures of one username from one address
# lock that pair for 15 minutes; the lockout is logged and answered with a page.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 10
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Off: a correct password alone must not clear the failures while a TOTP step
# follows; mfa.services clears them once the login is complete.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "backoffice.security.lockout_response"
# The same client address as the rate limits (REMOTE_ADDR, or X-Forwarded-For
# behind TRUSTED_PROXY_COUNT proxies).
AXES_CLIENT_IP_CALLABLE = "payments.views.common.client_ip"
# Log lines name the username and address (who to look at); a password never
# appears, whatever this list says.
AXES_SENSITIVE_PARAMETERS: list[str] = []
# Superusers see and lift locks in unfold's admin (payments/admin/access.py).
AXES_ENABLE_ADMIN = False

# --- security behind a TLS-terminating proxy ---------------------------------------

# Secure by default with DEBUG off; the test suite talks plain HTTP on loopback.
_secure = not DEBUG and not TESTING
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = config("SECURE_SSL_REDIRECT", default=_secure, cast=bool)
SESSION_COOKIE_SECURE = config("SESSION_COOKIE_SECURE", default=_secure, cast=bool)
CSRF_COOKIE_SECURE = config("CSRF_COOKIE_SECURE", default=_secure, cast=bool)
SECURE_HSTS_SECONDS = config(
    "SECURE_HSTS_SECONDS", default=31536000 if _secure else 0, cast=int
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = config(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_secure, cast=bool
)
# "preload" consents to the browsers' HSTS preload list (hstspreload.org): a
# domain listed there is HTTPS-only, subdomains included, for months after it
# asks to leave. On by default with DEBUG off, as the deploy check expects.
SECURE_HSTS_PRELOAD = config("SECURE_HSTS_PRELOAD", default=_secure, cast=bool)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (Django's own middleware). Customer pages run only
# this app's scripts and styles; inline ones carry the request's nonce. The
# MPGS pay page adds the acquirer's origin (payments/views/pages.py). With DEBUG
# on the policies are report-only, so that Django's debug pages keep their
# inline styles and a violation still shows in the browser's console.
_public_csp = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    # No form-action: the checkout form without JavaScript is answered with a
    # redirect to the provider's page, which form-action would block.
}
# The unfold admin: Alpine.js evaluates its attributes (unsafe-eval) and unfold
# writes style attributes and <style> blocks (unsafe-inline for styles only).
_admin_csp = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.UNSAFE_EVAL],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
SECURE_CSP = {} if DEBUG else _public_csp
SECURE_CSP_REPORT_ONLY = _public_csp if DEBUG else {}
SECURE_CSP_ADMIN = {} if DEBUG else _admin_csp
SECURE_CSP_ADMIN_REPORT_ONLY = _admin_csp if DEBUG else {}
# The debug page and error reports mask *_URL, *_PASSWORD, *_SECRET, *_KEY and
# *_TOKEN settings and the passwords inside connection URLs.
DEFAULT_EXCEPTION_REPORTER_FILTER = (
    "backoffice.security.SettingsExceptionReporterFilter"
)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- payments -----------------------------------------------------------------------

PAYMENT_GATEWAYS = config(
    "PAYMENT_GATEWAYS", default="sandbox,coinpayments,mpgs,hyperpay,stripe", cast=Csv()
)
SANDBOX_ENABLED = config("SANDBOX_ENABLED", default=DEBUG, cast=bool)
# Staging only: a sandbox with DEBUG off. Pages then show a TEST MODE banner;
# without it the sandbox stays off and `manage.py check` reports an error.
SANDBOX_ALLOW_WITHOUT_DEBUG = config(
    "SANDBOX_ALLOW_WITHOUT_DEBUG", default=False, cast=bool
)
# Empty: a random secret made once per installation and kept in the shared cache.
SANDBOX_WEBHOOK_SECRET = config("SANDBOX_WEBHOOK_SECRET", default="")
GATEWAY_CONNECT_TIMEOUT = config("GATEWAY_CONNECT_TIMEOUT", default=5.0, cast=float)
GATEWAY_READ_TIMEOUT = config("GATEWAY_READ_TIMEOUT", default=20.0, cast=float)

_http = {
    "connect_timeout": GATEWAY_CONNECT_TIMEOUT,
    "read_timeout": GATEWAY_READ_TIMEOUT,
    "pool_size": config("GATEWAY_POOL_SIZE", default=16, cast=int),
}
GATEWAY_SETTINGS = {
    "sandbox": {
        "enabled": SANDBOX_ENABLED and (DEBUG or SANDBOX_ALLOW_WITHOUT_DEBUG),
        "secret": SANDBOX_WEBHOOK_SECRET,
        "fail": config("SANDBOX_FAIL", default=""),
        "session_minutes": config("SANDBOX_SESSION_MINUTES", default=30, cast=int),
    },
    "coinpayments": {
        **_http,
        "public_key": config("COINPAYMENTS_PUBLIC_KEY", default=""),
        "private_key": config("COINPAYMENTS_PRIVATE_KEY", default=""),
        "merchant_id": config("COINPAYMENTS_MERCHANT_ID", default=""),
        "ipn_secret": config("COINPAYMENTS_IPN_SECRET", default=""),
        "ipn_url": config("COINPAYMENTS_IPN_URL", default=""),
        "api_url": config(
            "COINPAYMENTS_API_URL", default="https://www.coinpayments.net/api.php"
        ),
        "currency2": config("COINPAYMENTS_CURRENCY2", default="BTC"),
        "coins": config("COINPAYMENTS_COINS", default="BTC", cast=Csv()),
    },
    "mpgs": {
        **_http,
        "api_base_url": config("MPGS_API_BASE_URL", default=""),
        "api_version": config("MPGS_API_VERSION", default=100, cast=int),
        "merchant_id": config("MPGS_MERCHANT_ID", default=""),
        "api_password": config("MPGS_API_PASSWORD", default=""),
        "merchant_name": config("MPGS_MERCHANT_NAME", default="Magic eSIM"),
        "checkout_url": config("MPGS_CHECKOUT_URL", default=""),
        "webhook_secret": config("MPGS_WEBHOOK_SECRET", default=""),
        # Also how long a declined payment stays open for another card.
        "session_minutes": config("MPGS_SESSION_MINUTES", default=60, cast=int),
    },
    "stripe": {
        **_http,
        "secret_key": config("STRIPE_SECRET_KEY", default=""),
        "webhook_secret": config("STRIPE_WEBHOOK_SECRET", default=""),
        # Empty: Stripe's own API (https://api.stripe.com).
        "api_base": config("STRIPE_API_BASE", default=""),
        # The Checkout Session's expires_at, in minutes (Stripe: 30 to 1440).
        "session_minutes": config("STRIPE_SESSION_MINUTES", default=60, cast=int),
    },
    # HyperPay COPYandPAY (Open Payment Platform); see gateways/hyperpay/.
    "hyperpay": {
        **_http,
        "api_base_url": config("HYPERPAY_API_BASE_URL", default=""),
        "access_token": config("HYPERPAY_ACCESS_TOKEN", default=""),
        "entity_id": config("HYPERPAY_ENTITY_ID", default=""),
        "mada_entity_id": config("HYPERPAY_MADA_ENTITY_ID", default=""),
        "brands": config("HYPERPAY_BRANDS", default="VISA MASTER"),
        "webhook_key": config("HYPERPAY_WEBHOOK_KEY", default=""),
        "payment_type": config("HYPERPAY_PAYMENT_TYPE", default="DB"),
        "query_per_minute": config("HYPERPAY_QUERY_PER_MINUTE", default=2, cast=int),
    },
}

# --- Demo providers (issue 21 item 2: a demo in which every gateway works) ---
# The fake provider server's base URL, set by `manage.py devserver` (make run)
# in the environment of the web server and job cluster it starts, together
# with the gateways' *_API_* URLs and the demo credentials the fake accepts
# (fakeproviders/demo.py). Pages then say that the providers are simulated.
# With DEBUG off, `manage.py check` refuses it (backoffice.E002).
DEMO_PROVIDERS_URL = config("DEMO_PROVIDERS_URL", default="").rstrip("/")
# Where the demo's fake keeps its provider-side records between runs (written
# by seed_demo and by devserver's fake on exit); empty: not kept (the tests).
DEMO_PROVIDERS_STATE = config(
    "DEMO_PROVIDERS_STATE",
    default="" if TESTING else str(BASE_DIR / "var" / "demo-providers.state"),
)

# "inline": a notification is applied before it is acknowledged. "queued": it
# is stored and acknowledged, then applied in batches by a django-q2 task
# (much higher intake; needs a running qcluster, best with the Redis broker).
WEBHOOK_APPLY = config("WEBHOOK_APPLY", default="inline")
if WEBHOOK_APPLY not in ("inline", "queued"):
    raise ImproperlyConfigured("WEBHOOK_APPLY must be 'inline' or 'queued'")
# Seconds between two gateway look-ups triggered by the public status endpoint.
STATUS_REFRESH_SECONDS = config("STATUS_REFRESH_SECONDS", default=5, cast=int)
# Minutes a payment stays payable when the provider does not say.
PAYMENT_EXPIRY_MINUTES = config("PAYMENT_EXPIRY_MINUTES", default=60, cast=int)
RECONCILE_API_TOKEN = config("RECONCILE_API_TOKEN", default="")
RECONCILE_CONCURRENCY = config("RECONCILE_CONCURRENCY", default=8, cast=int)
API_MAX_BODY_BYTES = 64 * 1024
# Total seconds a customer-facing refresh (status API, return page) may spend
# asking a provider, connect and read together, without retries; past it the
# stored status is answered and the reconciler checks later.
STATUS_REFRESH_BUDGET_SECONDS = config(
    "STATUS_REFRESH_BUDGET_SECONDS", default=2.0, cast=float
)

# --- public endpoint limits ---------------------------------------------------------

# Requests per client IP: "<count>/<period>", the period s, m, h or d with an
# optional multiplier ("20/m", "100/10m"); empty = no limit. Counted in the
# shared cache, so the limit holds across workers and hosts.
RATE_LIMIT_PATTERN = r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$"
RATE_LIMIT_CREATE = config("RATE_LIMIT_CREATE", default="20/m").strip()
RATE_LIMIT_STATUS = config("RATE_LIMIT_STATUS", default="120/m").strip()
for _name in ("RATE_LIMIT_CREATE", "RATE_LIMIT_STATUS"):
    if globals()[_name] and not re.match(RATE_LIMIT_PATTERN, globals()[_name]):
        raise ImproperlyConfigured(
            f"{_name} must look like 20/m or 100/10m (count/period, period s, m, "
            "h or d), or be empty to turn the limit off"
        )
# X-Forwarded-For hops appended by proxies this app trusts (0: use REMOTE_ADDR).
TRUSTED_PROXY_COUNT = config("TRUSTED_PROXY_COUNT", default=0, cast=int)
# Seconds a client is told to wait (Retry-After) when the database or cache is down.
OUTAGE_RETRY_AFTER_SECONDS = 30
# Bearer token for GET /metrics; empty = /metrics answers 404.
METRICS_TOKEN = config("METRICS_TOKEN", default="")

# Payment exports: more rows than this are written by a background job
# (an ExportJob) instead of the request; its file is deleted after
# EXPORT_RETENTION_DAYS days.
EXPORT_SYNC_LIMIT = config("EXPORT_SYNC_LIMIT", default=10000, cast=int)
EXPORT_RETENTION_DAYS = config("EXPORT_RETENTION_DAYS", default=7, cast=int)
if EXPORT_SYNC_LIMIT < 1 or EXPORT_RETENTION_DAYS < 1:
    raise ImproperlyConfigured(
        "EXPORT_SYNC_LIMIT and EXPORT_RETENTION_DAYS must be at least 1"
    )

# --- staff second factor and audit log (issue 23, items 1 and 3) ---------------------

# "required": holders of a money power (superusers, refund/approve/export/repair
# permissions) and members of STAFF_MFA_GROUPS pass a TOTP step after the
# password; "optional": only those who enrolled; "off": nobody (the tests).
_staff_mfa_default = "off" if TESTING else ("optional" if DEBUG else "required")
# Empty (as in .env.example) means the default.
STAFF_MFA = config("STAFF_MFA", default="").strip().lower() or _staff_mfa_default
if STAFF_MFA not in ("required", "optional", "off"):
    raise ImproperlyConfigured("STAFF_MFA must be 'required', 'optional' or 'off'")
STAFF_MFA_GROUPS = config("STAFF_MFA_GROUPS", default="", cast=Csv())
# The issuer authenticator apps show next to the account name.
OTP_TOTP_ISSUER = config("OTP_TOTP_ISSUER", default="Magic eSIM back office")
# Audit entries older than this are deleted by a daily task; the chain is anchored.
AUDIT_RETENTION_DAYS = config("AUDIT_RETENTION_DAYS", default=400, cast=int)
if AUDIT_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("AUDIT_RETENTION_DAYS must be at least 1")

# --- hard1 (issue 22): bounded under hanging providers and hostile traffic ---------------

# Webhook secret rotation: each *_PREVIOUS value is tried after the current
# one, so a secret can be changed at the provider and here without rejecting
# the deliveries signed in between. Empty (the default) = no previous secret.
GATEWAY_SETTINGS["coinpayments"]["ipn_secret_previous"] = config(
    "COINPAYMENTS_IPN_SECRET_PREVIOUS", default=""
)
GATEWAY_SETTINGS["mpgs"]["webhook_secret_previous"] = config(
    "MPGS_WEBHOOK_SECRET_PREVIOUS", default=""
)
GATEWAY_SETTINGS["sandbox"]["secret_previous"] = config(
    "SANDBOX_WEBHOOK_SECRET_PREVIOUS", default=""
)
GATEWAY_SETTINGS["hyperpay"]["webhook_key_previous"] = config(
    "HYPERPAY_WEBHOOK_KEY_PREVIOUS", default=""
)
GATEWAY_SETTINGS["stripe"]["webhook_secret_previous"] = config(
    "STRIPE_WEBHOOK_SECRET_PREVIOUS", default=""
)
# Failed webhook verifications per client IP (same syntax as the other
# limits; empty = off). Past it a forged delivery is answered 429 and not
# stored; a delivery that verifies is never counted nor refused.
RATE_LIMIT_WEBHOOK_FAILURES = config(
    "RATE_LIMIT_WEBHOOK_FAILURES", default="60/m"
).strip()
if RATE_LIMIT_WEBHOOK_FAILURES and not re.match(
    RATE_LIMIT_PATTERN, RATE_LIMIT_WEBHOOK_FAILURES
):
    raise ImproperlyConfigured(
        "RATE_LIMIT_WEBHOOK_FAILURES must look like 60/m (count/period), or be "
        "empty to turn the limit off"
    )
# Deliveries that failed verification (kept as their first 2 KiB, length and
# SHA-256) are deleted after this many days by the prune-rejected-deliveries
# schedule.
REJECTED_DELIVERY_RETENTION_DAYS = config(
    "REJECTED_DELIVERY_RETENTION_DAYS", default=30, cast=int
)
# Total seconds every provider call made inside one web request may take,
# connect, read and retries together (admin refresh, refund, webhook
# confirmation, checkout creation). Keep it well inside the server's worker
# timeout (gunicorn --timeout 30 in docs/runbook.md). Customer-facing
# refreshes keep their own, shorter STATUS_REFRESH_BUDGET_SECONDS; background
# jobs keep GATEWAY_CONNECT_TIMEOUT / GATEWAY_READ_TIMEOUT and their retries.
GATEWAY_REQUEST_BUDGET_SECONDS = config(
    "GATEWAY_REQUEST_BUDGET_SECONDS", default=10.0, cast=float
)
# Customer-facing refreshes (status API, return page) waiting on providers at
# once, per process; a poll beyond that answers the stored status at once.
STATUS_REFRESH_CONCURRENCY = config("STATUS_REFRESH_CONCURRENCY", default=4, cast=int)
if (
    REJECTED_DELIVERY_RETENTION_DAYS < 1
    or STATUS_REFRESH_CONCURRENCY < 1
    or GATEWAY_REQUEST_BUDGET_SECONDS <= 0
):
    raise ImproperlyConfigured(
        "REJECTED_DELIVERY_RETENTION_DAYS and STATUS_REFRESH_CONCURRENCY must be "
        "at least 1, GATEWAY_REQUEST_BUDGET_SECONDS above 0"
    )

# --- django-q2 --------------------------------------------------------------------------

Q_CLUSTER = {
    "name": "backoffice",
    "workers": config("Q_WORKERS", default=2, cast=int),
    "timeout": 300,
    "retry": 360,  # must exceed timeout, or a long task runs twice
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 1000,
    "poll": 0.5,
    "label": "Background tasks",
}
if Q_BROKER_URL:
    Q_CLUSTER["redis"] = Q_BROKER_URL
else:
    Q_CLUSTER["orm"] = "default"

# A gateway whose payments complete only through polling has stopped notifying:
# at least WEBHOOK_SILENCE_MIN_COMPLETIONS completions in the last
# WEBHOOK_SILENCE_MINUTES, none learned from a notification, is a warning on the
# dashboard, in /metrics and in /health/.
WEBHOOK_SILENCE_MINUTES = config("WEBHOOK_SILENCE_MINUTES", default=60, cast=int)
WEBHOOK_SILENCE_MIN_COMPLETIONS = config(
    "WEBHOOK_SILENCE_MIN_COMPLETIONS", default=5, cast=int
)

# The dashboard reads past days from daily rollups: every few minutes a task
# recounts the last ROLLUP_WINDOW_DAYS local days (today included), so late
# payments, refunds and voids reach the days they belong to. Older days are
# left as they are; the dashboard reads 30 days, so the window covers them.
ROLLUP_WINDOW_DAYS = config("ROLLUP_WINDOW_DAYS", default=35, cast=int)
if ROLLUP_WINDOW_DAYS < 30:
    raise ImproperlyConfigured(
        "ROLLUP_WINDOW_DAYS must be at least 30: the dashboard reads 30 days"
    )

# --- four-eyes refunds and repairs (issue 23, items 2 and 4) ----------------------
# A refund whose amount, with the payment's other refunds of the last 24 hours,
# reaches its currency's limit (or the `*` limit) waits for a second person
# with `approve_refund`; while limits are set, every manual-refund record waits
# too. Empty (the default): no approval step. E.g. USD:100,EUR:100,*:100.
REFUND_APPROVAL_LIMITS = parse_approval_limits(
    config("REFUND_APPROVAL_LIMITS", default="")
)
# Hours a refund may wait for approval before it lapses (a scheduled task).
REFUND_APPROVAL_HOURS = config("REFUND_APPROVAL_HOURS", default=48, cast=int)
if REFUND_APPROVAL_HOURS < 1:
    raise ImproperlyConfigured("REFUND_APPROVAL_HOURS must be at least 1")

# --- admin ------------------------------------------------------------------------------

# The sidebar's "needs review" badge is counted at most this often per process
# (payments.selectors.review_badge_count); the dashboard counts live.
REVIEW_BADGE_SECONDS = config("REVIEW_BADGE_SECONDS", default=10, cast=int)

# --- true counts (issue 21) ---
# Admin lists and export forms state their row count exactly up to this many
# rows (one COUNT over a subquery stopped at limit + 1), above it "more than
# ADMIN_EXACT_COUNT_LIMIT" (export forms add PostgreSQL's estimate).
ADMIN_EXACT_COUNT_LIMIT = config("ADMIN_EXACT_COUNT_LIMIT", default=10000, cast=int)
if ADMIN_EXACT_COUNT_LIMIT < 1:
    raise ImproperlyConfigured("ADMIN_EXACT_COUNT_LIMIT must be at least 1")


def _perm(permission: str):
    return lambda request: request.user.has_perm(permission)


def _superuser(request) -> bool:
    return request.user.is_superuser


def _admin_link(name: str):
    return reverse_lazy(f"admin:{name}")


UNFOLD = {
    "SITE_TITLE": "Magic eSIM payments",
    "SITE_HEADER": "Magic eSIM payments",
    "SITE_SUBHEADER": "Back office",
    "ENVIRONMENT": "backoffice.admin_callbacks.environment_callback",
    "ENVIRONMENT_TITLE_PREFIX": "backoffice.admin_callbacks.environment_title_prefix",
    "DASHBOARD_CALLBACK": "backoffice.dashboard.dashboard_callback",
    "SHOW_VIEW_ON_SITE": False,
    # --- forgiving search (issue 21): Ctrl-K finds payments as the list does ---
    "COMMAND": {
        "search_models": False,
        "search_callback": "backoffice.admin_callbacks.command_search",
    },
    # Each entry is shown only to those who may open it.
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": False,
        "navigation": [
            {
                "title": "Operations",
                "items": [
                    {
                        "title": "Dashboard",
                        "icon": "dashboard",
                        "link": _admin_link("index"),
                    },
                    {
                        "title": "Payments",
                        "icon": "payments",
                        "link": _admin_link("payments_payment_changelist"),
                        "badge": "backoffice.dashboard.review_badge",
                        "badge_variant": "warning",
                        "permission": _perm("payments.view_payment"),
                    },
                    # The customer view (issue 23): one e-mail's payments.
                    {
                        "title": "Customers",
                        "icon": "person_search",
                        "link": _admin_link("payments_customer"),
                        "permission": _perm("payments.view_payment"),
                    },
                    {
                        "title": "Refunds",
                        "icon": "undo",
                        "link": _admin_link("payments_refund_changelist"),
                        "permission": _perm("payments.view_refund"),
                    },
                    {
                        "title": "Timeline events",
                        "icon": "timeline",
                        "link": _admin_link("payments_paymentevent_changelist"),
                        "permission": _perm("payments.view_paymentevent"),
                    },
                    {
                        "title": "Webhook deliveries",
                        "icon": "webhook",
                        "link": _admin_link("payments_webhookdelivery_changelist"),
                        "permission": _perm("payments.view_webhookdelivery"),
                    },
                    {
                        "title": "Reconciliation runs",
                        "icon": "sync",
                        "link": _admin_link("payments_reconciliationrun_changelist"),
                        "permission": _perm("payments.view_reconciliationrun"),
                    },
                    {
                        "title": "Idempotency keys",
                        "icon": "key",
                        "link": _admin_link("payments_idempotencyrecord_changelist"),
                        "permission": _perm("payments.view_idempotencyrecord"),
                    },
                ],
            },
            {
                "title": "Finance",
                "items": [
                    {
                        "title": "Settlement summary",
                        "icon": "account_balance",
                        "link": _admin_link("payments_settlement"),
                        "permission": _perm("payments.view_settlement"),
                    },
                    {
                        "title": "Exports",
                        "icon": "download",
                        "link": _admin_link("payments_exportjob_changelist"),
                        "permission": _perm("payments.export_payment"),
                    },
                ],
            },
            {
                "title": "Catalogue",
                "items": [
                    {
                        "title": "Plans",
                        "icon": "sim_card",
                        "link": _admin_link("payments_plan_changelist"),
                        "permission": _perm("payments.view_plan"),
                    },
                ],
            },
            {
                "title": "Jobs",
                "items": [
                    {
                        "title": "Schedules",
                        "icon": "schedule",
                        "link": _admin_link("django_q_schedule_changelist"),
                        "permission": _superuser,
                    },
                    {
                        "title": "Successful tasks",
                        "icon": "task_alt",
                        "link": _admin_link("django_q_success_changelist"),
                        "permission": _superuser,
                    },
                    {
                        "title": "Failed tasks",
                        "icon": "error",
                        "link": _admin_link("django_q_failure_changelist"),
                        "permission": _superuser,
                    },
                ],
            },
            {
                "title": "Access",
                "items": [
                    {
                        "title": "Users",
                        "icon": "person",
                        "link": _admin_link("auth_user_changelist"),
                        "permission": _superuser,
                    },
                    {
                        "title": "Groups",
                        "icon": "group",
                        "link": _admin_link("auth_group_changelist"),
                        "permission": _superuser,
                    },
                    {
                        "title": "Audit log",
                        "icon": "policy",
                        "link": _admin_link("audit_auditentry_changelist"),
                        "permission": _perm("audit.view_auditentry"),
                    },
                    {
                        "title": "Failed logins",
                        "icon": "lock_person",
                        "link": _admin_link("axes_accessattempt_changelist"),
                        "permission": _superuser,
                    },
                ],
            },
        ],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": config("LOG_LEVEL", default="INFO")},
    "loggers": {
        "urllib3": {"level": "WARNING"},
        # Lockouts are WARNING lines ("AXES: Locked out ..."); the rest is chatter.
        "axes": {"level": "WARNING"},
    },
}


# --- pages (issue 21): the admin's icon and its own small stylesheet ------------------
# Public unfold settings: <link rel="icon"> on every admin page (the checkout's
# base template links the same file; /favicon.ico redirects to it), and the few
# styles unfold's stylesheet lacks (payments/admin/admin.css).
def _static(path: str):
    def url(request) -> str:
        from django.templatetags.static import static

        return static(path)

    return url


UNFOLD["SITE_FAVICONS"] = [
    {
        "rel": "icon",
        "sizes": "any",
        "type": "image/svg+xml",
        "href": _static("payments/favicon.svg"),
    }
]
UNFOLD["STYLES"] = [_static("payments/admin/admin.css")]
