import logging
import math
import uuid
from collections.abc import Sequence

from django.conf import settings

from enrichment_project.celery import app

PROCESS_ENRICHMENTS_TASK = "enrichment.process_enrichments"

logger = logging.getLogger(__name__)


def enqueue_enrichments(enrichment_ids: Sequence[uuid.UUID], countdown: float = 0) -> None:
    """Publishes the ids in chunks over one broker connection: a batch of 100 costs a handful of
    messages, while each id is still claimed, retried and recovered on its own by the task."""
    ids = [str(pk) for pk in enrichment_ids]
    if not ids:
        return
    size = settings.ENRICHMENT_TASK_CHUNK_SIZE
    with app.producer_or_acquire() as producer:
        for start in range(0, len(ids), size):
            app.send_task(
                PROCESS_ENRICHMENTS_TASK,
                args=[ids[start : start + size]],
                queue=settings.ENRICHMENT_QUEUE,
                countdown=countdown or None,
                producer=producer,
            )
    logger.info(
        "Queued %d enrichments in %d jobs, to run in %.2f s",
        len(ids),
        math.ceil(len(ids) / size),
        countdown,
        extra={"enrichment_ids": ids},
    )
