"""Webhook endpoints, the event outbox and delivery. Events are written in the caller's
transaction and delivered by workers outside any transaction, at least once per subscribed
endpoint."""

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from enrichment_project.db import rows_update
from enrichment_project.errors import InvalidState, ValidationFailed
from enrichment_project.metrics import WEBHOOK_DELIVERIES, count_on_commit
from organizations.models import Organization
from webhooks.addresses import AddressRefused, url_check
from webhooks.events import EVENT_TYPES
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from webhooks.queueing import enqueue_deliveries, enqueue_deliveries_on_commit
from webhooks.sending import Attempt, attempt_send, delivery_client, sending_pool, webhook_body
from webhooks.signing import secret_generate

ROTATION_OVERLAP = timedelta(hours=24)
# A burst of events for one endpoint (the settlements of a batch draining) is delivered once it
# ends, not beside it, where sending competed with the settlements for the CPU and PostgreSQL. On
# a worker that runs delivery jobs only (webhooks.tasks), a job waits while its endpoints' events
# keep coming less than BURST_QUIET apart, at most until BURST_HOLD_MAX after its oldest delivery
# was written, and never while another endpoint has due deliveries waiting. It then sends every
# due delivery of those endpoints, so the jobs queued behind it find theirs sent. A delivery is
# late by BURST_QUIET after the last event of its burst (a lone event too), by BURST_HOLD_MAX at
# most.
BURST_QUIET = timedelta(milliseconds=500)
BURST_HOLD_MAX = timedelta(seconds=5)
BURST_POLL_SECONDS = 0.1
# How long a job goes on sending its endpoints' other due deliveries, well within the task's
# time limit even with slow receivers; what is left is sent by its own jobs.
BURST_SENDING_SECONDS = 60
DISABLED_BY_API = "disabled through the API"
DISABLED_GONE = "the receiver answered 410 Gone"
DISABLED_FAILING = "every delivery failed for 5 days"


def _checked_url(url: str) -> str:
    try:
        url_check(url)
    except AddressRefused as refused:
        raise ValidationFailed(
            f"The URL is refused: {refused.reason}.", {"url": refused.reason}
        ) from refused
    return url


def webhook_endpoint_create(
    *, organization: Organization, url: str, events: Sequence[str], description: str = ""
) -> WebhookEndpoint:
    """The new endpoint carries its secret, which the API shows this once."""
    return WebhookEndpoint.objects.create(
        organization=organization,
        url=_checked_url(url),
        events=list(dict.fromkeys(events)),
        description=description,
        secret=secret_generate(),
    )


def webhook_endpoint_update(
    *, endpoint: WebhookEndpoint, changes: Mapping[str, Any]
) -> WebhookEndpoint:
    """Applies validated changes (`url`, `events`, `description`, `disabled`). Enabling starts
    the failure clock afresh; disabling ends its pending deliveries."""
    if "url" in changes:
        endpoint.url = _checked_url(changes["url"])
    if "events" in changes:
        endpoint.events = list(dict.fromkeys(changes["events"]))
    if "description" in changes:
        endpoint.description = changes["description"]
    with transaction.atomic(durable=True):
        if changes.get("disabled") is False and endpoint.disabled:
            endpoint.disabled, endpoint.disabled_reason, endpoint.failing_since = False, "", None
        endpoint.save()
        if changes.get("disabled") and not endpoint.disabled:
            _endpoints_disable([endpoint.pk], DISABLED_BY_API)
            endpoint.refresh_from_db(fields=["disabled", "disabled_reason"])
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret signs from now on; the one it replaces signs too for 24 hours, so the
    receiver can switch without losing a delivery."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + ROTATION_OVERLAP
    endpoint.secret = secret_generate()
    endpoint.save(
        update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"]
    )
    return endpoint


def _secrets_in_use(endpoint: WebhookEndpoint) -> list[str]:
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires and expires > timezone.now():
        return [endpoint.secret, endpoint.previous_secret]
    return [endpoint.secret]


def webhook_events_record(
    *,
    organization_id: uuid.UUID,
    events: Iterable[tuple[str, Any]] | Callable[[frozenset[str]], Iterable[tuple[str, Any]]],
) -> list[WebhookEvent]:
    """Writes (type, data) events and one delivery per subscribed, enabled endpoint; MUST run
    inside the transaction of the change the events report, so they commit or roll back with
    it. Delivery is queued once that transaction commits. One SELECT when the organization has
    no enabled endpoint (`events` may be lazy: it is consumed only when there is one; a callable
    is given the subscribed types), two statements otherwise, whatever the number of events."""
    if not connection.in_atomic_block:
        raise RuntimeError("webhook_events_record must run inside the change's transaction.")
    endpoints = list(
        WebhookEndpoint.objects.filter(organization_id=organization_id, disabled=False).only(
            "pk", "events"
        )
    )
    if not endpoints:
        return []
    if callable(events):
        # The caller renders only the types some endpoint subscribes to.
        events = events(frozenset(t for endpoint in endpoints for t in endpoint.events))
    now = timezone.now()
    written = []
    for event_type, data in events:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"Unknown webhook event type {event_type!r}.")
        if any(event_type in endpoint.events for endpoint in endpoints):
            written.append(
                WebhookEvent(
                    organization_id=organization_id, type=event_type, payload=data, created_at=now
                )
            )
    if written:
        subscriptions = [(endpoint.pk, t) for endpoint in endpoints for t in endpoint.events]
        enqueue_deliveries_on_commit(_outbox_write(written, subscriptions, now))
    return written


_OUTBOX_INSERT = """
WITH event AS (
    INSERT INTO webhooks_webhookevent (id, organization_id, type, payload, created_at)
    SELECT (e ->> 'id')::uuid, %(organization)s, e ->> 'type', e -> 'payload', %(now)s
    FROM jsonb_array_elements(%(events)s::jsonb) AS e
    RETURNING id, type
)
INSERT INTO webhooks_webhookdelivery
    (id, event_id, endpoint_id, status, attempts, error, next_attempt_at, created_at)
SELECT gen_random_uuid(), event.id, subscription.endpoint_id, %(pending)s, 0, '', %(now)s, %(now)s
FROM event JOIN (
    SELECT (s ->> 0)::uuid AS endpoint_id, s ->> 1 AS type
    FROM jsonb_array_elements(%(subscriptions)s::jsonb) AS s
) AS subscription USING (type)
RETURNING id
"""


def _outbox_write(
    events: Sequence[WebhookEvent],
    subscriptions: Sequence[tuple[uuid.UUID, str]],
    now: datetime,
) -> list[uuid.UUID]:
    """Inserts the events and a pending delivery per event and endpoint subscribed to its type
    (`subscriptions`: endpoint, type); returns the deliveries' ids. It runs in the settlement's
    transaction, under the organization's credit row lock, so on PostgreSQL in one statement,
    the events passed as one JSON document: measured on 40 settlements of 25 enrichments, the
    recording less the rendering took 1.8-2.2 ms of the worker's CPU per settlement, against
    ~6 ms with two bulk_create (4.5 ms of it, their per-value quoting). Elsewhere (the SQLite
    of `make run`) bulk_create."""
    if connection.vendor != "postgresql":
        WebhookEvent.objects.bulk_create(events)
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                event=event, endpoint_id=endpoint_id, next_attempt_at=now, created_at=now
            )
            for event in events
            for endpoint_id, event_type in subscriptions
            if event_type == event.type
        )
        return [delivery.pk for delivery in deliveries]
    document = [
        {"id": str(event.pk), "type": event.type, "payload": event.payload} for event in events
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            _OUTBOX_INSERT,
            {
                "organization": events[0].organization_id,
                "now": now,
                "events": json.dumps(document),
                "subscriptions": json.dumps([[str(pk), t] for pk, t in subscriptions]),
                "pending": DeliveryStatus.PENDING.value,
            },
        )
        return [row[0] for row in cursor.fetchall()]


def webhook_delivery_retry(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Sends the delivery again now, whatever its status; one more attempt if it had failed."""
    if delivery.endpoint.disabled:
        raise InvalidState(
            "The endpoint is disabled; enable it before retrying its deliveries.",
            {"disabled": True},
        )
    with transaction.atomic(durable=True):
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = timezone.now()
        delivery.save(update_fields=["status", "next_attempt_at"])
        enqueue_deliveries_on_commit([delivery.pk])
    return delivery


# --- Worker side ------------------------------------------------------------------------------


@contextmanager
def _bookkeeping_transaction() -> Iterator[None]:
    """A transaction of the delivery worker's own bookkeeping (claims and outcomes), committed
    without waiting for its WAL flush. Waiting would put two flushes per job (a commit took
    3.2 ms with its flush on this 2-core machine, 0.26 ms without) in the queue of the
    settlements' flushes, which they wait for while holding the organization's credit row
    lock. A PostgreSQL crash may lose the last fraction of a second of this bookkeeping, never
    more: those deliveries are then sent once more, as at-least-once allows, and nothing else
    depends on them (no outbox row is written here)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


def webhook_deliveries_claim(
    *,
    delivery_ids: Sequence[str] | None = None,
    endpoint_ids: Collection[uuid.UUID] | None = None,
    limit: int,
) -> list[WebhookDelivery]:
    """Claims due pending deliveries (of `delivery_ids`, of `endpoint_ids`, when given) of
    enabled endpoints: one more attempt, and `next_attempt_at` moved past the task's time limit
    as a lease, so a second job, the sweep or another worker does not send them meanwhile, and a
    job that dies leaves them due again once the lease ends. Rows another claim holds are
    skipped."""
    now = timezone.now()
    with _bookkeeping_transaction():
        due = WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now, endpoint__disabled=False
        )
        if delivery_ids is not None:
            due = due.filter(pk__in=delivery_ids)
        if endpoint_ids is not None:
            due = due.filter(endpoint_id__in=endpoint_ids)
        claimed = list(due.select_related("event", "endpoint").order_by("next_attempt_at")[:limit])
        WebhookDelivery.objects.filter(pk__in=[delivery.pk for delivery in claimed]).update(
            attempts=F("attempts") + 1,
            last_attempt_at=now,
            next_attempt_at=now + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT),
        )
    for delivery in claimed:
        delivery.attempts += 1
        delivery.last_attempt_at = now
    return claimed


def _retry_delay(attempts: int) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones, with ±10 % jitter so the
    retries of a burst spread out; None when the schedule is used up."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts > len(schedule):
        return None
    return schedule[attempts - 1] * random.uniform(0.9, 1.1)


def webhook_deliveries_record(*, outcomes: Sequence[tuple[WebhookDelivery, Attempt]]) -> None:
    """Stores the attempts' outcomes in one short transaction: delivered, scheduled again, or
    failed for good. A success stops the endpoint's failure clock, a first failure starts it;
    410, or five days of nothing but failures, disables the endpoint."""
    now = timezone.now()
    succeeded, failed, gone = set(), set(), set()
    counted: Counter[str] = Counter()
    for delivery, attempt in outcomes:
        delivery.status_code = attempt.status_code
        delivery.duration_ms = attempt.duration_ms
        delivery.error = attempt.error
        if attempt.succeeded:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
                DeliveryStatus.DELIVERED,
                now,
                None,
            )
            succeeded.add(delivery.endpoint_id)
            counted["delivered"] += 1
            continue
        failed.add(delivery.endpoint_id)
        if attempt.gone:
            gone.add(delivery.endpoint_id)
        delay = _retry_delay(delivery.attempts)
        if delay is None or attempt.gone:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            counted["failed"] += 1
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delay)
            counted["failed_attempt"] += 1
    with _bookkeeping_transaction():
        for outcome, amount in counted.items():
            count_on_commit(WEBHOOK_DELIVERIES, amount, outcome=outcome)
        rows_update([delivery for delivery, _ in outcomes], OUTCOME_FIELDS)
        endpoints = WebhookEndpoint.objects.filter(disabled=False)
        if succeeded:
            endpoints.filter(pk__in=succeeded, failing_since__isnull=False).update(
                failing_since=None
            )
        if failing := failed - succeeded:
            endpoints.filter(pk__in=failing, failing_since__isnull=True).update(failing_since=now)
            stale = endpoints.filter(
                pk__in=failing - gone,
                failing_since__lte=now - timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER_FAILING),
            ).values_list("pk", flat=True)
            _endpoints_disable(list(stale), DISABLED_FAILING)
        _endpoints_disable(list(gone), DISABLED_GONE)


OUTCOME_FIELDS = (
    "status",
    "status_code",
    "duration_ms",
    "error",
    "next_attempt_at",
    "delivered_at",
)


def _endpoints_disable(endpoint_ids: list[uuid.UUID], reason: str) -> None:
    """Disables the endpoints and ends their pending deliveries as failed."""
    if not endpoint_ids:
        return
    WebhookEndpoint.objects.filter(pk__in=endpoint_ids, disabled=False).update(
        disabled=True, disabled_reason=reason, updated_at=timezone.now()
    )
    ended = WebhookDelivery.objects.filter(
        endpoint_id__in=endpoint_ids, status=DeliveryStatus.PENDING
    ).update(status=DeliveryStatus.FAILED, next_attempt_at=None, error="endpoint disabled")
    count_on_commit(WEBHOOK_DELIVERIES, ended, outcome="disabled")


def _attempt(delivery: WebhookDelivery) -> Attempt:
    event = delivery.event
    return attempt_send(
        client=delivery_client(endpoint_id=delivery.endpoint_id, url=delivery.endpoint.url),
        url=delivery.endpoint.url,
        secrets_in_use=_secrets_in_use(delivery.endpoint),
        message_id=str(event.pk),
        body=webhook_body(
            event_type=event.type, created_at=event.created_at, payload=event.payload
        ),
        now=timezone.now(),
    )


def _in_burst(endpoint_ids: Collection[uuid.UUID]) -> bool:
    """Whether the endpoints got an event less than BURST_QUIET ago while no other endpoint has
    a due delivery waiting."""
    now = timezone.now()
    deliveries = WebhookDelivery.objects
    return (
        deliveries.filter(endpoint_id__in=endpoint_ids, created_at__gt=now - BURST_QUIET).exists()
        and not deliveries.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .exclude(endpoint_id__in=endpoint_ids)
        .exists()
    )


def _burst_waited(delivery_ids: Sequence[str]) -> set[uuid.UUID]:
    """Waits while the endpoints of the pending deliveries among `delivery_ids` are in a burst
    (see BURST_QUIET), at most until BURST_HOLD_MAX after the oldest of them was written;
    returns those endpoints, none when nothing is pending any more."""
    pending = list(
        WebhookDelivery.objects.filter(
            pk__in=delivery_ids, status=DeliveryStatus.PENDING
        ).values_list("endpoint_id", "created_at")
    )
    if not pending:
        return set()
    endpoint_ids = {endpoint_id for endpoint_id, _ in pending}
    deadline = min(created_at for _, created_at in pending) + BURST_HOLD_MAX
    while timezone.now() < deadline and _in_burst(endpoint_ids):
        time.sleep(BURST_POLL_SECONDS)
    return endpoint_ids


def _send(claimed: list[WebhookDelivery]) -> int:
    """Sends claimed deliveries concurrently outside any transaction and records the outcomes."""
    if claimed:
        # The pool's threads touch no database.
        attempts = list(sending_pool().map(_attempt, claimed))
        webhook_deliveries_record(outcomes=list(zip(claimed, attempts, strict=True)))
    return len(claimed)


def webhook_deliveries_send(
    *, delivery_ids: Sequence[str] | None = None, hold_bursts: bool = False
) -> int:
    """Sends due deliveries and records the outcomes; returns how many were attempted: one chunk
    of `delivery_ids` (a job's), or of any due ones. `hold_bursts` (a worker that runs delivery
    jobs only): first waits for the burst of their endpoints to end, then sends the job's and
    the other due deliveries of their endpoints."""
    chunk = settings.WEBHOOK_TASK_CHUNK_SIZE
    if delivery_ids is None or not hold_bursts:
        return _send(webhook_deliveries_claim(delivery_ids=delivery_ids, limit=chunk))
    endpoint_ids = _burst_waited(delivery_ids)
    if not endpoint_ids:
        return 0
    sent = _send(webhook_deliveries_claim(delivery_ids=delivery_ids, limit=chunk))
    stop = time.monotonic() + BURST_SENDING_SECONDS
    while time.monotonic() < stop:
        claimed = webhook_deliveries_claim(endpoint_ids=endpoint_ids, limit=chunk)
        if not claimed:
            break
        sent += _send(claimed)
    return sent


def webhook_deliveries_sweep() -> int:
    """Queues every due delivery: retries whose time has come, and deliveries whose publication
    after commit was lost. A delivery already queued is claimed by one job only."""
    due = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=timezone.now(),
            endpoint__disabled=False,
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[: settings.WEBHOOK_SWEEP_MAX]
    )
    if due:
        enqueue_deliveries(due)
    return len(due)
