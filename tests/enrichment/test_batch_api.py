import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits.models import CreditAccount, CreditTransaction
from enrichment.models import Enrichment, Status
from tests.enrichment.conftest import BATCH_URL, assert_ledger_invariants
from tests.factories import PersonFactory


def post_batch(tenant, person_ids, field="emails"):
    return tenant.client.post(
        BATCH_URL, {"personIds": [str(pk) for pk in person_ids], "field": field}, format="json"
    )


def reserved(tenant) -> int:
    return CreditAccount.objects.get(organization=tenant.organization).reserved


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def test_batch_returns_one_pending_enrichment_per_person_in_request_order(tenant):
    people = PersonFactory.create_batch(3, organization=tenant.organization)
    requested = [people[2].pk, people[0].pk, people[1].pk]

    response = post_batch(tenant, requested, field="phones")

    assert response.status_code == 200
    body = response.json()
    assert [item["entityId"] for item in body] == [str(pk) for pk in requested]
    first = body[0]
    assert set(first) == {
        "id", "createdAt", "updatedAt", "entityId", "entityType", "field", "status", "error",
        "dataFound", "createdBy", "orgId", "globalEnrichmentId", "creditTransactionId",
        "creditsCharged", "data", "provider", "attempts",
    }  # fmt: skip
    assert first["status"] == "pending"
    assert (first["provider"], first["attempts"]) == (None, 0)
    assert first["entityType"] == "person"
    assert first["field"] == "phones"
    assert first["dataFound"] is None and first["data"] is None and first["error"] is None
    assert first["creditsCharged"] == 0 and first["creditTransactionId"] is None
    assert first["orgId"] == str(tenant.organization.pk)
    assert first["createdBy"] == tenant.user.pk
    assert first["createdAt"].endswith("Z")
    assert reserved(tenant) == 3 * 10
    assert_ledger_invariants(tenant.organization)


def test_batch_counts_duplicate_ids_once_in_any_letter_case(tenant):
    person = PersonFactory(organization=tenant.organization)
    other = PersonFactory(organization=tenant.organization)

    response = post_batch(tenant, [person.pk, str(person.pk).upper(), other.pk, person.pk])

    assert response.status_code == 200
    assert [item["entityId"] for item in response.json()] == [str(person.pk), str(other.pk)]
    assert Enrichment.objects.count() == 2
    assert reserved(tenant) == 2


def test_batch_reuses_pending_and_finished_enrichments_without_reserving_again(tenant):
    pending_person, finished_person, new_person = PersonFactory.create_batch(
        3, organization=tenant.organization
    )
    first = post_batch(tenant, [pending_person.pk, finished_person.pk]).json()
    Enrichment.objects.filter(pk=first[1]["id"]).update(
        status=Status.FINISHED, data_found=False, data=[], finished_at=timezone.now()
    )
    CreditAccount.objects.filter(organization=tenant.organization).update(reserved=1)

    second = post_batch(tenant, [pending_person.pk, finished_person.pk, new_person.pk]).json()

    assert [item["id"] for item in second[:2]] == [first[0]["id"], first[1]["id"]]
    assert second[1]["status"] == "finished"
    assert second[2]["status"] == "pending"
    assert Enrichment.objects.count() == 3
    assert reserved(tenant) == 2
    assert_ledger_invariants(tenant.organization)


@pytest.mark.parametrize("ended", [Status.FAILED, Status.TIMEOUT, Status.CANCELLED])
def test_batch_creates_new_enrichment_when_previous_one_ended_without_result(tenant, ended):
    person = PersonFactory(organization=tenant.organization)
    old = post_batch(tenant, [person.pk]).json()[0]
    Enrichment.objects.filter(pk=old["id"]).update(status=ended, data_found=False)
    CreditAccount.objects.filter(organization=tenant.organization).update(reserved=0)

    new = post_batch(tenant, [person.pk]).json()[0]

    assert new["id"] != old["id"] and new["status"] == "pending"
    assert reserved(tenant) == 1


def test_batch_reuse_respects_max_age_and_supersedes_stale_finished(tenant, settings):
    settings.ENRICHMENT_REUSE_MAX_AGE = 3600
    person = PersonFactory(organization=tenant.organization)
    old = post_batch(tenant, [person.pk]).json()[0]
    finished_long_ago = timezone.now() - timezone.timedelta(hours=2)
    Enrichment.objects.filter(pk=old["id"]).update(
        status=Status.FINISHED, data_found=True, data=[], finished_at=finished_long_ago
    )
    CreditAccount.objects.filter(organization=tenant.organization).update(reserved=0)

    new = post_batch(tenant, [person.pk]).json()[0]

    assert new["id"] != old["id"]
    stale = Enrichment.objects.get(pk=old["id"])
    assert stale.status == Status.FINISHED and stale.superseded_at is not None
    assert post_batch(tenant, [person.pk]).json()[0]["id"] == new["id"]


def test_batch_rejects_unknown_and_foreign_person_ids_listing_them(tenant, make_tenant):
    mine = PersonFactory(organization=tenant.organization)
    foreign = PersonFactory(organization=make_tenant().organization)
    missing = uuid.uuid4()

    error = assert_error(
        post_batch(tenant, [mine.pk, foreign.pk, missing]), 400, "VALIDATION_ERROR"
    )

    assert error["details"]["unknownPersonIds"] == [str(foreign.pk), str(missing)]
    assert Enrichment.objects.count() == 0
    assert reserved(tenant) == 0


def test_batch_without_enough_credits_is_402_and_creates_nothing(make_tenant):
    tenant = make_tenant(credits=25)
    people = PersonFactory.create_batch(3, organization=tenant.organization)

    error = assert_error(
        post_batch(tenant, [p.pk for p in people], "phones"), 402, "INSUFFICIENT_CREDITS"
    )

    assert error["details"] == {"required": 30, "available": 25}
    assert Enrichment.objects.count() == 0
    assert reserved(tenant) == 0


def test_batch_counts_only_new_enrichments_against_available_credits(make_tenant):
    tenant = make_tenant(credits=20)
    people = PersonFactory.create_batch(3, organization=tenant.organization)
    post_batch(tenant, [people[0].pk, people[1].pk], "phones")

    error = assert_error(
        post_batch(tenant, [p.pk for p in people], "phones"), 402, "INSUFFICIENT_CREDITS"
    )
    assert error["details"] == {"required": 10, "available": 0}

    assert Enrichment.objects.count() == 2
    assert reserved(tenant) == 20


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"personIds": [], "field": "emails"}, "zero ids"),
        ({"personIds": [str(uuid.uuid4()) for _ in range(101)], "field": "emails"}, "101 ids"),
        ({"personIds": ["6ba7b810-9dad-11d1-80b4-00c04fd430c8"], "field": "emails"}, "uuid v1"),
        ({"personIds": ["not-a-uuid"], "field": "emails"}, "not a uuid"),
        ({"personIds": [12345], "field": "emails"}, "number"),
        ({"personIds": "6ba7b810-9dad-41d1-80b4-00c04fd430c8", "field": "emails"}, "not a list"),
        ({"personIds": [str(uuid.uuid4()).replace("-", "")], "field": "emails"}, "no dashes"),
        ({"personIds": [str(uuid.uuid4())], "field": "addresses"}, "unknown field"),
        ({"personIds": [str(uuid.uuid4())]}, "missing field"),
        ({"field": "emails"}, "missing personIds"),
        ([], "array body"),
    ],
)
def test_batch_rejects_invalid_bodies_with_validation_error(tenant, body, reason):
    response = tenant.client.post(BATCH_URL, body, format="json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert Enrichment.objects.count() == 0


def test_batch_rejects_malformed_json(tenant):
    response = tenant.client.post(BATCH_URL, '{"personIds": [', content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR")


def test_batch_accepts_exactly_100_persons(tenant):
    people = PersonFactory.create_batch(100, organization=tenant.organization)

    response = post_batch(tenant, [p.pk for p in people])

    assert response.status_code == 200 and len(response.json()) == 100
    assert reserved(tenant) == 100


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer ek_nope_nope", "Token abc", "Basic eDp5"]
)
def test_batch_without_a_valid_key_is_401(tenant, header):
    person = PersonFactory(organization=tenant.organization)
    tenant.client.credentials(**({"HTTP_AUTHORIZATION": header} if header else {}))

    response = post_batch(tenant, [person.pk])

    assert_error(response, 401, "VALIDATION_ERROR")
    assert Enrichment.objects.count() == 0


def _statements(tenant, person_ids) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert post_batch(tenant, person_ids).status_code == 200
    print(*(query["sql"][:90] for query in captured.captured_queries), sep="\n")
    return len(captured)


def test_batch_statement_count_does_not_grow_with_batch_size(make_tenant):
    one, hundred = make_tenant(credits=1000), make_tenant(credits=1000)
    single = [PersonFactory(organization=one.organization).pk]
    many = [p.pk for p in PersonFactory.create_batch(100, organization=hundred.organization)]
    # Warm both keys so last_used_at bookkeeping is not part of the comparison.
    one.client.get("/api/v1/operations/credits/balance")
    hundred.client.get("/api/v1/operations/credits/balance")

    new_one, new_hundred = _statements(one, single), _statements(hundred, many)
    reused_one, reused_hundred = _statements(one, single), _statements(hundred, many)

    # Key, savepoint, persons, credit lock, reusable, reserve, enrichments, batch, its items,
    # release; a request of reused enrichments only skips the reserve and the enrichments.
    assert new_one == new_hundred <= 10
    assert reused_one == reused_hundred <= 8
    print(
        f"statements: new 1={new_one} 100={new_hundred}; reused 1={reused_one} 100={reused_hundred}"
    )


@pytest.mark.broker
def test_batch_queues_work_only_after_commit_in_chunks(
    tenant, enrichment_queue, settings, django_capture_on_commit_callbacks
):
    settings.ENRICHMENT_TASK_CHUNK_SIZE = 40
    people = PersonFactory.create_batch(100, organization=tenant.organization)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_batch(tenant, [p.pk for p in people])
    assert enrichment_queue() == []  # nothing published before the commit
    for callback in callbacks:
        callback()

    jobs = enrichment_queue()
    assert [len(job) for job in jobs] == [40, 40, 20]
    assert sorted(pk for job in jobs for pk in job) == sorted(
        item["id"] for item in response.json()
    )


@pytest.mark.broker
def test_batch_of_only_reused_enrichments_queues_nothing(
    tenant, enrichment_queue, django_capture_on_commit_callbacks
):
    person = PersonFactory(organization=tenant.organization)
    post_batch(tenant, [person.pk])

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        post_batch(tenant, [person.pk])

    assert callbacks == []
    assert enrichment_queue() == []


def test_single_person_post_returns_one_object_and_reuses_it(tenant):
    person = PersonFactory(organization=tenant.organization)
    url = f"/api/v1/operations/enrichment/{person.pk}?field=emails"

    first = tenant.client.post(url)
    second = tenant.client.post(url)

    assert first.status_code == 200 and first.json()["status"] == "pending"
    assert second.json()["id"] == first.json()["id"]
    assert Enrichment.objects.count() == 1


def test_single_person_post_of_unknown_or_foreign_person_is_404(tenant, make_tenant):
    foreign = PersonFactory(organization=make_tenant().organization)
    for person_id in (foreign.pk, uuid.uuid4()):
        response = tenant.client.post(f"/api/v1/operations/enrichment/{person_id}?field=emails")
        assert_error(response, 404, "NOT_FOUND")
    assert Enrichment.objects.count() == 0


def test_single_person_post_validates_field_and_id(tenant):
    person = PersonFactory(organization=tenant.organization)
    assert_error(
        tenant.client.post(f"/api/v1/operations/enrichment/{person.pk}"), 400, "VALIDATION_ERROR"
    )
    assert_error(
        tenant.client.post(f"/api/v1/operations/enrichment/{person.pk}?field=fax"),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(
        tenant.client.post("/api/v1/operations/enrichment/123?field=emails"),
        400,
        "VALIDATION_ERROR",
    )
    assert CreditTransaction.objects.filter(kind="charge").count() == 0
    assert Enrichment.objects.count() == 0
