"""Provider circuits as operations see them: /readyz lists the open ones without failing
readiness, and the API's /metrics reads each configured provider's circuit from Redis at scrape
time (so any process answers the same), while the worker's exporter leaves the gauge out."""

from collections.abc import Iterator
from datetime import datetime

import pytest
from django.core.cache import caches
from django.test import Client
from prometheus_client import generate_latest

from enrichment_project.metrics import metrics_registry
from providers.circuit import Circuit
from tests.enrichment.prometheus import labels, scrape
from tests.processes import python_run

GAUGE = "enrichment_provider_circuit_open"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def providers(settings) -> Iterator[None]:
    """Three configured providers, every circuit closed (they live in this suite's Redis db)."""
    settings.ENRICHMENT_PROVIDERS = {"emails": ["hunter", "pdl"], "phones": ["pdl", "lusha"]}
    settings.ENRICHMENT_PROVIDER_COOLDOWN = 300
    caches["providers"].clear()
    yield
    caches["providers"].clear()


def open_in_another_process(provider: str, reason: str) -> None:
    """Opens the circuit as a worker process would: nothing shared with this one but Redis."""
    code = (
        "import django; django.setup(); from providers.circuit import Circuit; "
        f"Circuit({provider!r}).record_failure({reason!r})"
    )
    python_run(code)


@pytest.mark.broker
def test_readiness_lists_an_open_circuit_and_stays_ready() -> None:
    open_in_another_process("pdl", "credits_exhausted")

    response = Client().get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": True, "broker": True}
    [circuit] = body["details"]["openCircuits"]
    opened, reopens = (
        datetime.fromisoformat(circuit.pop(key)) for key in ("openedAt", "reopensAt")
    )
    assert circuit == {"provider": "pdl", "state": "open", "reason": "credits_exhausted"}
    assert (reopens - opened).total_seconds() == 300


@pytest.mark.broker
def test_readiness_lists_a_half_open_circuit_and_stays_ready_with_every_circuit_open(
    settings,
) -> None:
    for name in ("hunter", "lusha"):
        Circuit(name).record_failure("key_rejected")
    settings.ENRICHMENT_PROVIDER_COOLDOWN = 0
    Circuit("pdl").record_failure("key_rejected")

    response = Client().get("/readyz")

    assert response.status_code == 200
    states = {c["provider"]: c["state"] for c in response.json()["details"]["openCircuits"]}
    assert states == {"hunter": "open", "pdl": "half_open", "lusha": "open"}


def circuit_gauge() -> dict[str, float]:
    samples = scrape()
    return {
        provider: samples[(GAUGE, labels(provider=provider))]
        for provider in ("hunter", "pdl", "lusha")
    }


def test_the_gauge_reads_each_configured_circuit_from_redis_at_scrape_time(settings) -> None:
    assert circuit_gauge() == {"hunter": 0, "pdl": 0, "lusha": 0}

    open_in_another_process("hunter", "credits_exhausted")
    assert circuit_gauge() == {"hunter": 1, "pdl": 0, "lusha": 0}

    settings.ENRICHMENT_PROVIDER_COOLDOWN = 0
    Circuit("lusha").record_failure("key_rejected")  # half-open at once: trials are sent again
    assert circuit_gauge() == {"hunter": 1, "pdl": 0, "lusha": 0}

    Circuit("hunter").record_success()
    assert circuit_gauge() == {"hunter": 0, "pdl": 0, "lusha": 0}


def test_the_worker_exporter_leaves_the_gauge_to_the_api() -> None:
    Circuit("hunter").record_failure("credits_exhausted")

    assert GAUGE.encode() in generate_latest(metrics_registry())
    assert GAUGE.encode() not in generate_latest(metrics_registry(with_shared_gauges=False))


@pytest.fixture
def circuit_store_down(settings) -> Iterator[None]:
    healthy = settings.CACHES
    settings.CACHES = {
        **healthy,
        "providers": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }
    yield
    settings.CACHES = healthy  # before the circuits are cleared


@pytest.mark.broker
def test_an_unreadable_circuit_store_neither_fails_readiness_nor_the_scrape(
    circuit_store_down: None,
) -> None:
    response = Client().get("/readyz")

    assert response.status_code == 200
    assert response.json()["details"] == {"openCircuits": None}
    samples = scrape()
    assert not any(name == GAUGE for name, _ in samples)
    assert any(name == "enrichment_pending" for name, _ in samples)
