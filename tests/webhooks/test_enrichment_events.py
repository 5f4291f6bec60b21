"""`enrichment.completed` and `enrichment_batch.completed`: written in the transaction that ends
an enrichment (settlement, cancel, time-out) or completes a batch, rendered as the API renders
them, and only where an endpoint is subscribed."""

import json
import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from enrichment.models import Enrichment, Status
from enrichment.serializers import EnrichmentOut
from enrichment.services import Settlement, enrichments_requeue_timed_out, enrichments_settle
from enrichment_project.celery import app
from providers.base import FoundValue
from tests.enrichment.conftest import BATCH_URL, request_enrichments
from tests.factories import PersonFactory
from tests.webhooks.conftest import HOOK_PATH, verified_body
from webhooks.events import ENRICHMENT_BATCH_COMPLETED, ENRICHMENT_COMPLETED
from webhooks.models import WebhookDelivery, WebhookEvent


def rendered(enrichment: Enrichment) -> dict:
    enrichment.refresh_from_db()
    return json.loads(json.dumps(EnrichmentOut(enrichment).data))


def pending_of(tenant, count: int, domain: str = "found.example") -> list[Enrichment]:
    people = PersonFactory.create_batch(
        count, organization=tenant.organization, company_domain=domain
    )
    return request_enrichments(tenant, people)


def finished(enrichments: list[Enrichment]) -> list[Settlement]:
    return [
        Settlement(
            enrichment=enrichment,
            status=Status.FINISHED,
            values=[
                FoundValue(
                    value=f"{enrichment.pk.hex[:8]}@found.example", type="work", quality="verified"
                )
            ],
            provider="sandbox",
        )
        for enrichment in enrichments
    ]


@pytest.mark.django_db
def test_settlement_writes_one_event_per_enrichment_with_the_api_rendering(tenant, make_endpoint):
    make_endpoint(tenant.organization)
    enrichments = pending_of(tenant, 3)

    enrichments_settle(settlements=finished(enrichments))

    events = {event.payload["id"]: event for event in WebhookEvent.objects.all()}
    assert set(events) == {str(enrichment.pk) for enrichment in enrichments}
    for enrichment in enrichments:
        event = events[str(enrichment.pk)]
        assert event.type == ENRICHMENT_COMPLETED
        assert event.payload == rendered(enrichment)
        assert event.payload["status"] == "finished" and event.payload["creditsCharged"] == 1
    assert WebhookDelivery.objects.filter(status="pending").count() == 3


@pytest.mark.django_db
def test_cancel_and_time_out_write_their_events(tenant, make_endpoint):
    make_endpoint(tenant.organization)
    cancelled, timed_out = pending_of(tenant, 2)

    response = tenant.client.post(f"/api/v1/enrichments/{cancelled.pk}/cancel")
    assert response.status_code == 200
    Enrichment.objects.filter(pk=timed_out.pk).update(
        queued_at=timezone.now() - timedelta(hours=1), attempts=3
    )
    enrichments_requeue_timed_out(older_than=900, max_attempts=3)

    statuses = {
        event.payload["id"]: event.payload["status"] for event in WebhookEvent.objects.all()
    }
    assert statuses == {str(cancelled.pk): "cancelled", str(timed_out.pk): "timeout"}
    payloads = {event.payload["id"]: event.payload for event in WebhookEvent.objects.all()}
    assert payloads[str(timed_out.pk)] == rendered(timed_out)
    assert payloads[str(cancelled.pk)] == response.json()


@pytest.mark.django_db
def test_no_event_for_an_organization_without_a_subscribed_endpoint(
    tenant, make_tenant, make_endpoint
):
    make_endpoint(make_tenant().organization)  # another organization's endpoint
    enrichments_settle(settlements=finished(pending_of(tenant, 2)))
    assert not WebhookEvent.objects.exists()


def _settlement_statements(tenant, count: int) -> int:
    settlements = finished(pending_of(tenant, count))
    with CaptureQueriesContext(connection) as captured:
        enrichments_settle(settlements=settlements)
    return len(captured)


@pytest.mark.django_db
def test_a_subscriber_adds_one_statement_to_a_settlement_whatever_its_size(
    make_tenant, make_endpoint
):
    without = make_tenant(credits=100)
    with_subscriber = make_tenant(credits=100)
    make_endpoint(with_subscriber.organization)

    counts = {
        size: (_settlement_statements(without, size), _settlement_statements(with_subscriber, size))
        for size in (1, 20)
    }

    assert counts[1][0] == counts[20][0], "the count without a subscriber depends on the size"
    # The events and their deliveries, inserted together.
    assert [plain + 1 for plain, _ in counts.values()] == [
        subscribed for _, subscribed in counts.values()
    ]


@pytest.mark.django_db(transaction=True)
def test_a_worker_settles_an_enrichment_and_delivers_its_signed_event(
    make_tenant, make_endpoint, receiver
):
    tenant = make_tenant(credits=10)
    endpoint = make_endpoint(tenant.organization)
    receiver.expect_request(HOOK_PATH).respond_with_data(status=204)

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False):
        [enrichment] = pending_of(tenant, 1)
        deadline = time.monotonic() + 30
        while not WebhookDelivery.objects.filter(status="delivered").exists():
            assert time.monotonic() < deadline, "the event was not delivered"
            time.sleep(0.05)

    [(request, _)] = receiver.log
    body = verified_body(request, endpoint.secret)
    assert body["type"] == ENRICHMENT_COMPLETED
    assert body["data"] == rendered(enrichment)
    assert body["data"]["status"] == "finished" and body["data"]["dataFound"] is True


@pytest.mark.django_db
def test_the_batch_event_is_written_once_when_its_last_enrichment_ends(tenant, make_endpoint):
    make_endpoint(tenant.organization, events=(ENRICHMENT_BATCH_COMPLETED,))
    people = PersonFactory.create_batch(
        3, organization=tenant.organization, company_domain="found.example"
    )
    response = tenant.client.post(
        BATCH_URL, {"personIds": [str(p.pk) for p in people], "field": "emails"}, format="json"
    )
    batch_id = response["Enrichment-Batch-Id"]
    first, second, last = Enrichment.objects.filter(pk__in=[e["id"] for e in response.json()])

    enrichments_settle(settlements=finished([first, second]))
    assert not WebhookEvent.objects.exists()
    enrichments_settle(settlements=finished([last]))

    [event] = WebhookEvent.objects.all()
    assert event.type == ENRICHMENT_BATCH_COMPLETED
    assert event.payload == tenant.client.get(f"/api/v1/enrichment-batches/{batch_id}").json()
    assert (event.payload["total"], event.payload["found"]) == (3, 3)
    assert event.payload["completedAt"] is not None


@pytest.mark.django_db
def test_deleting_the_person_a_batch_waits_for_writes_the_batch_event_without_it(
    tenant, make_endpoint
):
    make_endpoint(tenant.organization, events=(ENRICHMENT_BATCH_COMPLETED,))
    settled, waited_for = pending_of(tenant, 2)
    enrichments_settle(settlements=finished([settled]))

    assert tenant.client.delete(f"/api/v1/persons/{waited_for.person_id}").status_code == 204

    [event] = WebhookEvent.objects.all()
    assert event.payload["enrichmentIds"] == [str(settled.pk)]
    assert (event.payload["total"], event.payload["pending"]) == (1, 0)
    batch = tenant.client.get(f"/api/v1/enrichment-batches/{event.payload['id']}").json()
    assert event.payload == batch
