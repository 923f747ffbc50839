"""Django settings, read from the environment (or .env) with python-decouple."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import dj_database_url
from decouple import Csv, config
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse_lazy

BASE_DIR = Path(__file__).resolve().parent.parent
(BASE_DIR / "var").mkdir(exist_ok=True)
TESTING = "pytest" in sys.modules or (len(sys.argv) > 1 and sys.argv[1] == "test")

DEBUG = config("DEBUG", default=False, cast=bool)
SECRET_KEY = config("SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG or TESTING:
        SECRET_KEY = "insecure-dev-only-key-do-not-use-in-production"
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off: set it in the environment "
            "or .env (see .env.example)."
        )

ALLOWED_HOSTS = config("ALLOWED_HOSTS", default="localhost,127.0.0.1", cast=Csv())
CSRF_TRUSTED_ORIGINS = config("CSRF_TRUSTED_ORIGINS", default="", cast=Csv())
SITE_URL = config("SITE_URL", default="").rstrip("/")

INSTALLED_APPS = [
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "unfold.contrib.import_export",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "import_export",
    "django_q",
    "payments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backoffice.urls"
WSGI_APPLICATION = "backoffice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
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
        }
    }

# --- auth, i18n, static -------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-gb"
TIME_ZONE = config("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = config("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "admin:index"

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
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- payments -----------------------------------------------------------------------

PAYMENT_GATEWAYS = config(
    "PAYMENT_GATEWAYS", default="sandbox,coinpayments,mpgs", cast=Csv()
)
SANDBOX_ENABLED = config("SANDBOX_ENABLED", default=DEBUG, cast=bool)
SANDBOX_WEBHOOK_SECRET = (
    config("SANDBOX_WEBHOOK_SECRET", default="")
    or hashlib.sha256(f"sandbox-webhook:{SECRET_KEY}".encode()).hexdigest()
)
GATEWAY_CONNECT_TIMEOUT = config("GATEWAY_CONNECT_TIMEOUT", default=5.0, cast=float)
GATEWAY_READ_TIMEOUT = config("GATEWAY_READ_TIMEOUT", default=20.0, cast=float)

_http = {
    "connect_timeout": GATEWAY_CONNECT_TIMEOUT,
    "read_timeout": GATEWAY_READ_TIMEOUT,
    "pool_size": config("GATEWAY_POOL_SIZE", default=16, cast=int),
}
GATEWAY_SETTINGS = {
    "sandbox": {
        "enabled": SANDBOX_ENABLED,
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
        "session_minutes": config("MPGS_SESSION_MINUTES", default=60, cast=int),
    },
}

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
# Payment exports: more rows than this are written by a background job
# (an ExportJob) instead of the request; its file is deleted after
# EXPORT_RETENTION_DAYS days.
EXPORT_SYNC_LIMIT = config("EXPORT_SYNC_LIMIT", default=10000, cast=int)
EXPORT_RETENTION_DAYS = config("EXPORT_RETENTION_DAYS", default=7, cast=int)
if EXPORT_SYNC_LIMIT < 1 or EXPORT_RETENTION_DAYS < 1:
    raise ImproperlyConfigured(
        "EXPORT_SYNC_LIMIT and EXPORT_RETENTION_DAYS must be at least 1"
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

# --- admin ------------------------------------------------------------------------------


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
    "DASHBOARD_CALLBACK": "backoffice.dashboard.dashboard_callback",
    "SHOW_VIEW_ON_SITE": False,
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
    "loggers": {"urllib3": {"level": "WARNING"}},
}
