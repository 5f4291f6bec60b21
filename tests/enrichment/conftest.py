from collections.abc import Callable

import pytest
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
    )
