"""Thin Celery wrappers around the delivery services."""

import logging

from celery import shared_task

from webhooks.queueing import DELIVER_TASK
from webhooks.services import webhook_deliveries_send, webhook_deliveries_sweep

logger = logging.getLogger(__name__)


@shared_task(name=DELIVER_TASK)
def deliver_webhooks(delivery_ids: list[str]) -> None:
    webhook_deliveries_send(delivery_ids=delivery_ids)


@shared_task(name="webhooks.sweep_due_deliveries")
def sweep_due_deliveries() -> None:
    queued = webhook_deliveries_sweep()
    if queued:
        logger.info("Queued %d due webhook deliveries", queued)
