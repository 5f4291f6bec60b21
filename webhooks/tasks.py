"""Thin Celery wrappers around the delivery services."""

import logging

from celery import current_app, shared_task
from django.conf import settings

from webhooks.queueing import DELIVER_TASK
from webhooks.services import webhook_deliveries_send, webhook_deliveries_sweep

logger = logging.getLogger(__name__)


def _delivery_jobs_only() -> bool:
    """Whether this worker consumes the webhooks queue alone (docker-compose's webhook-worker).
    Only there may a job wait for a burst of events to end: a worker that also runs enrichment
    jobs would keep from them the process that waits."""
    return set(current_app.amqp.queues.consume_from) == {settings.WEBHOOK_QUEUE}


@shared_task(name=DELIVER_TASK)
def deliver_webhooks(delivery_ids: list[str]) -> None:
    webhook_deliveries_send(delivery_ids=delivery_ids, hold_bursts=_delivery_jobs_only())


@shared_task(name="webhooks.sweep_due_deliveries")
def sweep_due_deliveries() -> None:
    queued = webhook_deliveries_sweep()
    if queued:
        logger.info("Queued %d due webhook deliveries", queued)
