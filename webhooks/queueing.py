import uuid
from collections.abc import Sequence
from functools import partial, update_wrapper

from django.conf import settings
from django.db import transaction

from enrichment_project.celery import app

DELIVER_TASK = "webhooks.deliver"


def enqueue_deliveries(delivery_ids: Sequence[uuid.UUID]) -> None:
    """Publishes the ids in chunks over one broker connection."""
    ids = [str(pk) for pk in delivery_ids]
    size = settings.WEBHOOK_TASK_CHUNK_SIZE
    with app.producer_or_acquire() as producer:
        for start in range(0, len(ids), size):
            app.send_task(
                DELIVER_TASK,
                args=[ids[start : start + size]],
                queue=settings.WEBHOOK_QUEUE,
                producer=producer,
            )


def enqueue_deliveries_on_commit(delivery_ids: Sequence[uuid.UUID]) -> None:
    """robust: a broker failure cannot undo the committed change; the sweep sends the
    deliveries whose publication was lost. The partial carries a name for Django's log of a
    failed robust callback."""
    job = partial(enqueue_deliveries, list(delivery_ids))
    transaction.on_commit(update_wrapper(job, enqueue_deliveries), robust=True)
