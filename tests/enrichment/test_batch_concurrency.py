"""Racing clients on separate database connections (one per thread)."""

from collections import Counter

import pytest

from credits.models import CreditAccount
from enrichment.models import Enrichment, EnrichmentBatch, Status
from enrichment.services import enrichment_end_unfound
from tests.concurrency import run_concurrently
from tests.enrichment.conftest import BATCH_URL, assert_ledger_invariants
from tests.factories import PersonFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.broker
def test_overlapping_batches_never_create_two_pending_enrichments_for_a_person(
    make_tenant, enrichment_queue
):
    tenant = make_tenant(credits=10_000)
    people = [p.pk for p in PersonFactory.create_batch(30, organization=tenant.organization)]
    # Twelve clients, each asking for an overlapping window of the same persons.
    windows = [people[i : i + 20] if i <= 10 else people[i - 10 :] for i in range(12)]

    def batch(ids):
        return lambda: tenant.client.post(
            BATCH_URL, {"personIds": [str(pk) for pk in ids], "field": "emails"}, format="json"
        )

    responses = run_concurrently([batch(ids) for ids in windows])

    assert [response.status_code for response in responses] == [200] * len(windows)
    pending = Enrichment.objects.filter(organization=tenant.organization, status=Status.PENDING)
    per_person = Counter(pending.values_list("person_id", flat=True))
    assert set(per_person) == set(people) and set(per_person.values()) == {1}
    ids_seen = {}
    for response in responses:
        for item in response.json():
            assert ids_seen.setdefault(item["entityId"], item["id"]) == item["id"]
    assert sum(len(job) for job in enrichment_queue()) == len(people)
    assert_ledger_invariants(tenant.organization)


def test_many_small_batches_never_reserve_more_than_the_balance(make_tenant):
    tenant = make_tenant(credits=25)
    people = PersonFactory.create_batch(16, organization=tenant.organization)

    def batch(person):
        return lambda: tenant.client.post(
            BATCH_URL, {"personIds": [str(person.pk)], "field": "phones"}, format="json"
        )

    responses = run_concurrently([batch(person) for person in people])

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 2, 402: 14}
    account = CreditAccount.objects.get(organization=tenant.organization)
    assert (account.balance, account.reserved) == (25, 20)
    assert Enrichment.objects.filter(organization=tenant.organization).count() == 2
    assert_ledger_invariants(tenant.organization)


def test_enrichments_of_one_batch_settled_at_once_complete_it_after_the_last(make_tenant):
    tenant = make_tenant(credits=100)
    people = PersonFactory.create_batch(8, organization=tenant.organization)
    response = tenant.client.post(
        BATCH_URL, {"personIds": [str(p.pk) for p in people], "field": "emails"}, format="json"
    )
    enrichments = list(Enrichment.objects.filter(organization=tenant.organization))

    # Each settlement sees the others' last enrichment either committed or not yet ended.
    settled = run_concurrently(
        [
            lambda enrichment=enrichment: enrichment_end_unfound(
                enrichment=enrichment, status=Status.FAILED, reason="provider_rejected_request"
            )
            for enrichment in enrichments
        ]
    )

    assert all(isinstance(result, Enrichment) for result in settled)
    batch = EnrichmentBatch.objects.get(pk=response["Enrichment-Batch-Id"])
    assert batch.completed_at >= max(result.finished_at for result in settled)
    assert_ledger_invariants(tenant.organization)
