import uuid

import pytest
from django.utils import timezone
from rest_framework import serializers

from credits.models import CreditAccount
from enrichment.models import Enrichment, GlobalEnrichment, Status
from enrichment.serializers import EnrichmentOut
from enrichment.services import enrichment_complete
from providers.base import FoundValue
from tests.enrichment.conftest import assert_ledger_invariants, request_enrichments
from tests.enrichment.test_batch_api import assert_error
from tests.factories import PersonFactory


def test_person_status_returns_the_latest_enrichment_of_the_field(tenant):
    person = PersonFactory(organization=tenant.organization)
    [old] = request_enrichments(tenant, [person])
    Enrichment.objects.filter(pk=old.pk).update(status=Status.FAILED, data_found=False)
    CreditAccount.objects.filter(organization=tenant.organization).update(reserved=0)
    [latest] = request_enrichments(tenant, [person])

    response = tenant.client.get(f"/api/v1/operations/enrichment/{person.pk}?field=emails")

    assert response.status_code == 200
    assert response.json()["id"] == str(latest.pk)
    missing = tenant.client.get(f"/api/v1/operations/enrichment/{person.pk}?field=phones")
    assert_error(missing, 404, "NOT_FOUND")


def test_finished_enrichment_carries_its_data_and_charge(tenant):
    person = PersonFactory(organization=tenant.organization)
    [enrichment] = request_enrichments(tenant, [person])
    found = [FoundValue(value="ada@acme.example", type="work", quality="verified")]
    enrichment_complete(enrichment=enrichment, values=found, provider="sandbox")

    body = tenant.client.get(f"/api/v1/enrichments/{enrichment.pk}").json()

    assert body["status"] == "finished" and body["dataFound"] is True
    assert body["data"] == [{"value": "ada@acme.example", "type": "work", "quality": "verified"}]
    assert body["provider"] == "sandbox"
    assert body["creditsCharged"] == 1 and isinstance(body["creditTransactionId"], int)
    person_body = tenant.client.get(f"/api/v1/operations/enrichment/{person.pk}?field=emails")
    assert person_body.json() == body


def test_enrichment_output_is_what_drf_renders_from_the_declared_fields(tenant):
    """EnrichmentOut reads the row directly; DRF's own walk over the declared fields is the
    reference, for a pending enrichment and for a finished one with every optional value set."""
    pending, finished = request_enrichments(
        tenant, PersonFactory.create_batch(2, organization=tenant.organization)
    )
    found = [
        FoundValue(value="ada@acme.example", type="work", quality="verified"),
        FoundValue(value="+44 20 7946 0000", type="mobile", quality="probable"),
    ]
    enrichment_complete(enrichment=finished, values=found, provider="sandbox")
    # Values stored before providers graded them have no quality; an error and a shared answer.
    shared = GlobalEnrichment.objects.create(lookup_key="0" * 64, field="emails")
    Enrichment.objects.filter(pk=finished.pk).update(
        data=[{"value": "ada@acme.example", "type": "work"}],
        error="partial answer",
        global_enrichment=shared,
    )
    finished = Enrichment.objects.get(pk=finished.pk)

    for enrichment in (pending, finished, Enrichment.objects.get(pk=pending.pk)):
        drf = serializers.ModelSerializer.to_representation(EnrichmentOut(), enrichment)
        assert EnrichmentOut(enrichment).data == drf
        assert list(EnrichmentOut(enrichment).data) == list(drf)
    assert EnrichmentOut(finished).data["data"][0]["quality"] == "unknown"
    assert EnrichmentOut(finished).data["creditTransactionId"] is not None


def test_batch_query_returns_latest_per_task_in_task_order_and_leaves_out_the_rest(
    tenant, make_tenant
):
    a, b, never = PersonFactory.create_batch(3, organization=tenant.organization)
    foreign = PersonFactory(organization=make_tenant().organization)
    [a_email, b_email] = request_enrichments(tenant, [a, b])
    [b_phone] = request_enrichments(tenant, [b], field="phones")
    tasks = [
        {"entityId": str(b.pk), "field": "phones"},
        {"entityId": str(never.pk), "field": "emails"},
        {"entityId": str(a.pk), "field": "emails"},
        {"entityId": str(foreign.pk), "field": "emails"},
        {"entityId": str(uuid.uuid4()), "field": "emails"},
        {"entityId": str(b.pk), "field": "emails"},
    ]

    response = tenant.client.post(
        "/api/v1/operations/enrichment/batch/query", {"tasks": tasks}, format="json"
    )

    assert response.status_code == 200
    assert [item["id"] for item in response.json()] == [
        str(b_phone.pk),
        str(a_email.pk),
        str(b_email.pk),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"tasks": []},
        {"tasks": [{"entityId": str(uuid.uuid4()), "field": "emails"}] * 201},
        {"tasks": [{"entityId": "nope", "field": "emails"}]},
        {"tasks": [{"entityId": str(uuid.uuid4()), "field": "fax"}]},
        {"tasks": [{"field": "emails"}]},
        {"tasks": "x"},
        {},
    ],
)
def test_batch_query_rejects_invalid_bodies(tenant, body):
    response = tenant.client.post("/api/v1/operations/enrichment/batch/query", body, format="json")
    assert_error(response, 400, "VALIDATION_ERROR")


def test_batch_query_accepts_200_tasks_in_constant_queries(
    make_tenant, django_assert_max_num_queries
):
    tenant = make_tenant(credits=2000)
    people = PersonFactory.create_batch(100, organization=tenant.organization)
    request_enrichments(tenant, people)
    request_enrichments(tenant, people, field="phones")
    tasks = [{"entityId": str(p.pk), "field": f} for p in people for f in ("emails", "phones")]

    with django_assert_max_num_queries(3):
        response = tenant.client.post(
            "/api/v1/operations/enrichment/batch/query", {"tasks": tasks}, format="json"
        )

    assert response.status_code == 200 and len(response.json()) == 200


def test_enrichment_list_filters_and_pages_with_a_cursor(tenant, make_tenant):
    people = PersonFactory.create_batch(5, organization=tenant.organization)
    emails = request_enrichments(tenant, people)
    request_enrichments(tenant, people[:2], field="phones")
    Enrichment.objects.filter(pk=emails[0].pk).update(status=Status.CANCELLED, data_found=False)
    other = make_tenant(credits=10)
    request_enrichments(other, [PersonFactory(organization=other.organization)])

    def ids(query: str) -> list[str]:
        response = tenant.client.get(f"/api/v1/enrichments{query}")
        assert response.status_code == 200
        return [item["id"] for item in response.json()["results"]]

    assert len(ids("")) == 7
    assert len(ids("?field=phones")) == 2
    assert ids("?status=cancelled") == [str(emails[0].pk)]
    assert len(ids(f"?personId={people[0].pk}")) == 2
    assert len(ids(f"?personId={people[0].pk}&field=emails&status=pending")) == 0
    seen, url = [], "/api/v1/enrichments?limit=3"
    while url:
        page = tenant.client.get(url).json()
        seen += [item["id"] for item in page["results"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == 7
    assert_error(tenant.client.get("/api/v1/enrichments?status=bogus"), 400, "VALIDATION_ERROR")
    assert_error(tenant.client.get("/api/v1/enrichments?personId=1"), 400, "VALIDATION_ERROR")


def test_one_requests_enrichments_page_backwards_and_forwards(tenant):
    """The list's cursor is a created_at: the rows of one request, written by one statement, get
    distinct ones in request order, so the previous page is the one seen before."""
    people = PersonFactory.create_batch(60, organization=tenant.organization)
    requested = request_enrichments(tenant, people)

    pages, url = [], "/api/v1/enrichments?limit=25"
    while url:
        page = tenant.client.get(url).json()
        pages.append([item["id"] for item in page["results"]])
        url = page["next"]
    assert [len(ids) for ids in pages] == [25, 25, 10]
    assert [pk for ids in pages for pk in ids] == [str(e.pk) for e in reversed(requested)]
    back = tenant.client.get(page["previous"]).json()
    assert [item["id"] for item in back["results"]] == pages[1]


def test_enrichment_of_another_organization_is_not_found(tenant, make_tenant):
    other = make_tenant(credits=10)
    [foreign] = request_enrichments(other, [PersonFactory(organization=other.organization)])

    assert_error(tenant.client.get(f"/api/v1/enrichments/{foreign.pk}"), 404, "NOT_FOUND")
    assert_error(tenant.client.post(f"/api/v1/enrichments/{foreign.pk}/cancel"), 404, "NOT_FOUND")
    assert_error(tenant.client.get("/api/v1/enrichments/not-a-uuid"), 404, "NOT_FOUND")
    assert Enrichment.objects.get(pk=foreign.pk).status == Status.PENDING


def test_cancel_releases_the_reservation_and_then_refuses_with_409(tenant):
    [enrichment] = request_enrichments(
        tenant, [PersonFactory(organization=tenant.organization)], "phones"
    )
    assert CreditAccount.objects.get(organization=tenant.organization).reserved == 10

    response = tenant.client.post(f"/api/v1/enrichments/{enrichment.pk}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled" and response.json()["error"] == "cancelled"
    account = CreditAccount.objects.get(organization=tenant.organization)
    assert (account.balance, account.reserved) == (1000, 0)
    again = tenant.client.post(f"/api/v1/enrichments/{enrichment.pk}/cancel")
    error = assert_error(again, 409, "INVALID_STATE")
    assert error["details"] == {"status": "cancelled"}
    assert_ledger_invariants(tenant.organization)


def test_finished_enrichment_cannot_be_cancelled(tenant):
    [enrichment] = request_enrichments(tenant, [PersonFactory(organization=tenant.organization)])
    enrichment_complete(enrichment=enrichment, values=[], provider="")
    finished_at = Enrichment.objects.get(pk=enrichment.pk).finished_at

    assert_error(
        tenant.client.post(f"/api/v1/enrichments/{enrichment.pk}/cancel"), 409, "INVALID_STATE"
    )

    assert Enrichment.objects.get(pk=enrichment.pk).finished_at == finished_at
    assert finished_at <= timezone.now()
