"""The outbox against real commits: an event exists only if the change it reports committed,
and two workers never claim one delivery."""

import pytest
from django.db import transaction

from enrichment_project.celery import app
from tests.concurrency import run_concurrently
from tests.webhooks.conftest import record_events
from webhooks.events import ENRICHMENT_COMPLETED
from webhooks.models import WebhookDelivery, WebhookEvent
from webhooks.services import webhook_deliveries_claim, webhook_events_record

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def webhook_queue(settings):
    """Empties the webhook queue on the test broker, then counts the jobs queued."""
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(settings.WEBHOOK_QUEUE)

    def queued() -> int:
        with app.connection_for_write() as connection:
            return connection.default_channel.queue_purge(settings.WEBHOOK_QUEUE)

    return queued


class RolledBack(Exception):
    pass


def test_a_rolled_back_change_writes_and_queues_no_event(tenant, make_endpoint, webhook_queue):
    make_endpoint(tenant.organization)
    with pytest.raises(RolledBack), transaction.atomic():
        assert len(record_events(tenant.organization, count=3)) == 3
        raise RolledBack

    assert not WebhookEvent.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert webhook_queue() == 0


def test_a_committed_change_queues_its_deliveries_after_commit(
    tenant, make_endpoint, webhook_queue, settings
):
    settings.WEBHOOK_TASK_CHUNK_SIZE = 2
    make_endpoint(tenant.organization)
    with transaction.atomic():
        record_events(tenant.organization, count=3)
        assert webhook_queue() == 0, "queued before the commit"

    assert WebhookDelivery.objects.count() == 3
    assert webhook_queue() == 2  # chunks of 2 ids


def test_recording_outside_a_transaction_is_refused(tenant, make_endpoint):
    make_endpoint(tenant.organization)
    with pytest.raises(RuntimeError, match="inside the change's transaction"):
        webhook_events_record(
            organization_id=tenant.organization.pk, events=[(ENRICHMENT_COMPLETED, {})]
        )
    assert not WebhookEvent.objects.exists()


def test_concurrent_claims_never_take_the_same_delivery(tenant, make_endpoint):
    make_endpoint(tenant.organization)
    record_events(tenant.organization, count=40)

    claims = run_concurrently([lambda: webhook_deliveries_claim(limit=25)] * 4)

    claimed = [delivery.pk for claim in claims for delivery in claim]
    assert len(claimed) == len(set(claimed)) == 40
