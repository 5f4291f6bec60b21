"""Celery tasks of the organizations app: thin wrappers around services."""

import logging

from celery import shared_task

from enrichment_project.idempotency import idempotency_keys_purge

logger = logging.getLogger(__name__)


@shared_task(name="organizations.purge_expired_idempotency_keys")
def purge_expired_idempotency_keys() -> int:
    """Beat, hourly: deletes the Idempotency-Key records past their retention. Expired records
    are ignored before this runs; the purge only keeps the table small."""
    deleted = idempotency_keys_purge()
    if deleted:
        logger.info("Purged %d expired idempotency keys", deleted)
    return deleted
