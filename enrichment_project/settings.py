"""The one settings module: every deployment difference comes from environment variables.

With no configuration at all it runs on an embedded default (SQLite and a file-system broker) so
that `make run` works on a fresh machine; production and the test suite set DATABASE_URL and
CELERY_BROKER_URL to PostgreSQL and Redis.
"""

import ipaddress
import ssl
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
    "providers",
    "enrichment",
    "webhooks",
]

MIDDLEWARE = [
    "enrichment_project.middleware.RequestIdMiddleware",
    "enrichment_project.middleware.RateLimitHeadersMiddleware",
    "enrichment_project.middleware.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves collected static files (admin, API docs) from the app server itself, with DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so it keeps the view's own response; RateLimit headers are added outside it.
    "enrichment_project.idempotency.IdempotencyMiddleware",
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
    "DEFAULT_SCHEMA_CLASS": "enrichment_project.openapi.AutoSchema",
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
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
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
# Django's Redis backend keeps a connection pool per thread; a worker's lookup threads share one.
SHARED_REDIS_CACHE = "enrichment_project.cache.SharedRedisCache"
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    CACHES["default"]["BACKEND"] = SHARED_REDIS_CACHE

SPECTACULAR_SETTINGS = {
    "TITLE": "Contact enrichment API",
    "DESCRIPTION": "Persons, credits and asynchronous email/phone enrichment.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema as generated clients see it: headers, idempotency and enum references are
    # declared for every operation by enrichment_project.openapi.postprocess_schema.
    "SERVERS": [{"url": "/", "description": "The host that serves this schema"}],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "enrichment_project.openapi.postprocess_schema",
    ],
    # Named once, so two models' `status` choices never rename each other's enum in clients.
    "ENUM_NAME_OVERRIDES": {
        "ErrorCodeEnum": "enrichment_project.errors.ErrorCode",
        "StatusEnum": "enrichment.models.Status",
        "DeliveryStatusEnum": "webhooks.models.DeliveryStatus",
    },
}

# --- Logs, metrics, error reporting ------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line (python-json-logger) with level, logger, message and
# the ids of enrichment_project.log_context (request_id, organization_id, task_id, enrichment_id).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "enrichment_project.log_context.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601, UTC
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
# When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# A worker with WORKER_METRICS_PORT serves its processes' metrics on that port (GET /metrics).
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=None)
# Seconds a worker thread may run Python before the interpreter makes it hand over to a waiting
# thread (sys.setswitchinterval; Python's default is 0.005). A worker's hundreds of lookup threads
# each wake briefly, and at 5 ms the forced hand-overs cost more CPU than the lookups themselves
# (README, "Worker drains").
WORKER_SWITCH_INTERVAL: float = env.float("WORKER_SWITCH_INTERVAL", default=0.02)
# Task events feed Flower (its dashboard and /metrics); off unless a Flower listens.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=False)
CELERY_TASK_SEND_SENT_EVENT = CELERY_WORKER_SEND_TASK_EVENTS
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    from enrichment_project.sentry import sentry_init

    sentry_init(
        dsn=SENTRY_DSN,
        environment=env.str("SENTRY_ENVIRONMENT", default=None),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )

# --- Enrichment -------------------------------------------------------------------------------
ENRICHMENT_CREDIT_COSTS: dict[str, int] = env.json(
    "ENRICHMENT_CREDIT_COSTS", default={"emails": 1, "phones": 10}
)
# Seconds after which a finished enrichment is no longer reused; unset means reused forever.
ENRICHMENT_REUSE_MAX_AGE: int | None = env.int("ENRICHMENT_REUSE_MAX_AGE", default=None)
ENRICHMENT_BATCH_MAX_PERSONS = 100
# --- Enrichment batches and bulk ---
# Persons of one bulk request (by ids or by search), all enriched in one transaction.
ENRICHMENT_BULK_MAX_PERSONS = 1000
# The longest maxAge a request may send (100 years), so the cutoff date stays representable.
ENRICHMENT_MAX_AGE_LIMIT = 100 * 365 * 24 * 3600
PERSONS_BULK_MAX = 1000

# --- Persons CSV import -----------------------------------------------------------------------
# Rows per import (the SPEC's 10,000), and the upload's own byte limit: CRM exports carry many
# columns the import ignores, so 10,000 rows can outgrow DATA_UPLOAD_MAX_MEMORY_SIZE.
PERSONS_IMPORT_MAX_ROWS = 10_000
PERSONS_IMPORT_MAX_BYTES = env.int("PERSONS_IMPORT_MAX_BYTES", default=10 * 1024 * 1024)
# Enrichments of one request travel in messages of this many ids, so a batch of 100 costs a few
# broker round trips instead of 100; each id is still claimed, retried and recovered on its own.
ENRICHMENT_TASK_CHUNK_SIZE = env.int("ENRICHMENT_TASK_CHUNK_SIZE", default=100)
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
    # kombu's Redis transport with a fix that keeps the worker alive when the broker goes away
    # (enrichment_project/broker.py).
    CELERY_BROKER_TRANSPORT = "enrichment_project.broker:RedisTransport"
    if CELERY_BROKER_URL.startswith("rediss://"):
        # Named by its scheme, kombu would not check the server's certificate; named by its class,
        # it would not use TLS at all. A certificate is checked unless the URL says otherwise
        # (`?ssl_cert_reqs=none` for a self-signed one).
        CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
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
# A thread cannot be cancelled: a job running when the broker connection drops finishes, and its
# message, re-delivered meanwhile, finds its enrichments settled or held by the live job.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Celery would lower the prefetch count while those jobs run and raise it as they end; with the
# threads pool the raise could be lost and the worker stop consuming after a RabbitMQ restart
# (tests/faults: test_worker_resumes_by_itself_after_the_broker_restarts). At most a few
# messages more are reserved while they finish.
CELERY_WORKER_ENABLE_PREFETCH_COUNT_REDUCTION = False
# The threads pool does not enforce time limits: a job stops waiting for its lookups at the soft
# limit by itself (enrichment/tasks.py), and the hard one is the claim lease.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
# Jobs run on threads, many per worker process: a job mostly waits for provider answers, so a
# process keeps other jobs' lookups in flight while one settles or waits for its slowest answer.
# Run two worker processes per core (README, "Pool choice"); each holds a database connection
# per job thread. Celery takes `--pool prefork` on the command line for its default and keeps this
# one, so another pool is chosen here.
CELERY_WORKER_POOL = env.str("CELERY_WORKER_POOL", default="threads")
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=8)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "default"
# A worker started with only `-A enrichment_project` consumes every queue the project uses.
CELERY_TASK_QUEUES = [Queue(CELERY_TASK_DEFAULT_QUEUE), Queue(ENRICHMENT_QUEUE)]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Providers and workers --------------------------------------------------------------------
# Per field, provider names (or dotted paths to adapter classes) tried in order until one finds
# data; a field left out is served by the sandbox.
ENRICHMENT_PROVIDERS: dict[str, list[str]] = env.json(
    "ENRICHMENT_PROVIDERS", default={"emails": ["sandbox"], "phones": ["sandbox"]}
)
ENRICHMENT_PROVIDER_TIMEOUT: float = env.float("ENRICHMENT_PROVIDER_TIMEOUT", default=10.0)
# Lookups in flight at once in one worker process (they wait on I/O, not on the CPU): by default
# enough for every job the process runs, so no job waits for another's lookups to end.
ENRICHMENT_PROVIDER_CONCURRENCY = env.int(
    "ENRICHMENT_PROVIDER_CONCURRENCY",
    default=CELERY_WORKER_CONCURRENCY * ENRICHMENT_TASK_CHUNK_SIZE,
)
# A job settles its answers in waves: one turn on the credit row's lock for many answers instead
# of a few each. A wave takes more answers for as long as each window of this many seconds
# brings one (0: settle at once), for at most ENRICHMENT_WAVE_MAX seconds after its first.
ENRICHMENT_WAVE_WINDOW: float = env.float("ENRICHMENT_WAVE_WINDOW", default=0.05)
ENRICHMENT_WAVE_MAX: float = env.float("ENRICHMENT_WAVE_MAX", default=0.5)
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

# --- Idempotency --------------------------------------------------------------------------------
# A response kept for an Idempotency-Key is replayed this long (24 h in the SPEC), then purged.
IDEMPOTENCY_KEY_RETENTION = 24 * 3600
# Seconds a claim blocks its key while its request runs; above gunicorn's 30 s worker timeout,
# so a request still running keeps its claim and only one whose process died is taken over.
IDEMPOTENCY_LEASE = env.int("IDEMPOTENCY_LEASE", default=60)
CELERY_BEAT_SCHEDULE["purge-expired-idempotency-keys"] = {
    "task": "organizations.purge_expired_idempotency_keys",
    "schedule": 3600,
}

# --- Providers: real data sources (issue 9) -----------------------------------------------------
# Per provider NAME (e.g. HUNTER): NAME_API_KEY, NAME_BASE_URL, NAME_RATE_LIMIT, NAME_TIMEOUT are
# read by providers.config when ENRICHMENT_PROVIDERS names it.
# Seconds a provider stays skipped after a provider-level failure (rejected key, out of credits).
ENRICHMENT_PROVIDER_COOLDOWN = env.int("ENRICHMENT_PROVIDER_COOLDOWN", default=300)
# This many transient failures in a row (across all workers) open the circuit for the shorter time.
ENRICHMENT_PROVIDER_TRANSIENT_STREAK = env.int("ENRICHMENT_PROVIDER_TRANSIENT_STREAK", default=5)
ENRICHMENT_PROVIDER_TRANSIENT_COOLDOWN = env.int(
    "ENRICHMENT_PROVIDER_TRANSIENT_COOLDOWN", default=60
)
# Seconds a worker process trusts its last reading of a closed circuit before reading it again:
# saves a Redis round trip per request; another process's opening is seen this much later.
ENRICHMENT_PROVIDER_CIRCUIT_REFRESH: float = env.float(
    "ENRICHMENT_PROVIDER_CIRCUIT_REFRESH", default=0.25
)
# Seconds one half-open trial request holds the circuit before another caller may try.
ENRICHMENT_PROVIDER_TRIAL_LEASE = env.int("ENRICHMENT_PROVIDER_TRIAL_LEASE", default=30)
# Longest a lookup waits for a rate-limit slot; beyond it the lookup is a transient failure.
ENRICHMENT_PROVIDER_MAX_WAIT: float = env.float("ENRICHMENT_PROVIDER_MAX_WAIT", default=30.0)
# Answers below this quality count as not found (unknown < probable < verified).
ENRICHMENT_MIN_QUALITY: dict[str, str] = env.json(
    "ENRICHMENT_MIN_QUALITY", default={"emails": "unknown", "phones": "unknown"}
)
# Provider calls are buffered per process and written in one INSERT when this many are waiting
# (or when flushed).
PROVIDER_CALLS_BUFFER_MAX = env.int("PROVIDER_CALLS_BUFFER_MAX", default=500)


def _redis_url(url: str) -> str:
    return url if url.startswith(("redis://", "rediss://")) else ""


# Rate limits and circuits are shared through the Redis of CACHE_URL, else of the broker; with
# neither (the embedded default) they hold per process.
PROVIDERS_REDIS_URL = _redis_url(env.str("CACHE_URL", default="")) or _redis_url(CELERY_BROKER_URL)
PROVIDERS_RATE_LIMIT_STORAGE_URL = PROVIDERS_REDIS_URL or "memory://"
# Provider keys are redacted from every line of every log handler, whichever library logs it.
LOGGING.setdefault("filters", {})["redact_provider_keys"] = {
    "()": "providers.redaction.RedactKeysFilter"
}
for _handler in LOGGING["handlers"].values():
    _handler.setdefault("filters", []).append("redact_provider_keys")
CACHES["providers"] = (
    {
        "BACKEND": SHARED_REDIS_CACHE,
        "LOCATION": PROVIDERS_REDIS_URL,
        "KEY_PREFIX": "providers",
    }
    if PROVIDERS_REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "providers"}
)

# --- Asynchronous providers (Dropcontact; issue 9, item 6) -------------------------------------
# A submission not answered this many seconds after it was sent counts as a transient failure.
ENRICHMENT_ASYNC_MAX_WAIT = env.int("ENRICHMENT_ASYNC_MAX_WAIT", default=1800)
# Seconds between two polls of one submission, and between two runs of the sweep that polls the due
# ones (a beat sweep, not broker countdowns: a Redis broker redelivers a delayed task).
ENRICHMENT_ASYNC_POLL_SECONDS = env.int("ENRICHMENT_ASYNC_POLL_SECONDS", default=30)
# Submissions one sweep run polls; the rest stay due for the next run.
ENRICHMENT_ASYNC_SWEEP_MAX = 100
CELERY_BEAT_SCHEDULE["poll-async-lookups"] = {
    "task": "enrichment.poll_async_lookups",
    "schedule": ENRICHMENT_ASYNC_POLL_SECONDS,
}

# --- Webhooks -----------------------------------------------------------------------------------
# Receivers must be https unless this is true (e.g. a receiver on the install's private network).
WEBHOOK_ALLOW_HTTP = env.bool("WEBHOOK_ALLOW_HTTP", default=False)
# Comma-separated CIDRs whose non-public addresses receivers may use (self-hosted installs); parsed
# here so that a typo stops the start instead of refusing every delivery.
WEBHOOK_ALLOWED_NETWORKS = [
    str(ipaddress.ip_network(cidr.strip()))
    for cidr in env.list("WEBHOOK_ALLOWED_NETWORKS", default=[])
]
WEBHOOK_TIMEOUT: float = env.float("WEBHOOK_TIMEOUT", default=15.0)
# Seconds before attempts 2 to 8 (each with ±10 % jitter); after the 8th failure it stays failed.
WEBHOOK_RETRY_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]
# An endpoint whose deliveries have all failed for this long is disabled.
WEBHOOK_DISABLE_AFTER_FAILING = 5 * 24 * 3600
WEBHOOK_QUEUE = "webhooks"
CELERY_TASK_QUEUES.append(Queue(WEBHOOK_QUEUE))
# A Redis broker is read in the order of CELERY_TASK_QUEUES, webhooks last: a worker takes a
# delivery only when no enrichment job waits, so deliveries never slow settlements down (during
# a burst they wait for it to drain).
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] = "priority"
# Deliveries per job, sent this many at once (threads waiting on receivers).
WEBHOOK_TASK_CHUNK_SIZE = env.int("WEBHOOK_TASK_CHUNK_SIZE", default=50)
WEBHOOK_DELIVERY_CONCURRENCY = env.int("WEBHOOK_DELIVERY_CONCURRENCY", default=10)
# Retries are sent by this sweep, not by broker countdowns: a Redis broker redelivers a delayed
# task past its visibility timeout. It also recovers deliveries whose queueing was lost.
WEBHOOK_SWEEP_SECONDS = env.int("WEBHOOK_SWEEP_SECONDS", default=5)
WEBHOOK_SWEEP_MAX = 5000
CELERY_BEAT_SCHEDULE["sweep-due-webhook-deliveries"] = {
    "task": "webhooks.sweep_due_deliveries",
    "schedule": WEBHOOK_SWEEP_SECONDS,
}

# Static files come from the app directories when they were not collected (`make run`).
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(exist_ok=True)
