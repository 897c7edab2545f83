"""Spinnakr settings: one module, read from the environment.

Every variable is listed with its default in docs/configuration.md. Unset server URLs mean
the embedded default (``spinnakr.embedded``): a PostgreSQL and a Redis started
from Python packages under ``var/``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from spinnakr import rendezvous
from spinnakr.embedded import postgres as embedded_postgres
from spinnakr.embedded import valkey as embedded_valkey
from spinnakr.env import env_bool, env_host_ports, env_int, env_list, env_str, env_url, env_url_list

BASE_DIR = Path(__file__).resolve().parent.parent

# Profiles ---------------------------------------------------------------------

SPINNAKR_ENV = env_str("SPINNAKR_ENV", "development")
if SPINNAKR_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"SPINNAKR_ENV={SPINNAKR_ENV!r} must be 'development' or 'production'")
PRODUCTION = SPINNAKR_ENV == "production"
# pytest sets PYTEST_VERSION: tests then use their own database, Redis databases and queue names.
TESTING = env_bool("SPINNAKR_TESTING", "PYTEST_VERSION" in os.environ)

DEBUG = env_bool("DEBUG", False)
_DEV_SECRET = "django-insecure-development-only-never-use-in-production-5p1nn4kr"  # noqa: S105 - development only; production refuses it
SECRET_KEY = env_str("SECRET_KEY", "" if PRODUCTION else _DEV_SECRET)
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set in production (SPINNAKR_ENV=production)")
if PRODUCTION and (SECRET_KEY == _DEV_SECRET or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 random characters in production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the service's host names in production")
if TESTING and "testserver" not in ALLOWED_HOSTS:
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
PORT = env_int("PORT", 8000, minimum=1, maximum=65535)
SITE_URL = env_str("SITE_URL", f"http://127.0.0.1:{PORT}").rstrip("/")
if not SITE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"SITE_URL={SITE_URL!r} must start with http:// or https://")

# Applications -----------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "accounts",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything that looks up the path, the query string or a form field in PostgreSQL.
    "spinnakr.middleware.UnstorableInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "accounts.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "spinnakr.urls"
ASGI_APPLICATION = "spinnakr.asgi.application"
APPEND_SLASH = False

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
                "accounts.context_processors.navigation",
            ],
        },
    },
]

# PostgreSQL -------------------------------------------------------------------


def _database(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    host = query.pop("host", None) or unquote(parts.hostname or "")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured(f"DATABASE_URL={url!r} names no database (postgres://user@host/NAME)")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": query,
        "TEST": {"NAME": f"test_{name}"},
    }


DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql")) or embedded_postgres.database_url()
DATABASES = {"default": _database(DATABASE_URL)}
# A Celery worker started by a test runs outside pytest-django: this names the test database.
if TESTING and env_str("SPINNAKR_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = env_str("SPINNAKR_TEST_DB_NAME")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis ------------------------------------------------------------------------
# REDIS_URL's database holds the rollups; the cache, the channel layer and a
# Redis broker use the next three (the embedded broker is a server of its own,
# with the same database number). Tests add 8, so they never touch live data.

_NAMED_REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
REDIS_URL = _NAMED_REDIS_URL or embedded_valkey.redis_url(0)


def redis_db_url(url: str, offset: int, name: str = "REDIS_URL") -> str:
    """``url`` with its database number moved by ``offset`` (+8 under tests)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    base = query.get("db") or parts.path.strip("/") or "0"
    if not base.isdigit():
        raise ImproperlyConfigured(f"{name}={url!r} has a database that is not a number")
    db = int(base) + offset + (8 if TESTING else 0)
    if parts.scheme == "unix":
        query["db"] = str(db)
        return f"unix://{parts.path}?{urlencode(query)}"
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", urlencode(query), ""))


REDIS_DATA_URL = redis_db_url(REDIS_URL, 0)
REDIS_CACHE_URL = redis_db_url(REDIS_URL, 1)
REDIS_CHANNELS_URL = redis_db_url(REDIS_URL, 2)

# REDIS_URLS spreads the rollups alone over independent servers or masters behind Sentinel (a site's
# chosen by rendezvous hashing on its id), or a Redis Cluster (one redis-cluster:// entry); spinnakr.rendezvous.
_ROLLUP_URLS = env_url_list("REDIS_URLS", rendezvous.SCHEMES, rendezvous.identity)
if problem := rendezvous.cluster_problem(_ROLLUP_URLS):
    raise ImproperlyConfigured(f"REDIS_URLS: {problem}")
ROLLUP_REDIS_URLS = tuple(u if rendezvous.is_cluster(u) else redis_db_url(u, 0, "REDIS_URLS") for u in _ROLLUP_URLS)
# The Sentinels (host:port) that know the masters of the REDIS_URLS entries redis+sentinel://<name>/<db>.
REDIS_SENTINELS = env_host_ports("REDIS_SENTINELS", needed=any(map(rendezvous.is_sentinel, ROLLUP_REDIS_URLS)))

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_CACHE_URL,
        "KEY_PREFIX": "spinnakr",
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient", "SOCKET_CONNECT_TIMEOUT": 2},
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s that
            # channels_redis blocks in BZPOPMIN: the race killed idle WebSockets.
            "hosts": [{"address": REDIS_CHANNELS_URL, "socket_timeout": 15}],
            "prefix": "spinnakr-test" if TESTING else "spinnakr",
            "capacity": 1000,
            "expiry": 30,
        },
    }
}

# Celery -----------------------------------------------------------------------


def _redis_broker(url: str) -> str:
    moved = redis_db_url(url, 3)
    parts = urlsplit(moved)
    if parts.scheme == "unix":
        db = dict(parse_qsl(parts.query)).get("db", "0")
        return f"redis+socket://{parts.path}?virtual_host={db}"
    return moved


CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", ("amqp", "amqps", "pyamqp", "redis", "rediss", "redis+socket"))
if CELERY_BROKER_URL is None:
    # The embedded default keeps the queues in a Valkey of their own (spinnakr.embedded).
    CELERY_BROKER_URL = _redis_broker(_NAMED_REDIS_URL or embedded_valkey.broker_redis_url(0))
BROKER_IS_AMQP = CELERY_BROKER_URL.startswith(("amqp", "pyamqp"))
QUEUE_PREFIX = env_str("SPINNAKR_QUEUE_PREFIX", "test." if TESTING else "")
EVENTS_QUEUE = f"{QUEUE_PREFIX}events"
DEFAULT_QUEUE = f"{QUEUE_PREFIX}default"

# Quorum queues replicate across a RabbitMQ cluster and survive a node loss.
_QUEUE_ARGUMENTS = {"x-queue-type": "quorum"} if BROKER_IS_AMQP else None
CELERY_TASK_QUEUES = (
    Queue(EVENTS_QUEUE, durable=True, queue_arguments=_QUEUE_ARGUMENTS),
    Queue(DEFAULT_QUEUE, durable=True, queue_arguments=_QUEUE_ARGUMENTS),
)
CELERY_TASK_ROUTES = {"analytics.ingest_batch": {"queue": EVENTS_QUEUE}}
CELERY_TASK_DEFAULT_QUEUE = DEFAULT_QUEUE
CELERY_TASK_DEFAULT_DELIVERY_MODE = "persistent"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
# JSON, and event batches in JSON written by orjson (spinnakr.celery.EVENTS_SERIALIZER).
CELERY_ACCEPT_CONTENT = ["application/json", "application/x-orjson"]
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_PREFETCH", 1, minimum=1)
# A pool process applies up to this many events of waiting messages together with the one it
# was given (analytics.tasks, "Coalescing"); 0 applies every message alone.
INGEST_COALESCE_EVENTS = env_int("INGEST_COALESCE_EVENTS", 5000, minimum=0)
# On a Redis broker the collector pushes its messages onto the queue's list itself
# (spinnakr.queue.wire.RedisListSender): send_task's message for a fifth of the CPU. Off: send_task.
PUBLISH_REDIS_LIST = env_bool("PUBLISH_REDIS_LIST", True)
# `make run` starts the worker this much lower in CPU priority than the web process
# (a `nice` increment): on a shared box a backlog drains with the CPU the collector
# leaves instead of slowing its answers (docs/operations.md, "The embedded servers").
WORKER_NICE = env_int("WORKER_NICE", 10, minimum=0, maximum=19)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker that lost the broker reconnects for as long as it takes (Celery's default: 100 tries, then exit).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any]
if BROKER_IS_AMQP:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
else:
    # A Redis broker redelivers a message not acknowledged within this many seconds: > the longest batch.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Tests kill workers on purpose and want the batch back within seconds.
        "visibility_timeout": env_int(
            "CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1 if TESTING else CELERY_TASK_TIME_LIMIT + 60
        )
    }
    if TESTING:
        CELERY_BROKER_TRANSPORT_OPTIONS |= {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
# With a Redis broker each consuming process holds a lease this long (renewed every third of it); a
# lost worker's batches go back to their queue when it expires, not after the visibility timeout
# (spinnakr/queue/leases.py).
BROKER_LEASE_SECONDS = env_int("BROKER_LEASE_SECONDS", 30, minimum=3, maximum=3600)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Housekeeping (analytics.tasks): partitions ahead of time, retention, quota flags, closed days, salts.
    "analytics-ensure-partitions": {"task": "analytics.ensure_partitions", "schedule": 6 * 3600.0},
    "analytics-apply-retention": {"task": "analytics.apply_retention", "schedule": 24 * 3600.0},
    "analytics-refresh-quota-flags": {"task": "analytics.refresh_quota_flags", "schedule": 60.0},
    "analytics-compact-rollups": {"task": "analytics.compact_rollups", "schedule": 6 * 3600.0},
    "rotate-salts": {"task": "analytics.rotate_salts", "schedule": 600.0},
}
if REDIS_SENTINELS:  # what a rollup server's new master missed is rebuilt (analytics.ingest.failover)
    CELERY_BEAT_SCHEDULE["rollup-masters"] = {"task": "analytics.check_rollup_masters", "schedule": 10.0}

# Collector --------------------------------------------------------------------


def _peers(name: str, default: list[str], *, anyone: bool = False) -> list[str]:
    """Addresses or CIDR networks from ``name`` (and ``*`` for any peer when ``anyone``)."""
    peers = env_list(name, default)
    for peer in peers:
        if anyone and peer == "*":
            continue
        try:
            ipaddress.ip_network(peer, strict=False)
        except ValueError:
            kinds = "an address, a network or *" if anyone else "an address or network"
            raise ImproperlyConfigured(f"{name}: {peer!r} is not {kinds}") from None
    return peers


# Peers whose X-Forwarded-For the collector believes. Empty: every peer's, as Plausible does.
TRUSTED_PROXIES = _peers("TRUSTED_PROXIES", [])
# Peers whose X-Forwarded-For and -Proto Django and the WebSocket routes believe (uvicorn's variable
# and default), applied by spinnakr.asgi itself: the collector reads X-Forwarded-For on its own.
FORWARDED_ALLOW_IPS = _peers("FORWARDED_ALLOW_IPS", ["127.0.0.1"], anyone=True)
# Per client address and per web process: events per second, and the burst above it.
COLLECTOR_RATE_PER_IP = env_int("COLLECTOR_RATE_PER_IP", 100, minimum=1)
COLLECTOR_BURST_PER_IP = env_int("COLLECTOR_BURST_PER_IP", 500, minimum=1)
# Seconds between flushes of the per-site count of dropped bot events to Redis.
COLLECTOR_FLUSH_SECONDS = env_int("COLLECTOR_FLUSH_SECONDS", 10, minimum=1)

# Auth, i18n, static -----------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# open: anyone may sign up; invite: only with an invitation to an existing account.
SIGNUP_MODE = env_str("SIGNUP_MODE", "open")
if SIGNUP_MODE not in {"open", "invite"}:
    raise ImproperlyConfigured(f"SIGNUP_MODE={SIGNUP_MODE!r} must be 'open' or 'invite'")
# Failed log-ins allowed per account and per client IP within LOGIN_THROTTLE_WINDOW seconds.
LOGIN_FAILURES_PER_ACCOUNT = env_int("LOGIN_FAILURES_PER_ACCOUNT", 5, minimum=1)
LOGIN_FAILURES_PER_IP = env_int("LOGIN_FAILURES_PER_IP", 30, minimum=1)
LOGIN_THROTTLE_WINDOW = env_int("LOGIN_THROTTLE_WINDOW", 900, minimum=1)
SIGNUPS_PER_IP_PER_HOUR = env_int("SIGNUPS_PER_IP_PER_HOUR", 10, minimum=1)
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND", f"django.core.mail.backends.{'smtp' if PRODUCTION else 'console'}.EmailBackend"
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Spinnakr <noreply@spinnakr.localhost>")

# Security ---------------------------------------------------------------------

SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (accounts.middleware): on in production, off by default in development.
CSP_ENABLED = env_bool("CSP_ENABLED", PRODUCTION)
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [f"https://{host}" for host in ALLOWED_HOSTS])

# API --------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    # API keys (Authorization: Bearer); errors as Plausible's {"error": "…"}.
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.api_auth.APIKeyAuthentication"],
    "EXCEPTION_HANDLER": "accounts.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Spinnakr API",
    "DESCRIPTION": "Real-time website analytics. Wire-compatible with Plausible's Events, Stats and Sites APIs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # API paths are documented as written (no trailing slash); both forms answer.
    "PREPROCESSING_HOOKS": ["analytics.api.schema.documented_paths"],
}
# Stats API requests per API key per hour; accounts may have an override (analytics.APIRateLimit).
API_RATE_LIMIT_PER_HOUR = env_int("API_RATE_LIMIT_PER_HOUR", 600, minimum=1)

# Logging and metrics ----------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
LOG_FORMAT = env_str("LOG_FORMAT", "plain").lower()  # json: one JSON object a line (spinnakr.logs)
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be 'plain' or 'json'")
METRICS_TOKEN = env_str("METRICS_TOKEN")  # the bearer token of GET /metrics (spinnakr.metrics_view); unset: 404
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"()": "spinnakr.logs.KeyValueFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "spinnakr.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        **({"uvicorn": {"handlers": ["console"], "level": "INFO", "propagate": False}} if LOG_FORMAT == "json" else {}),
        # One line per received and finished task would dwarf everything else at ingestion rates.
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
    },
}
