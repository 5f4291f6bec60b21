"""The beat sweep: retries are queued when due (not by broker countdowns), and deliveries whose
queueing after commit was lost are found again."""

from datetime import timedelta

import pytest
from django.utils import timezone

from enrichment_project.celery import app
from tests.webhooks.conftest import make_due, record_events
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_deliveries_sweep

pytestmark = pytest.mark.django_db


def queued_ids(queue: str) -> list[str]:
    ids = []
    with app.connection_for_read() as connection:
        simple = connection.SimpleQueue(queue, no_ack=True)
        while True:
            try:
                message = simple.get(block=False)
            except simple.Empty:
                break
            ids += message.decode()[0][0]
        simple.close()
    return ids


def test_the_sweep_queues_due_deliveries_only(tenant, make_endpoint, settings):
    queued_ids(settings.WEBHOOK_QUEUE)  # empties it
    make_endpoint(tenant.organization)
    record_events(tenant.organization, count=3)
    lost, later, delivered = WebhookDelivery.objects.order_by("pk")
    make_due(lost)
    WebhookDelivery.objects.filter(pk=later.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    WebhookDelivery.objects.filter(pk=delivered.pk).update(status="delivered", next_attempt_at=None)

    assert webhook_deliveries_sweep() == 1

    assert queued_ids(settings.WEBHOOK_QUEUE) == [str(lost.pk)]
