"""Enrichment batches: the batch record and its live counts, completion detection, maxAge, the
estimate, the bulk request and the credit headers."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits.models import CreditAccount
from enrichment.models import Enrichment, EnrichmentBatch, Status
from enrichment.services import (
    enrichment_complete,
    enrichment_end_unfound,
    enrichments_requeue_timed_out,
)
from persons.models import Person
from providers.base import FoundValue
from tests.enrichment.conftest import BATCH_URL, assert_ledger_invariants
from tests.enrichment.test_batch_api import assert_error, post_batch, reserved
from tests.factories import PersonFactory

BATCHES_URL = "/api/v1/enrichment-batches"
ESTIMATE_URL = "/api/v1/operations/enrichment/batch/estimate"
BULK_URL = "/api/v1/operations/enrichment/bulk"
FOUND = [FoundValue(value="ada@found.example", type="work", quality="verified")]


def batch_of(tenant, response) -> dict:
    got = tenant.client.get(f"{BATCHES_URL}/{response['Enrichment-Batch-Id']}")
    assert got.status_code == 200, got.content
    return got.json()


def finish(enrichment_id, found: bool = True) -> None:
    enrichment_complete(
        enrichment=Enrichment.objects.get(pk=enrichment_id),
        values=FOUND if found else [],
        provider="sandbox",
    )


def persons(tenant, count: int, **fields) -> list[Person]:
    built = PersonFactory.build_batch(count, organization=tenant.organization, **fields)
    return Person.objects.bulk_create(built)


# --- The batch record -------------------------------------------------------------------------


def test_batch_post_names_its_batch_whose_object_lists_the_enrichments_in_request_order(tenant):
    people = persons(tenant, 3)
    requested = [people[2].pk, people[0].pk, people[1].pk, people[2].pk]

    response = post_batch(tenant, requested, field="phones")
    batch = batch_of(tenant, response)

    assert set(batch) == {
        "id", "createdAt", "field", "total", "pending", "finished", "found", "failed", "timeout",
        "cancelled", "creditsCharged", "completedAt", "enrichmentIds",
    }  # fmt: skip
    assert batch["id"] == response["Enrichment-Batch-Id"]
    assert batch["enrichmentIds"] == [item["id"] for item in response.json()]
    assert (batch["field"], batch["total"], batch["pending"]) == ("phones", 3, 3)
    assert batch["finished"] == batch["found"] == batch["failed"] == 0
    assert batch["timeout"] == batch["cancelled"] == batch["creditsCharged"] == 0
    assert batch["completedAt"] is None and batch["createdAt"].endswith("Z")


def test_batch_counts_follow_settlements_and_charge_only_what_the_batch_created(tenant):
    reused_person, *new_people = persons(tenant, 4)
    [earlier] = post_batch(tenant, [reused_person.pk]).json()
    finish(earlier["id"])  # charged to the earlier batch
    response = post_batch(tenant, [reused_person.pk, *(p.pk for p in new_people)])
    _reused, found_id, unfound_id, failing_id = (item["id"] for item in response.json())

    finish(found_id)
    finish(unfound_id, found=False)
    enrichment_end_unfound(
        enrichment=Enrichment.objects.get(pk=failing_id), status=Status.FAILED, reason="nope"
    )
    batch = batch_of(tenant, response)

    assert (batch["total"], batch["pending"], batch["finished"], batch["failed"]) == (4, 0, 3, 1)
    assert batch["found"] == 2
    assert batch["creditsCharged"] == 1
    assert batch["completedAt"] is not None
    assert_ledger_invariants(tenant.organization)


def test_batch_of_reused_finished_enrichments_only_is_complete_at_creation(tenant):
    person = PersonFactory(organization=tenant.organization)
    [first] = post_batch(tenant, [person.pk]).json()
    finish(first["id"])

    batch = batch_of(tenant, post_batch(tenant, [person.pk]))

    assert batch["completedAt"] is not None
    assert (batch["finished"], batch["found"], batch["creditsCharged"]) == (1, 1, 0)


def test_batch_detail_reads_its_counts_in_a_constant_number_of_queries(tenant):
    small = post_batch(tenant, [PersonFactory(organization=tenant.organization).pk])
    large = post_batch(tenant, [p.pk for p in persons(tenant, 100)])
    tenant.client.get(BATCHES_URL)  # the key's last-use bookkeeping stays out of the counts

    counts = []
    for response in (small, large):
        with CaptureQueriesContext(connection) as captured:
            batch_of(tenant, response)
        counts.append(len(captured))

    # Key, the batch, its items joined to their enrichments.
    assert counts[0] == counts[1] == 3


def test_batch_list_is_newest_first_paginated_and_counted_in_constant_queries(tenant):
    people = persons(tenant, 30)
    ids = [post_batch(tenant, [p.pk])["Enrichment-Batch-Id"] for p in people[:3]]
    post_batch(tenant, [p.pk for p in people[3:]])
    tenant.client.get(BATCHES_URL)

    with CaptureQueriesContext(connection) as captured:
        first = tenant.client.get(BATCHES_URL, {"limit": 2}).json()
    assert len(captured) == 3  # key, the page, the items of the whole page
    second = tenant.client.get(first["next"]).json()

    assert [batch["total"] for batch in first["results"]] == [27, 1]
    assert [batch["id"] for batch in first["results"] + second["results"]][1:] == ids[::-1]
    assert second["next"] is None


def test_another_organizations_batch_is_not_found_and_not_listed(tenant, make_tenant):
    other = make_tenant(credits=10)
    response = post_batch(other, [PersonFactory(organization=other.organization).pk])

    got = tenant.client.get(f"{BATCHES_URL}/{response['Enrichment-Batch-Id']}")

    assert_error(got, 404, "NOT_FOUND")
    assert tenant.client.get(BATCHES_URL).json()["results"] == []
    for bad in ("not-a-uuid", uuid.uuid4()):
        assert_error(tenant.client.get(f"{BATCHES_URL}/{bad}"), 404, "NOT_FOUND")


# --- Completion -------------------------------------------------------------------------------


def test_batch_completes_when_its_last_pending_enrichment_settles_and_not_before(tenant):
    first, second = persons(tenant, 2)
    response = post_batch(tenant, [first.pk, second.pk])
    first_id, second_id = (item["id"] for item in response.json())

    finish(first_id)
    assert batch_of(tenant, response)["completedAt"] is None
    finish(second_id)

    batch = EnrichmentBatch.objects.get(pk=response["Enrichment-Batch-Id"])
    assert batch.completed_at >= Enrichment.objects.get(pk=second_id).finished_at


def test_cancelling_the_last_pending_enrichment_completes_its_batch(tenant):
    response = post_batch(tenant, [PersonFactory(organization=tenant.organization).pk])
    [item] = response.json()

    assert tenant.client.post(f"/api/v1/enrichments/{item['id']}/cancel").status_code == 200

    batch = batch_of(tenant, response)
    assert (batch["cancelled"], batch["pending"]) == (1, 0) and batch["completedAt"]


def test_timing_out_the_last_pending_enrichments_completes_their_batch(tenant):
    response = post_batch(tenant, [p.pk for p in persons(tenant, 2)])

    report = enrichments_requeue_timed_out(older_than=0, max_attempts=0)

    assert len(report.timed_out) == 2
    batch = batch_of(tenant, response)
    assert (batch["timeout"], batch["pending"]) == (2, 0) and batch["completedAt"]
    assert reserved(tenant) == 0


def test_deleting_the_person_of_the_last_pending_enrichment_completes_its_batch(tenant):
    kept, deleted = persons(tenant, 2)
    response = post_batch(tenant, [kept.pk, deleted.pk])
    finish(response.json()[0]["id"])

    assert tenant.client.delete(f"/api/v1/persons/{deleted.pk}").status_code == 204

    batch = batch_of(tenant, response)
    assert batch["completedAt"] is not None
    assert (batch["total"], batch["finished"]) == (1, 1)
    assert batch["enrichmentIds"] == [response.json()[0]["id"]]
    assert_ledger_invariants(tenant.organization)


def test_a_pending_enrichment_shared_by_two_batches_completes_both(tenant):
    person = PersonFactory(organization=tenant.organization)
    first, second = post_batch(tenant, [person.pk]), post_batch(tenant, [person.pk])
    assert first.json()[0]["id"] == second.json()[0]["id"]

    finish(first.json()[0]["id"])

    assert batch_of(tenant, first)["completedAt"] and batch_of(tenant, second)["completedAt"]
    assert batch_of(tenant, first)["creditsCharged"] == 1
    assert batch_of(tenant, second)["creditsCharged"] == 0


def test_settlement_looks_only_at_the_batches_of_the_enrichments_it_ends(tenant):
    untouched = post_batch(tenant, [p.pk for p in persons(tenant, 3)])
    target = post_batch(tenant, [PersonFactory(organization=tenant.organization).pk])
    # An open batch whose enrichments are all ended by a raw update stays open: the settlement
    # of another enrichment must not scan it.
    Enrichment.objects.filter(pk__in=[item["id"] for item in untouched.json()]).update(
        status=Status.CANCELLED, data_found=False
    )
    CreditAccount.objects.filter(organization=tenant.organization).update(reserved=1)

    finish(target.json()[0]["id"])

    assert batch_of(tenant, target)["completedAt"] is not None
    assert batch_of(tenant, untouched)["completedAt"] is None


# --- maxAge -----------------------------------------------------------------------------------


def test_batch_max_age_reuses_recent_finished_enrichments_and_replaces_older_ones(tenant):
    recent, old = persons(tenant, 2)
    first = post_batch(tenant, [recent.pk, old.pk]).json()
    for item in first:
        finish(item["id"])
    Enrichment.objects.filter(pk=first[1]["id"]).update(
        finished_at=timezone.now() - timezone.timedelta(hours=2)
    )
    body = {"personIds": [str(recent.pk), str(old.pk)], "field": "emails", "maxAge": 3600}

    second = tenant.client.post(BATCH_URL, body, format="json")

    reused, renewed = second.json()
    assert reused["id"] == first[0]["id"]
    assert renewed["id"] != first[1]["id"] and renewed["status"] == "pending"
    assert second["Credits-Reserved"] == "1"
    assert Enrichment.objects.get(pk=first[1]["id"]).superseded_at is not None


def test_max_age_zero_replaces_every_finished_enrichment_but_reuses_a_pending_one(tenant):
    finished_person, pending_person = persons(tenant, 2)
    first = post_batch(tenant, [finished_person.pk, pending_person.pk]).json()
    finish(first[0]["id"])
    body = {"personIds": [str(finished_person.pk), str(pending_person.pk)], "field": "emails"}

    second = tenant.client.post(BATCH_URL, {**body, "maxAge": 0}, format="json").json()

    assert second[0]["id"] != first[0]["id"] and second[1]["id"] == first[1]["id"]


def test_the_shorter_of_max_age_and_the_reuse_setting_wins(tenant, settings):
    settings.ENRICHMENT_REUSE_MAX_AGE = 60
    person = PersonFactory(organization=tenant.organization)
    [first] = post_batch(tenant, [person.pk]).json()
    finish(first["id"])
    Enrichment.objects.filter(pk=first["id"]).update(
        finished_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    body = {"personIds": [str(person.pk)], "field": "emails", "maxAge": 3600}

    [second] = tenant.client.post(BATCH_URL, body, format="json").json()

    assert second["id"] != first["id"]


def test_single_person_post_takes_max_age_in_its_body(tenant):
    person = PersonFactory(organization=tenant.organization)
    url = f"/api/v1/operations/enrichment/{person.pk}?field=emails"
    first = tenant.client.post(url).json()
    finish(first["id"])

    kept = tenant.client.post(url, {"maxAge": 3600}, format="json").json()
    renewed = tenant.client.post(url, {"maxAge": 0}, format="json").json()

    assert kept["id"] == first["id"] and renewed["id"] != first["id"]


@pytest.mark.parametrize("max_age", [-1, "soon", 1.5, True, None, 10**12, [60]])
def test_invalid_max_age_is_400_and_changes_nothing(tenant, max_age):
    person = PersonFactory(organization=tenant.organization)
    body = {"personIds": [str(person.pk)], "field": "emails", "maxAge": max_age}
    single = f"/api/v1/operations/enrichment/{person.pk}?field=emails"

    for url, sent in ((BATCH_URL, body), (ESTIMATE_URL, body), (single, {"maxAge": max_age})):
        error = assert_error(tenant.client.post(url, sent, format="json"), 400, "VALIDATION_ERROR")
        assert "maxAge" in error["details"]["fields"]
    assert not Enrichment.objects.exists() and not EnrichmentBatch.objects.exists()


# --- Estimate ---------------------------------------------------------------------------------


def test_estimate_counts_reused_and_new_and_changes_nothing(make_tenant, enrichment_queue):
    tenant = make_tenant(credits=25)
    pending_person, stale_person, *new_people = persons(tenant, 4)
    first = post_batch(tenant, [pending_person.pk, stale_person.pk], field="phones").json()
    finish(first[1]["id"])
    Enrichment.objects.filter(pk=first[1]["id"]).update(
        finished_at=timezone.now() - timezone.timedelta(hours=2)
    )
    enrichment_queue()  # empties what the first batch queued
    before = (Enrichment.objects.count(), EnrichmentBatch.objects.count(), reserved(tenant))
    ids = [str(p.pk) for p in (pending_person, stale_person, *new_people, new_people[0])]

    response = tenant.client.post(
        ESTIMATE_URL, {"personIds": ids, "field": "phones", "maxAge": 3600}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "persons": 4,
        "reused": 1,
        "new": 3,
        "creditsRequired": 30,
        "creditsAvailable": 5,
        "sufficient": False,
    }
    assert (Enrichment.objects.count(), EnrichmentBatch.objects.count(), reserved(tenant)) == before
    assert not Enrichment.objects.filter(superseded_at__isnull=False).exists()
    assert enrichment_queue() == []


def test_estimate_of_unknown_ids_is_the_batch_400(tenant, make_tenant):
    foreign = PersonFactory(organization=make_tenant().organization)
    body = {"personIds": [str(foreign.pk)], "field": "emails"}

    error = assert_error(
        tenant.client.post(ESTIMATE_URL, body, format="json"), 400, "VALIDATION_ERROR"
    )

    assert error["details"] == {"unknownPersonIds": [str(foreign.pk)]}


# --- Bulk -------------------------------------------------------------------------------------


def post_bulk(tenant, **body):
    return tenant.client.post(BULK_URL, body, format="json")


def test_bulk_by_ids_answers_the_batch_object_with_credit_headers(tenant):
    people = persons(tenant, 3)
    reused = post_batch(tenant, [people[0].pk]).json()[0]

    response = post_bulk(tenant, field="emails", personIds=[str(p.pk) for p in people[::-1]])

    assert response.status_code == 200, response.content
    batch = response.json()
    assert batch == batch_of(tenant, {"Enrichment-Batch-Id": batch["id"]})
    assert (batch["total"], batch["pending"], batch["completedAt"]) == (3, 3, None)
    assert batch["enrichmentIds"][2] == reused["id"]
    assert (response["Credits-Reserved"], response["Credits-Available"]) == ("2", "997")
    assert_ledger_invariants(tenant.organization)


def test_bulk_accepts_1000_persons_and_refuses_1001(make_tenant):
    tenant = make_tenant(credits=1000)
    ids = [str(p.pk) for p in persons(tenant, 1001)]

    too_many = post_bulk(tenant, field="emails", personIds=ids)
    accepted = post_bulk(tenant, field="emails", personIds=ids[:1000])

    assert_error(too_many, 400, "VALIDATION_ERROR")
    assert accepted.status_code == 200 and accepted.json()["total"] == 1000
    assert reserved(tenant) == 1000


@pytest.mark.parametrize("by", ["ids", "search"])
def test_bulk_statement_count_is_the_same_for_1_and_1000_persons(make_tenant, by):
    counts = []
    for size in (1, 1000):
        tenant = make_tenant(credits=1000)
        ids = [str(p.pk) for p in persons(tenant, size, company_name="Acme")]
        body = {"personIds": ids} if by == "ids" else {"search": "acme"}
        tenant.client.get(BATCHES_URL)
        with CaptureQueriesContext(connection) as captured:
            response = post_bulk(tenant, field="emails", **body)
        assert response.status_code == 200 and response.json()["total"] == size
        counts.append(len(captured))

    # Key, savepoint, persons, credit lock, reusable, reserve, enrichments, batch, items,
    # release: the bulk object is rendered from the rows in hand.
    assert counts[0] == counts[1] == 10
    print(f"bulk statements by {by}: 1={counts[0]} 1000={counts[1]}")


def test_bulk_without_enough_credits_is_402_and_changes_nothing(make_tenant, enrichment_queue):
    tenant = make_tenant(credits=25)
    people = persons(tenant, 3)
    first = post_batch(tenant, [people[0].pk], field="phones").json()[0]
    finish(first["id"], found=False)
    Enrichment.objects.filter(pk=first["id"]).update(
        finished_at=timezone.now() - timezone.timedelta(hours=2)
    )
    enrichment_queue()
    before = (Enrichment.objects.count(), EnrichmentBatch.objects.count(), reserved(tenant))

    response = post_bulk(tenant, field="phones", personIds=[str(p.pk) for p in people], maxAge=60)

    assert assert_error(response, 402, "INSUFFICIENT_CREDITS")["details"] == {
        "required": 30,
        "available": 25,
    }
    assert (Enrichment.objects.count(), EnrichmentBatch.objects.count(), reserved(tenant)) == before
    assert Enrichment.objects.get(pk=first["id"]).superseded_at is None
    assert enrichment_queue() == []


def test_bulk_by_search_enriches_the_persons_a_person_search_lists(tenant, make_tenant):
    acme = persons(tenant, 3, company_name="Acme Rockets")
    persons(tenant, 2, company_name="Globex")
    persons(make_tenant(credits=10), 2, company_name="Acme Rockets")
    listed = tenant.client.get("/api/v1/persons", {"search": "acme rock"}).json()["results"]

    response = post_bulk(tenant, field="emails", search="acme rock")

    assert response.status_code == 200, response.content
    enriched = Enrichment.objects.in_bulk(response.json()["enrichmentIds"])
    people = [str(enriched[uuid.UUID(pk)].person_id) for pk in response.json()["enrichmentIds"]]
    assert people == [person["id"] for person in listed] and len(people) == len(acme)


def test_bulk_by_search_with_a_limit_takes_the_newest_matches(tenant):
    persons(tenant, 5, company_name="Acme")
    newest = tenant.client.get("/api/v1/persons", {"search": "acme", "limit": 2}).json()

    batch = post_bulk(tenant, field="emails", search="acme", limit=2).json()

    enriched = Enrichment.objects.in_bulk(batch["enrichmentIds"])
    assert [str(enriched[uuid.UUID(pk)].person_id) for pk in batch["enrichmentIds"]] == [
        person["id"] for person in newest["results"]
    ]


def test_bulk_by_search_matching_more_than_1000_without_a_limit_is_400(tenant):
    persons(tenant, 1001, company_name="Acme")

    error = assert_error(post_bulk(tenant, field="emails", search="acme"), 400, "VALIDATION_ERROR")

    assert error["details"]["maxItems"] == 1000
    assert not Enrichment.objects.exists() and not EnrichmentBatch.objects.exists()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"field": "emails"}, "neither ids nor search"),
        ({"field": "emails", "personIds": [str(uuid.uuid4())], "search": "x"}, "both"),
        ({"field": "emails", "personIds": [str(uuid.uuid4())], "limit": 3}, "limit without search"),
        ({"field": "emails", "search": "x", "limit": 0}, "limit 0"),
        ({"field": "emails", "search": "x", "limit": 1001}, "limit 1001"),
        ({"field": "emails", "personIds": []}, "no ids"),
        ({"field": "fax", "search": "x"}, "unknown field"),
        ({"field": "emails", "search": "nobody-matches-this"}, "no match"),
        ({"field": "emails", "personIds": [str(uuid.uuid4())]}, "unknown id"),
    ],
)
def test_bulk_rejects_invalid_bodies_and_changes_nothing(tenant, body, reason):
    PersonFactory(organization=tenant.organization)

    assert_error(tenant.client.post(BULK_URL, body, format="json"), 400, "VALIDATION_ERROR")

    assert not Enrichment.objects.exists() and not EnrichmentBatch.objects.exists()


# --- Credit headers ---------------------------------------------------------------------------


def test_enrichment_posts_carry_the_credits_reserved_and_left_available(make_tenant):
    tenant = make_tenant(credits=100)
    first, second = persons(tenant, 2)
    single = f"/api/v1/operations/enrichment/{first.pk}?field=phones"

    created = tenant.client.post(single)
    reused = tenant.client.post(single)
    batch = post_batch(tenant, [first.pk, second.pk], field="phones")

    assert (created["Credits-Reserved"], created["Credits-Available"]) == ("10", "90")
    assert (reused["Credits-Reserved"], reused["Credits-Available"]) == ("0", "90")
    assert (batch["Credits-Reserved"], batch["Credits-Available"]) == ("10", "80")
    account = CreditAccount.objects.get(organization=tenant.organization)
    assert account.available == 80


def test_enrichment_post_headers_cost_no_extra_statement(tenant):
    person = PersonFactory(organization=tenant.organization)
    tenant.client.get(BATCHES_URL)

    with CaptureQueriesContext(connection) as captured:
        response = tenant.client.post(f"/api/v1/operations/enrichment/{person.pk}?field=emails")

    assert response["Credits-Available"] == "999"
    # Key, savepoint, credit lock, person, reusable, reserve, insert, release: no batch, no
    # read of the account after the request.
    assert len(captured) == 8
