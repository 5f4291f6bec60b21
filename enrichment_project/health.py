import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from kombu import Connection
from prometheus_client.exposition import choose_encoder

from enrichment_project.errors import error_body
from enrichment_project.metrics import bearer_token_valid, metrics_registry

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database and the broker both answer."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    ready = all(checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


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
        with Connection(
            settings.CELERY_BROKER_URL,
            transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            connect_timeout=2,
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
