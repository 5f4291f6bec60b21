"""A burst of events for one endpoint (a batch settling) is delivered once it ends, by the job of
its first deliveries, never later than the hold's bound, never held while another endpoint's
deliveries wait, and only by a worker that runs delivery jobs alone."""

import threading
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from werkzeug import Response

from enrichment_project.celery import app
from tests.webhooks.conftest import HOOK_PATH, record_events
from webhooks import services
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from webhooks.services import webhook_deliveries_send
from webhooks.tasks import deliver_webhooks

pytestmark = pytest.mark.django_db(transaction=True)

# Wider than the waves' gaps even on a loaded 2-core machine (a job's connection takes time).
QUIET = 1.0
WAVE_SECONDS = 0.1


@pytest.fixture(autouse=True)
def short_bursts(monkeypatch) -> None:
    monkeypatch.setattr(services, "BURST_QUIET", timedelta(seconds=QUIET))
    monkeypatch.setattr(services, "BURST_POLL_SECONDS", 0.02)


@pytest.fixture
def arrivals(receiver) -> list[float]:
    """When each delivery reached the receiver (time.monotonic)."""
    times: list[float] = []

    def answer(request: object) -> Response:
        times.append(time.monotonic())
        return Response(status=204)

    receiver.expect_request(HOOK_PATH).respond_with_handler(answer)
    return times


def ids_of(events: Sequence[WebhookEvent]) -> list[str]:
    return [
        str(pk)
        for pk in WebhookDelivery.objects.filter(event__in=events).values_list("pk", flat=True)
    ]


def job_in_background(delivery_ids: list[str]) -> tuple[threading.Thread, dict[str, int]]:
    """The delivery job of `delivery_ids`, run in a thread with its own connection."""
    result: dict[str, int] = {}

    def run() -> None:
        try:
            result["sent"] = webhook_deliveries_send(delivery_ids=delivery_ids, hold_bursts=True)
        finally:
            connection.close()

    job = threading.Thread(target=run)
    job.start()
    return job, result


def waves(organization, count: int) -> tuple[list[WebhookEvent], float]:
    """`count` waves of 5 events, WAVE_SECONDS apart (less than QUIET); returns the last wave's
    events and when it was written."""
    for _ in range(count):
        time.sleep(WAVE_SECONDS)
        last = record_events(organization, count=5)
    return last, time.monotonic()


def test_a_burst_is_delivered_once_it_ends_by_the_job_of_its_first_events(
    tenant, make_endpoint, arrivals
):
    make_endpoint(tenant.organization)
    job, result = job_in_background(ids_of(record_events(tenant.organization, count=5)))
    last_wave, ended = waves(tenant.organization, 10)
    job.join(10)

    assert result["sent"] == 55
    assert len(arrivals) == 55
    assert min(arrivals) > ended, "sent while the burst went on"
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    started = time.monotonic()
    assert webhook_deliveries_send(delivery_ids=ids_of(last_wave), hold_bursts=True) == 0, (
        "its job found it sent"
    )
    assert time.monotonic() - started < QUIET


def test_a_burst_that_goes_on_is_held_no_longer_than_the_bound(
    tenant, make_endpoint, arrivals, monkeypatch
):
    monkeypatch.setattr(services, "BURST_HOLD_MAX", timedelta(seconds=2))
    make_endpoint(tenant.organization)
    started = time.monotonic()
    job, _ = job_in_background(ids_of(record_events(tenant.organization, count=5)))
    _, ended = waves(tenant.organization, 45)
    job.join(10)

    assert started + 2 < min(arrivals) < started + 4
    assert min(arrivals) < ended, "held until the burst ended"


def test_a_lone_event_waits_the_quiet_time_only(tenant, make_endpoint, arrivals):
    make_endpoint(tenant.organization)
    [event] = record_events(tenant.organization)
    started = time.monotonic()

    assert webhook_deliveries_send(delivery_ids=ids_of([event]), hold_bursts=True) == 1

    # From its commit, a little after the event was written.
    assert QUIET / 2 < time.monotonic() - started < QUIET + 2
    assert len(arrivals) == 1


def test_no_hold_while_another_endpoints_deliveries_are_due(
    tenant, make_tenant, make_endpoint, arrivals
):
    make_endpoint(tenant.organization)
    make_endpoint(other := make_tenant().organization)
    [waiting] = record_events(other)
    WebhookDelivery.objects.filter(event=waiting).update(
        created_at=timezone.now() - timedelta(minutes=1)
    )
    [fresh] = record_events(tenant.organization)
    started = time.monotonic()

    assert webhook_deliveries_send(delivery_ids=ids_of([fresh]), hold_bursts=True) == 1

    assert time.monotonic() - started < QUIET - WAVE_SECONDS
    assert WebhookDelivery.objects.get(event=fresh).status == DeliveryStatus.DELIVERED
    assert WebhookDelivery.objects.get(event=waiting).status == DeliveryStatus.PENDING


def test_only_a_worker_running_delivery_jobs_alone_holds_a_burst(
    tenant, make_endpoint, arrivals, monkeypatch, settings
):
    make_endpoint(tenant.organization)
    [event] = record_events(tenant.organization)
    started = time.monotonic()
    deliver_webhooks(ids_of([event]))  # this process consumes every queue
    assert time.monotonic() - started < QUIET - WAVE_SECONDS

    queues = app.amqp.queues
    monkeypatch.setattr(
        queues, "_consume_from", {settings.WEBHOOK_QUEUE: queues[settings.WEBHOOK_QUEUE]}
    )
    [event] = record_events(tenant.organization)
    started = time.monotonic()
    deliver_webhooks(ids_of([event]))
    assert time.monotonic() - started > QUIET / 2
    assert len(arrivals) == 2
