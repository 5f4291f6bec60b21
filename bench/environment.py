"""The bench's own database and Redis db, and the environment every process of the run gets.

Imported before Django is set up: nothing here may touch settings."""

import os
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
RESULTS = ROOT / "bench" / "results"

# A database of its own, dropped and created by every run; never one the test suite uses.
# BENCH_DATABASE_URL and BENCH_REDIS_URL move it, for two benches on one machine.
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/enrichment_bench"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")

BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "enrichment_project.settings",
    "DATABASE_URL": DATABASE_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    # Shared throttle counters in Redis, as deployed; the limit is raised so it counts but never
    # refuses the load generator.
    "CACHE_URL": REDIS_URL,
    "API_RATE_LIMIT": "1000/s",
    "DEBUG": "false",
    # Section e's webhook receiver listens on the loopback, over plain HTTP.
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
}


def database_parts() -> dict[str, str]:
    url = urlsplit(DATABASE_URL)
    return {
        "host": url.hostname or "127.0.0.1",
        "port": str(url.port or 5432),
        "user": url.username or "postgres",
        "dbname": url.path.lstrip("/"),
    }


def fresh_backends() -> None:
    """Drops and recreates the bench database, and empties the bench Redis db."""
    parts = database_parts()
    with psycopg.connect(
        host=parts["host"], port=parts["port"], user=parts["user"], dbname="postgres"
    ) as admin:
        admin.autocommit = True
        name = sql.Identifier(parts["dbname"])
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    redis.Redis.from_url(REDIS_URL).flushdb()


def configure_process() -> None:
    os.environ.update(BENCH_ENV)
