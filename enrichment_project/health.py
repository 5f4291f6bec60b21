import logging
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client.exposition import choose_encoder

from enrichment_project.celery import app as celery_app
from enrichment_project.errors import error_body
from enrichment_project.metrics import bearer_token_valid, metrics_registry
from providers.circuit import CLOSED, circuit_states
from providers.registry import provider_names_configured

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database and the broker both answer. Providers whose circuit is not closed
    are reported in the details without failing readiness: the service still takes requests, and
    the waterfall asks the other providers (or retries later)."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    ready = all(checks.values())
    return JsonResponse(
        {
            "status": "ok" if ready else "unavailable",
            "checks": checks,
            "details": {"openCircuits": _open_circuits()},
        },
        status=200 if ready else 503,
    )


def _open_circuits() -> list[dict[str, Any]] | None:
    """The configured providers' circuits that are open or half-open; None when the circuit store
    cannot be read."""
    try:
        states = circuit_states(provider_names_configured())
    except Exception:
        logger.warning("Readiness: provider circuits unreadable", exc_info=True)
        return None
    return [
        {
            "provider": state.provider,
            "state": state.state,
            "reason": state.reason,
            "openedAt": _iso(state.opened_at),
            "reopensAt": _iso(state.reopen_at),
        }
        for state in states
        if state.state != CLOSED
    ]


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch is not None else None


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.warning("Readiness: database unreachable", exc_info=True)
        return False


def _broker_ok() -> bool:
    try:
        # The app's transport, TLS and transport options, as the workers connect.
        with celery_app.connection_for_write(
            settings.CELERY_BROKER_URL, connect_timeout=2
        ) as broker:
            broker.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        logger.warning("Readiness: broker unreachable", exc_info=True)
        return False


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition of every process's metrics; a Bearer token when METRICS_TOKEN
    is set."""
    if not bearer_token_valid(request.headers.get("Authorization", ""), settings.METRICS_TOKEN):
        response = JsonResponse(
            error_body("VALIDATION_ERROR", "A valid metrics token is required."), status=401
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(metrics_registry()), content_type=content_type)
