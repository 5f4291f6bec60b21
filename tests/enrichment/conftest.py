import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from celery.contrib.testing.worker import start_worker
from celery.worker import state as worker_state
from django.conf import settings

from credits.models import CreditAccount, CreditTransaction
from enrichment.models import Enrichment, Status
from enrichment.services import enrichments_request
from enrichment_project.celery import app
from organizations.models import Organization

BATCH_URL = "/api/v1/operations/enrichment/batch"


@pytest.fixture
def enrichment_queue() -> Callable[[], list[list[str]]]:
    """Empties the enrichment queue on the test broker, then reads the ids of the jobs queued.
    The queue is the one the workers consume, declared as Celery declares it (RabbitMQ refuses to
    purge a queue that does not exist yet, or to redeclare one with other properties)."""
    queue = app.amqp.queues[settings.ENRICHMENT_QUEUE]
    with app.connection_for_write() as connection:
        bound = queue(connection.default_channel)
        bound.declare()
        bound.purge()

    def queued_jobs() -> list[list[str]]:
        jobs = []
        with app.connection_for_read() as connection:
            bound = queue(connection.default_channel)
            while (message := bound.get(no_ack=True)) is not None:
                args, _kwargs, _embed = message.decode()
                jobs.append(args[0])
        return jobs

    return queued_jobs


@pytest.fixture
def fast_providers(settings) -> None:
    """Short provider timeouts and retry delays, so retries run within a test."""
    settings.ENRICHMENT_PROVIDER_TIMEOUT = 0.2
    settings.ENRICHMENT_RETRY_BACKOFF_SECONDS = 0.05
    settings.ENRICHMENT_RETRY_BACKOFF_MAX_SECONDS = 0.2
    settings.ENRICHMENT_MAX_ATTEMPTS = 3


@contextmanager
def celery_worker(**options: object) -> Iterator[None]:
    """A worker on the test broker, in a thread. Its event loop sees a stop only when it wakes:
    on Redis within a second (its blocking reads time out), on RabbitMQ at its next timer, up to
    10 s later; waking it makes stopping immediate on both."""
    with start_worker(app, perform_ping_check=False, shutdown_timeout=30, **options) as worker:
        try:
            yield
        finally:
            worker_state.should_terminate = 0
            worker.hub.call_soon(lambda: None)


@pytest.fixture
def worker(fast_providers: None, enrichment_queue: Callable) -> Iterator[None]:
    # Several threads, so duplicated jobs and retries really run side by side.
    with celery_worker(pool="threads", concurrency=4):
        yield


def assert_ledger_invariants(organization: Organization) -> None:
    """The SPEC's invariants: balance == sum(ledger), 0 <= reserved <= balance,
    reserved == sum(price of pending enrichments), at most one charge per enrichment."""
    account = CreditAccount.objects.get(organization=organization)
    ledger = CreditTransaction.objects.filter(account=account)
    assert account.balance == sum(ledger.values_list("amount", flat=True))
    assert 0 <= account.reserved <= account.balance
    pending = Enrichment.objects.filter(organization=organization, status=Status.PENDING)
    assert account.reserved == sum(pending.values_list("price", flat=True))
    charges = list(ledger.filter(kind="charge").values_list("reference_id", flat=True))
    assert len(charges) == len(set(charges))
    charged = Enrichment.objects.filter(organization=organization, credits_charged__gt=0)
    assert set(charged.values_list("pk", flat=True)) == set(charges)
    assert all(e.status == Status.FINISHED and e.data_found for e in charged)


def request_enrichments(tenant, people, field: str = "emails") -> list[Enrichment]:
    """Requests enrichments through the service, as the batch endpoint does."""
    return enrichments_request(
        organization=tenant.organization,
        user=tenant.user,
        person_ids=[person.pk for person in people],
        field=field,
        record_batch=True,
    ).enrichments


def wait_until_settled(organization, timeout: float = 30) -> dict[str, Enrichment]:
    deadline = time.monotonic() + timeout
    enrichments = Enrichment.objects.filter(organization=organization)
    while enrichments.filter(status=Status.PENDING).exists():
        assert time.monotonic() < deadline, "enrichments still pending"
        time.sleep(0.05)
    return {e.person.company_domain: e for e in enrichments.select_related("person")}
