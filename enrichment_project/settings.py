"""The one settings module: every deployment difference comes from environment variables.

With no configuration at all it runs on an embedded default (SQLite and a file-system broker) so
that `make run` works on a fresh machine; production and the test suite set DATABASE_URL and
CELERY_BROKER_URL to PostgreSQL and Redis.
"""

import os
from pathlib import Path

import environ
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SECRET_KEY = env.str("SECRET_KEY", default="insecure-dev-key-change-me-in-production-0123456789")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "organizations",
    "persons",
    "credits",
    "enrichment",
]

MIDDLEWARE = [
    "enrichment_project.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves collected static files (admin, API docs) from the app server itself, with DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "enrichment_project.urls"
WSGI_APPLICATION = "enrichment_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite has no SELECT ... FOR UPDATE: IMMEDIATE transactions take the write lock at BEGIN,
    # which serializes credit checks the way the credit row lock does on PostgreSQL.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["organizations.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["organizations.authentication.HasOrganization"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "enrichment_project.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["organizations.throttling.ApiKeyRateThrottle"],
    "UNAUTHENTICATED_USER": None,
}
# Requests per API key ("N/s", "N/min", "N/hour"); 429 RATE_LIMITED with Retry-After beyond it.
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="1200/min")
# Request bodies above this are refused with 413 before they are parsed; a bulk of 1,000 persons
# takes about 300 KB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)

# --- HTTPS -------------------------------------------------------------------------------------
# HTTPS_ONLY=true where clients reach the service over HTTPS only (TLS ends here or at a proxy in
# front): plain HTTP is redirected, cookies are Secure, browsers are told to stay on HTTPS (HSTS).
# Off by default because the first run is plain HTTP with DEBUG off (`make run`, docker compose on
# http://localhost, the test client); each setting below can still be set on its own.
HTTPS_ONLY = env.bool("HTTPS_ONLY", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS_ONLY)
# Health probes reach the container itself, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=HTTPS_ONLY)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=HTTPS_ONLY)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if HTTPS_ONLY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS_ONLY)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=HTTPS_ONLY)
# Behind a TLS-terminating proxy that sets this header and strips it from clients' requests, e.g.
# SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https; without it every request looks like plain
# HTTP there, and SECURE_SSL_REDIRECT would redirect forever.
SECURE_PROXY_SSL_HEADER = tuple(env.list("SECURE_PROXY_SSL_HEADER", default=[])) or None

# The throttle's counters; Redis in production so all web processes share them.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

SPECTACULAR_SETTINGS = {
    "TITLE": "Contact enrichment API",
    "DESCRIPTION": "Persons, credits and asynchronous email/phone enrichment.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Enrichment -------------------------------------------------------------------------------
ENRICHMENT_CREDIT_COSTS: dict[str, int] = env.json(
    "ENRICHMENT_CREDIT_COSTS", default={"emails": 1, "phones": 10}
)
# Seconds after which a finished enrichment is no longer reused; unset means reused forever.
ENRICHMENT_REUSE_MAX_AGE: int | None = env.int("ENRICHMENT_REUSE_MAX_AGE", default=None)
ENRICHMENT_BATCH_MAX_PERSONS = 100
PERSONS_BULK_MAX = 1000
# Enrichments of one request travel in messages of this many ids, so a batch of 100 costs a few
# broker round trips instead of 100; each id is still claimed, retried and recovered on its own.
ENRICHMENT_TASK_CHUNK_SIZE = env.int("ENRICHMENT_TASK_CHUNK_SIZE", default=50)
ENRICHMENT_QUEUE = "enrichment"

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
# Redis or RabbitMQ (see the README's Deployment section); the same acks_late settings below hold
# for both, only the way an unacknowledged job comes back differs.
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis re-delivers an unacknowledged job after this long; a job's hard time limit plus its
    # longest retry countdown stays below it, so a job still running (or waiting for its retry)
    # is never handed to a second worker.
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = env.int(
        "CELERY_VISIBILITY_TIMEOUT", default=3600
    )
elif CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    # RabbitMQ re-delivers a job as soon as the connection of the worker holding it closes (no
    # timeout to tune). Its consumer_timeout (30 min by default) closes a channel holding a job
    # unacknowledged longer; the same bound as Redis's keeps every job far below it. Confirmed
    # publishes: a job is queued when the publish returns, or the publish raises and the
    # enrichment stays pending for the re-queue service.
    CELERY_BROKER_TRANSPORT_OPTIONS["confirm_publish"] = True
if CELERY_BROKER_URL.startswith("filesystem://"):
    _BROKER_DIR = BASE_DIR / ".broker"
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
    for _folder in ("queue", "processed", "control"):
        (_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
# Prefork, four processes per core: a job's provider lookups run on threads inside its process
# (ENRICHMENT_PROVIDER_CONCURRENCY), so while one process waits for answers the others settle.
CELERY_WORKER_POOL = "prefork"
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=4 * (os.cpu_count() or 1))
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "default"
# A worker started with only `-A enrichment_project` consumes every queue the project uses.
CELERY_TASK_QUEUES = [Queue(CELERY_TASK_DEFAULT_QUEUE), Queue(ENRICHMENT_QUEUE)]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Providers and workers --------------------------------------------------------------------
# Per field, provider classes tried in order until one finds data.
ENRICHMENT_PROVIDERS: dict[str, list[str]] = env.json(
    "ENRICHMENT_PROVIDERS",
    default={
        "emails": ["enrichment.providers.sandbox.SandboxProvider"],
        "phones": ["enrichment.providers.sandbox.SandboxProvider"],
    },
)
ENRICHMENT_PROVIDER_TIMEOUT: float = env.float("ENRICHMENT_PROVIDER_TIMEOUT", default=10.0)
# Lookups in flight at once in one worker process (they wait on I/O, not on the CPU).
ENRICHMENT_PROVIDER_CONCURRENCY = env.int("ENRICHMENT_PROVIDER_CONCURRENCY", default=50)
ENRICHMENT_MAX_ATTEMPTS = env.int("ENRICHMENT_MAX_ATTEMPTS", default=5)
ENRICHMENT_RETRY_BACKOFF_SECONDS: float = env.float("ENRICHMENT_RETRY_BACKOFF_SECONDS", default=2.0)
ENRICHMENT_RETRY_BACKOFF_MAX_SECONDS: float = env.float(
    "ENRICHMENT_RETRY_BACKOFF_MAX_SECONDS", default=120.0
)
# A pending enrichment not done this many seconds after it was queued is re-queued or timed out.
ENRICHMENT_TIMEOUT = env.int("ENRICHMENT_TIMEOUT", default=900)
ENRICHMENT_SANDBOX_LATENCY_MS = env.int("ENRICHMENT_SANDBOX_LATENCY_MS", default=0)
ENRICHMENT_SANDBOX_ERROR_RATE: float = env.float("ENRICHMENT_SANDBOX_ERROR_RATE", default=0.0)
# A provider answer shared between organizations is reused for this many seconds.
ENRICHMENT_GLOBAL_MAX_AGE = env.int("ENRICHMENT_GLOBAL_MAX_AGE", default=30 * 24 * 3600)
CELERY_BEAT_SCHEDULE = {
    "requeue-timed-out-enrichments": {
        "task": "enrichment.requeue_timed_out_enrichments",
        "schedule": 60,
    },
}

# Static files come from the app directories when they were not collected (`make run`).
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(exist_ok=True)
