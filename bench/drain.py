"""Worker drains, timed from the first message queued to the last enrichment finished."""

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from unittest import mock

import redis
from django.conf import settings
from django.db.models import Count, Max

from bench.environment import REDIS_URL
from bench.fixtures import Tenant
from bench.noop_tasks import NOOP_TASK
from enrichment.models import Enrichment, Status
from enrichment.queueing import enqueue_enrichments
from enrichment.services import enrichments_request
from enrichment_project.celery import app
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import webhook_deliveries_sweep

DRAIN_TIMEOUT = 180.0
POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Drain:
    per_second: float
    # When the first message was queued, and when the last enrichment settled.
    started: float
    finished: float
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
        started=started,
        finished=finished,
        settlements_per_second=settlements / elapsed,
        rows_per_settlement=total / settlements,
    )


def deliveries_drained(started: float) -> float:
    """Waits for the running worker to deliver every pending webhook delivery; deliveries per
    second from `started` (the drain's first message) to the last one delivered."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    next_sweep = time.monotonic() + settings.WEBHOOK_SWEEP_SECONDS
    while WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("The worker did not deliver the webhook events in time.")
        if time.monotonic() > next_sweep:
            # What beat does in production: retries are queued by the sweep.
            webhook_deliveries_sweep()
            next_sweep += settings.WEBHOOK_SWEEP_SECONDS
        time.sleep(POLL_SECONDS)
    if WebhookDelivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists():
        raise RuntimeError("Some webhook deliveries failed; see the worker log.")
    delivered = WebhookDelivery.objects.aggregate(count=Count("pk"), last=Max("delivered_at"))
    return delivered["count"] / (delivered["last"].timestamp() - started)


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
