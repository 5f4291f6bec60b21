"""Worker drains, timed from the first message queued to the last enrichment finished."""

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from unittest import mock

import redis
from django.conf import settings
from django.db.models import Max

from bench.environment import REDIS_URL
from bench.fixtures import Tenant
from bench.noop_tasks import NOOP_TASK
from enrichment.models import Enrichment, Status
from enrichment.queueing import enqueue_enrichments
from enrichment.services import enrichments_request
from enrichment_project.celery import app

DRAIN_TIMEOUT = 180.0
POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Drain:
    per_second: float
    # Settlement transactions: all rows of one settlement share its finished_at.
    settlements_per_second: float
    rows_per_settlement: float


def drain_enrichments(requests: Sequence[tuple[Tenant, Sequence[uuid.UUID]]]) -> Drain:
    """Creates the enrichments through the batch service with their queueing held back, then
    queues them as the service would and waits for the running worker to finish them all."""
    with mock.patch("enrichment.services.enqueue_enrichments") as held_back:
        for tenant, person_ids in requests:
            enrichments_request(
                organization=tenant.organization,
                user=tenant.user,
                person_ids=person_ids,
                field="emails",
                record_batch=True,
            )
    held = [call.args[0] for call in held_back.call_args_list]
    total = sum(len(ids) for ids in held)
    started = time.time()
    for ids in held:
        enqueue_enrichments(ids)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while Enrichment.objects.filter(status=Status.PENDING).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("The worker did not drain the enrichments in time.")
        time.sleep(POLL_SECONDS)
    finished = Enrichment.objects.aggregate(last=Max("finished_at"))["last"].timestamp()
    settlements = Enrichment.objects.values("organization_id", "finished_at").distinct().count()
    elapsed = finished - started
    return Drain(
        per_second=total / elapsed,
        settlements_per_second=settlements / elapsed,
        rows_per_settlement=total / settlements,
    )


def drain_noop(count: int) -> float:
    """Tasks per second for `count` no-op tasks on the enrichment queue; done when the queue is
    empty and nothing is left unacknowledged (acks_late), seen twice to rule out a message
    between the two."""
    broker = redis.Redis.from_url(REDIS_URL)
    started = time.time()
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(NOOP_TASK, queue=settings.ENRICHMENT_QUEUE, producer=producer)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    empty_since: float | None = None
    while True:
        now = time.time()
        if broker.llen(settings.ENRICHMENT_QUEUE) or broker.hlen("unacked"):
            empty_since = None
        elif empty_since is None:
            empty_since = now
        elif now - empty_since >= POLL_SECONDS:
            return count / (empty_since - started)
        if time.monotonic() > deadline:
            raise RuntimeError("The worker did not drain the no-op tasks in time.")
        time.sleep(POLL_SECONDS / 4)
