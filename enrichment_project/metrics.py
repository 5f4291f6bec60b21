"""Every Prometheus metric of the service, and the registry `/metrics` serves.

Multi-process: gunicorn workers and Celery's prefork children each write their samples to files in
PROMETHEUS_MULTIPROC_DIR (prometheus_client reads the variable when it is first imported, so it is
set in the environment of the server, never here), and a scrape sums the files of every process.
Without the variable (one process: runserver, a test) the process's own registry is served.

Labels stay low-cardinality: field, status, provider, outcome, method, route. Never an
organization, person or enrichment id; those belong in logs.
"""

import hmac
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from providers.circuit import OPEN, circuit_states
from providers.registry import provider_names_configured

logger = logging.getLogger(__name__)
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Multi-process mode has no `_created` series; without them one process serves the same ones.
disable_created_metrics()

HTTP_REQUESTS = Counter(
    "enrichment_http_requests_total",
    "HTTP requests answered, by method, URL pattern and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "enrichment_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and URL pattern.",
    ["method", "route"],
)
ENRICHMENTS_CREATED = Counter(
    "enrichment_created_total", "Enrichments created (pending, credits reserved).", ["field"]
)
ENRICHMENTS_ENDED = Counter(
    "enrichment_ended_total",
    "Enrichments that left pending, by field and final status.",
    ["field", "status"],
)
PROVIDER_REQUESTS = Counter(
    "enrichment_provider_requests_total",
    "Provider requests sent, by provider and outcome (found, not_found, transient, "
    "provider_failure, invalid_request, pending), as the provider call log classifies them.",
    ["provider", "outcome"],
)
PROVIDER_REQUEST_DURATION = Histogram(
    "enrichment_provider_request_duration_seconds",
    "Time a provider request took, whatever its outcome.",
    ["provider"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CREDITS_RESERVED = Counter(
    "enrichment_credits_reserved_total", "Credits reserved by new enrichments."
)
CREDITS_CHARGED = Counter("enrichment_credits_charged_total", "Credits charged for data found.")
CREDITS_RELEASED = Counter(
    "enrichment_credits_released_total",
    "Reserved credits given back (nothing found, failed, timed out, cancelled, deleted).",
)
WEBHOOK_DELIVERIES = Counter(
    "enrichment_webhook_deliveries_total",
    "Webhook delivery outcomes: delivered, failed_attempt (retried later), failed (given up) and "
    "disabled (ended unsent with its endpoint).",
    ["outcome"],
)


def count_on_commit(counter: Counter, amount: float = 1, **labels: str) -> None:
    """Counts once the current transaction commits: a rollback moves no counter."""
    if amount:
        child = counter.labels(**labels) if labels else counter
        transaction.on_commit(lambda: child.inc(amount))


class PendingCollector(Collector):
    """Pending enrichments and the oldest one's age, read from the database at scrape time, so
    every process that serves the scrape gives the same answer."""

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "enrichment_pending", "Enrichments waiting for a provider answer.", labels=["field"]
        )
        oldest = GaugeMetricFamily(
            "enrichment_oldest_pending_age_seconds",
            "Seconds since the oldest pending enrichment was created (0 when none is pending).",
            labels=["field"],
        )
        now = timezone.now()
        rows = {field: (0, None) for field in settings.ENRICHMENT_CREDIT_COSTS}
        with connection.cursor() as cursor:
            # Pending rows have a partial index (enrichment_pending_age) the planner can use to
            # read only the backlog.
            cursor.execute(
                "SELECT field, count(*), min(created_at) FROM enrichment_enrichment "
                "WHERE status = 'pending' GROUP BY field"
            )
            rows |= {field: (count, first) for field, count, first in cursor.fetchall()}
        for field, (count, first) in sorted(rows.items()):
            pending.add_metric([field], count)
            oldest.add_metric([field], (now - first).total_seconds() if first else 0)
        yield pending
        yield oldest


class CircuitCollector(Collector):
    """Each configured provider's circuit, 1 while open (its requests skipped), read from the
    shared circuit store at scrape time, so every process that serves the scrape agrees. Half-open
    counts as 0: requests (trials) are sent again. With the store unreachable the gauge is left
    out (alert on its absence) rather than failing the whole scrape."""

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "enrichment_provider_circuit_open",
            "1 while the provider's circuit is open (its lookups skipped), else 0.",
            labels=["provider"],
        )
        try:
            states = circuit_states(provider_names_configured())
        except Exception:
            logger.warning("Metrics: provider circuits unreadable", exc_info=True)
            return
        for state in states:
            gauge.add_metric([state.provider], 1 if state.state == OPEN else 0)
        yield gauge


def metrics_registry(*, with_shared_gauges: bool = True) -> CollectorRegistry:
    """What a scrape reads: every process's samples (or this process's), plus the gauges read from
    the shared stores (the database's pending rows, the circuits in Redis)."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    if with_shared_gauges:
        registry.register(PendingCollector())
        registry.register(CircuitCollector())
    return registry


def bearer_token_valid(authorization: str, token: str) -> bool:
    """No token configured lets every scrape in; else `Bearer <token>`, compared in constant
    time."""
    if not token:
        return True
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # a scrape every few seconds
        pass


def metrics_exporter_start(*, port: int, token: str) -> ThreadingWSGIServer:
    """Serves a Celery worker's metrics (its prefork children's summed) from a thread of its main
    process. Without the gauges read from the database and Redis: the API's /metrics has them,
    once."""
    scrape = make_wsgi_app(metrics_registry(with_shared_gauges=False))

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not bearer_token_valid(environ.get("HTTP_AUTHORIZATION", ""), token):
            start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
            return [b"A valid metrics token is required."]
        return scrape(environ, start_response)

    server = make_server("", port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def metrics_dir_reset() -> None:
    """Run when a server or worker starts (before it forks its processes): removes the samples of
    processes that are no longer running, which a previous run left and a scrape would otherwise
    sum forever. Files of running processes stay, so a web server and a worker may share the
    directory on one host (`make run`); a file's name ends with its process id."""
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        stem, _, pid = name.removesuffix(".db").rpartition("_")
        if stem and pid.isdigit() and not _running(int(pid)):
            os.remove(os.path.join(directory, name))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def metrics_process_dead(pid: int) -> None:
    """Drops the live-gauge files of an exited process (gunicorn child_exit, Celery's
    worker_process_shutdown); its counters stay, so totals never go down."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        multiprocess.mark_process_dead(pid)
