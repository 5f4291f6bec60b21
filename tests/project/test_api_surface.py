"""The error shape everywhere, health checks, and the OpenAPI schema with its local docs."""

import logging

import pytest
from django.core.cache import caches
from django.test import Client
from django.urls import path

from enrichment_project.urls import handler500  # noqa: F401 - the urlconf below needs it
from enrichment_project.urls import urlpatterns as project_urls
from tests.enrichment.test_batch_api import assert_error


def exploding_view(request):
    raise RuntimeError("secret internal detail")


urlpatterns = [*project_urls, path("boom", exploding_view)]


def test_unknown_path_is_a_json_404(tenant):
    assert_error(tenant.client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")


def test_wrong_method_keeps_the_error_shape(tenant):
    response = tenant.client.delete("/api/v1/operations/credits/balance")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")


def test_non_json_body_keeps_the_error_shape(tenant):
    response = tenant.client.post(
        "/api/v1/operations/enrichment/batch", "personIds=1", content_type="text/plain"
    )
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.urls("tests.project.test_api_surface")
def test_unexpected_error_is_a_500_with_request_id_and_no_stack_trace(db, caplog):
    client = Client(raise_request_exception=False)

    with caplog.at_level(logging.ERROR):
        response = client.get("/boom", HTTP_X_REQUEST_ID="trace-me-42")

    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert error["details"] == {"requestId": "trace-me-42"}
    assert response["X-Request-ID"] == "trace-me-42"
    assert "secret internal detail" not in response.content.decode()
    assert "trace-me-42" in caplog.text


def test_every_response_carries_a_request_id(tenant):
    assert len(tenant.client.get("/api/v1/operations/credits/balance")["X-Request-ID"]) == 32


@pytest.mark.broker
def test_health_and_readiness(db):
    caches["providers"].clear()  # no circuit left open by another test
    client = Client()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": True, "broker": True},
        "details": {"openCircuits": []},
    }


@pytest.mark.broker
def test_readiness_fails_when_the_broker_is_unreachable(db, settings):
    # The configured broker's kind (Redis or RabbitMQ), on a port nothing listens on.
    scheme = settings.CELERY_BROKER_URL.partition("://")[0]
    settings.CELERY_BROKER_URL = f"{scheme}://127.0.0.1:1/"

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": True, "broker": False}


def test_openapi_schema_documents_the_endpoints(db):
    response = Client().get("/api/schema", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for endpoint in (
        "/api/v1/operations/enrichment/batch",
        "/api/v1/operations/enrichment/batch/query",
        "/api/v1/operations/enrichment/{person_id}",
        "/api/v1/enrichments",
        "/api/v1/enrichments/{enrichment_id}/cancel",
        "/api/v1/operations/credits/balance",
        "/api/v1/operations/credits/history",
    ):
        assert endpoint in schema["paths"], endpoint
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_interactive_docs_are_served_without_any_cdn(db):
    response = Client().get("/api/docs")

    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "unpkg" not in page and "jsdelivr" not in page
    assert Client().get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def test_oversized_body_is_refused_with_413_before_any_work(tenant, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = '{"personIds": [' + ",".join(['"x"'] * 5000) + '], "field": "emails"}'

    response = tenant.client.post(
        "/api/v1/operations/enrichment/batch", body, content_type="application/json"
    )

    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"maxBytes": 10_000}


def test_requests_beyond_the_per_key_rate_are_429_with_retry_after(make_tenant, settings):
    settings.API_RATE_LIMIT = "3/min"
    throttled, other = make_tenant(), make_tenant()

    statuses = [throttled.client.get("/api/v1/operations/credits/balance") for _ in range(4)]

    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert_error(statuses[-1], 429, "RATE_LIMITED")
    assert 0 < int(statuses[-1]["Retry-After"]) <= 60
    # The limit is per key: another organization's key is unaffected.
    assert other.client.get("/api/v1/operations/credits/balance").status_code == 200
