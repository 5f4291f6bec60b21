"""GET /metrics: the business counters move by exactly what a real worker did, every process's
samples are summed, database gauges are read at scrape time, and the token guards it."""

import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from credits.services import credit_account_lock, credits_reserve
from enrichment.models import Enrichment
from enrichment_project.metrics import (
    MULTIPROC_DIR_VARIABLE,
    metrics_dir_reset,
    metrics_exporter_start,
)
from tests.enrichment.conftest import BATCH_URL, request_enrichments, wait_until_settled
from tests.enrichment.prometheus import INCREMENT, Samples, labels, scrape
from tests.factories import PersonFactory
from tests.processes import python_run

pytestmark = pytest.mark.django_db(transaction=True)


def deltas(before: Samples, after: Samples, *names: str) -> Counter:
    """How much each sample of the named metrics grew between two scrapes (zeros left out)."""
    grown = Counter()
    for key, value in after.items():
        if key[0] in names and value != before.get(key, 0):
            grown[key] = value - before.get(key, 0)
    return grown


def test_counters_move_by_what_a_real_worker_did_for_one_batch(make_tenant, worker):
    tenant = make_tenant(credits=100)
    domains = ["found.example"] * 2 + ["notfound.example", "invalid.example", "fail.example"]
    people = [PersonFactory(organization=tenant.organization, company_domain=d) for d in domains]
    before = scrape()

    response = tenant.client.post(
        BATCH_URL, {"personIds": [str(p.pk) for p in people], "field": "emails"}, format="json"
    )
    assert response.status_code == 200
    wait_until_settled(tenant.organization)
    # Counters move in on_commit callbacks, just after the rows the wait above reads commit.
    deadline = time.monotonic() + 5
    while (after := scrape())[("enrichment_credits_released_total", ())] - before.get(
        ("enrichment_credits_released_total", ()), 0
    ) < 3:
        assert time.monotonic() < deadline, "the release was never counted"
        time.sleep(0.05)

    attempts = django_settings.ENRICHMENT_MAX_ATTEMPTS  # fail.example: transient every time
    assert deltas(
        before,
        after,
        "enrichment_created_total",
        "enrichment_ended_total",
        "enrichment_credits_reserved_total",
        "enrichment_credits_charged_total",
        "enrichment_credits_released_total",
        "enrichment_provider_requests_total",
    ) == {
        ("enrichment_created_total", labels(field="emails")): 5,
        ("enrichment_ended_total", labels(field="emails", status="finished")): 3,
        ("enrichment_ended_total", labels(field="emails", status="failed")): 2,
        ("enrichment_credits_reserved_total", ()): 5,
        ("enrichment_credits_charged_total", ()): 2,
        ("enrichment_credits_released_total", ()): 3,
        ("enrichment_provider_requests_total", labels(provider="sandbox", outcome="found")): 2,
        ("enrichment_provider_requests_total", labels(provider="sandbox", outcome="not_found")): 1,
        (
            "enrichment_provider_requests_total",
            labels(provider="sandbox", outcome="invalid_request"),
        ): 1,
        (
            "enrichment_provider_requests_total",
            labels(provider="sandbox", outcome="transient"),
        ): attempts,
    }
    duration_count = (
        "enrichment_provider_request_duration_seconds_count",
        labels(provider="sandbox"),
    )
    assert after[duration_count] - before.get(duration_count, 0) == 4 + attempts
    batch = labels(method="POST", route="api/v1/operations/enrichment/batch", status="200")
    assert (
        after[("enrichment_http_requests_total", batch)]
        - before.get(("enrichment_http_requests_total", batch), 0)
        == 1
    )
    latency = ("enrichment_http_request_duration_seconds_count", batch[:2])
    assert after[latency] - before.get(latency, 0) == 1
    assert after[("enrichment_pending", labels(field="emails"))] == 0
    assert after[("enrichment_oldest_pending_age_seconds", labels(field="emails"))] == 0


def test_pending_gauges_are_read_from_the_database_at_scrape_time(make_tenant, enrichment_queue):
    tenant = make_tenant(credits=100)
    phones = request_enrichments(
        tenant, PersonFactory.create_batch(3, organization=tenant.organization), field="phones"
    )
    Enrichment.objects.filter(pk=phones[0].pk).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )

    samples = scrape()

    assert samples[("enrichment_pending", labels(field="phones"))] == 3
    assert samples[("enrichment_pending", labels(field="emails"))] == 0
    age = samples[("enrichment_oldest_pending_age_seconds", labels(field="phones"))]
    assert 600 <= age < 660


def test_a_rolled_back_reservation_moves_no_counter(make_tenant):
    tenant = make_tenant(credits=100)
    key = ("enrichment_credits_reserved_total", ())
    before = scrape().get(key, 0)

    with pytest.raises(RuntimeError), transaction.atomic():
        account = credit_account_lock(organization_id=tenant.organization.pk)
        credits_reserve(account=account, amount=7)
        raise RuntimeError("the request failed after reserving")
    with transaction.atomic():
        credits_reserve(
            account=credit_account_lock(organization_id=tenant.organization.pk), amount=2
        )

    assert scrape()[key] - before == 2


def test_one_scrape_sums_the_samples_of_every_process(tmp_path: Path, monkeypatch):
    for amount in (3, 4):  # two processes, one after the other: two files of samples
        python_run(INCREMENT.format(amount=amount), **{MULTIPROC_DIR_VARIABLE: str(tmp_path)})
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    monkeypatch.setenv(MULTIPROC_DIR_VARIABLE, str(tmp_path))

    samples = scrape()
    assert samples[("enrichment_created_total", labels(field="phones"))] == 7
    assert samples[("enrichment_credits_charged_total", ())] == 70

    metrics_dir_reset()  # what a server or worker does when it starts
    assert ("enrichment_created_total", labels(field="phones")) not in scrape()


def test_metrics_token_is_required_when_set(db, settings):
    settings.METRICS_TOKEN = "scrape-me-7f3a"
    client = Client()

    for headers in (
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong"},
        {"HTTP_AUTHORIZATION": "scrape-me-7f3a"},
    ):
        response = client.get("/metrics", **headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
        assert response["WWW-Authenticate"] == "Bearer"

    assert scrape(client, HTTP_AUTHORIZATION="Bearer scrape-me-7f3a")


def test_the_worker_exporter_serves_its_processes_metrics_behind_the_token():
    server = metrics_exporter_start(port=0, token="worker-scrape-1")
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "Bearer worker-scrape-1"})
        with urllib.request.urlopen(request, timeout=5) as response:
            names = {f.name for f in text_string_to_metric_families(response.read().decode())}
    finally:
        server.shutdown()
        server.server_close()
    assert {"enrichment_ended", "enrichment_provider_requests"} <= names
    assert "enrichment_pending" not in names  # the API's /metrics has the database gauges
