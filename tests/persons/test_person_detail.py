import uuid
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.settings import api_settings

from credits.models import CreditAccount, CreditTransaction
from enrichment.models import Enrichment
from enrichment.services import enrichment_complete
from persons.models import ContactPoint, Person
from persons.services import IDENTITY_RULE
from providers.base import FoundValue
from tests.conftest import Tenant
from tests.factories import ContactPointFactory, PersonFactory
from tests.persons.helpers import assert_error, stored_state

NON_FIELD = api_settings.NON_FIELD_ERRORS_KEY


def url(person_id: object) -> str:
    return f"/api/v1/persons/{person_id}"


@pytest.fixture
def person(tenant: Tenant) -> Person:
    return PersonFactory(
        organization=tenant.organization,
        first_name="Ada",
        last_name="Lovelace",
        company_name="Analytical Engines",
        company_domain="engines.example",
        linkedin_url="",
        title="Mathematician",
    )


# --- GET ------------------------------------------------------------------------------------


def test_get_returns_the_person_with_emails_and_phones_apart(
    tenant: Tenant, person: Person
) -> None:
    email = ContactPointFactory(
        person=person, value="ada@engines.example", type="work", quality="verified"
    )
    ContactPointFactory(
        person=person, kind=ContactPoint.Kind.PHONE, value="+44 20 7946 0000", type=""
    )

    response = tenant.client.get(url(person.pk))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(person.pk)
    assert (body["firstName"], body["companyDomain"], body["linkedinUrl"]) == (
        "Ada",
        "engines.example",
        None,
    )
    assert body["emails"] == [
        {
            "value": "ada@engines.example",
            "type": "work",
            "quality": "verified",
            "provider": "sandbox",
            "foundAt": email.found_at.isoformat().replace("+00:00", "Z"),
        }
    ]
    assert [(phone["value"], phone["type"]) for phone in body["phones"]] == [
        ("+44 20 7946 0000", None)
    ]


def test_get_accepts_the_id_in_upper_case(tenant: Tenant, person: Person) -> None:
    response = tenant.client.get(url(str(person.pk).upper()))

    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(person.pk)


@pytest.mark.parametrize(
    "person_id",
    ["not-a-uuid", str(uuid.uuid1()), str(uuid.uuid4()), str(uuid.uuid4()).replace("-", "")],
)
def test_get_of_a_malformed_or_unknown_id_is_not_found(tenant: Tenant, person_id: str) -> None:
    assert_error(tenant.client.get(url(person_id)), 404, "NOT_FOUND")


def test_get_costs_a_constant_number_of_queries(
    tenant: Tenant, person: Person, django_assert_max_num_queries: Any
) -> None:
    ContactPointFactory.create_batch(3, person=person)
    ContactPointFactory.create_batch(3, person=person, kind=ContactPoint.Kind.PHONE)
    tenant.client.get(url(person.pk))  # refreshes the key's last_used_at, not counted below

    # The API key, the person, its contact points.
    with django_assert_max_num_queries(3):
        response = tenant.client.get(url(person.pk))

    assert len(response.json()["emails"]) == len(response.json()["phones"]) == 3


# --- Another organization ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, payload",
    [("get", None), ("patch", {"title": "Spy"}), ("delete", None)],
)
def test_another_organizations_person_is_not_found_and_untouched(
    make_tenant: Callable[..., Tenant], method: str, payload: dict[str, str] | None
) -> None:
    owner, stranger = make_tenant(), make_tenant()
    theirs = PersonFactory(organization=owner.organization)
    ContactPointFactory(person=theirs)
    before = stored_state()

    response = getattr(stranger.client, method)(url(theirs.pk), payload, format="json")

    assert_error(response, 404, "NOT_FOUND")
    assert stored_state() == before


# --- PATCH ----------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(tenant: Tenant, person: Person) -> None:
    before = Person.objects.get(pk=person.pk)

    response = tenant.client.patch(
        url(person.pk), {"title": "Countess", "companyDomain": " Babbage.EXAMPLE "}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["title"], body["companyDomain"], body["firstName"]) == (
        "Countess",
        "babbage.example",
        "Ada",
    )
    person.refresh_from_db()
    assert (person.title, person.company_domain) == ("Countess", "babbage.example")
    assert (person.first_name, person.last_name, person.company_name) == (
        before.first_name,
        before.last_name,
        before.company_name,
    )
    assert person.created_at == before.created_at
    assert person.updated_at > before.updated_at


def test_patch_can_clear_a_field_the_identity_does_not_need(tenant: Tenant, person: Person) -> None:
    response = tenant.client.patch(
        url(person.pk), {"companyDomain": None, "title": ""}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["companyDomain"], response.json()["title"]) == (None, None)
    person.refresh_from_db()
    assert (person.company_domain, person.title, person.company_name) == (
        "",
        "",
        "Analytical Engines",
    )


def test_patch_can_swap_one_identity_for_the_other(tenant: Tenant, person: Person) -> None:
    response = tenant.client.patch(
        url(person.pk),
        {
            "linkedinUrl": "https://www.linkedin.com/in/ada",
            "lastName": "",
            "companyName": "",
            "companyDomain": "",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    person.refresh_from_db()
    assert (person.linkedin_url, person.last_name) == ("https://www.linkedin.com/in/ada", "")


@pytest.mark.parametrize(
    "payload",
    [
        {"lastName": ""},
        {"firstName": None},
        {"companyName": "", "companyDomain": None},
        {"linkedinUrl": "", "lastName": " "},
    ],
)
def test_patch_rejects_changes_that_leave_the_person_unidentifiable(
    tenant: Tenant, person: Person, payload: dict[str, Any]
) -> None:
    before = stored_state()

    error = assert_error(
        tenant.client.patch(url(person.pk), payload, format="json"), 400, "VALIDATION_ERROR"
    )

    assert error["details"] == {"fields": {NON_FIELD: [IDENTITY_RULE]}}
    assert stored_state() == before


def test_patch_rejects_removing_the_only_identity_a_person_has(tenant: Tenant) -> None:
    linked = PersonFactory(
        organization=tenant.organization,
        first_name="",
        last_name="",
        linkedin_url="https://www.linkedin.com/in/ada",
    )
    before = stored_state()

    error = assert_error(
        tenant.client.patch(url(linked.pk), {"linkedinUrl": None}, format="json"),
        400,
        "VALIDATION_ERROR",
    )

    assert error["message"] == IDENTITY_RULE
    assert stored_state() == before


@pytest.mark.parametrize(
    "payload, errors",
    [
        ({"titel": "CTO"}, {"titel": ["Unknown field."]}),
        ({"id": str(uuid.uuid4())}, {"id": ["This field is read-only."]}),
        ({"createdAt": "2024-01-01T00:00:00Z"}, {"createdAt": ["This field is read-only."]}),
        ({"emails": []}, {"emails": ["This field is read-only."]}),
        ({"phones": [{"value": "+1"}]}, {"phones": ["This field is read-only."]}),
        ({"title": 7}, {"title": ["Not a valid string."]}),
        ({"lastName": ["Byron"]}, {"lastName": ["Not a valid string."]}),
        ({"linkedinUrl": "www.linkedin.com"}, {"linkedinUrl": ["Enter a valid http(s) URL."]}),
        (
            {"firstName": "x" * 101},
            {"firstName": ["Ensure this field has no more than 100 characters."]},
        ),
    ],
)
def test_patch_rejects_invalid_unknown_and_read_only_keys(
    tenant: Tenant, person: Person, payload: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    before = stored_state()

    error = assert_error(
        tenant.client.patch(url(person.pk), payload, format="json"), 400, "VALIDATION_ERROR"
    )

    assert error["details"] == {"fields": errors}
    assert stored_state() == before


@pytest.mark.parametrize("payload", [[{"title": "CTO"}], "CTO", 42])
def test_patch_rejects_a_body_that_is_not_an_object(
    tenant: Tenant, person: Person, payload: Any
) -> None:
    before = stored_state()

    assert_error(
        tenant.client.patch(url(person.pk), payload, format="json"), 400, "VALIDATION_ERROR"
    )

    assert stored_state() == before


def test_patch_with_an_empty_object_changes_nothing(tenant: Tenant, person: Person) -> None:
    before = stored_state()

    response = tenant.client.patch(url(person.pk), {}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(person.pk)
    assert stored_state() == before


def test_patch_of_a_malformed_id_is_not_found(tenant: Tenant, person: Person) -> None:
    before = stored_state()

    assert_error(tenant.client.patch(url("123"), {"title": "CTO"}, format="json"), 404, "NOT_FOUND")

    assert stored_state() == before


# --- DELETE ---------------------------------------------------------------------------------


def test_delete_erases_the_person_and_its_contact_points(tenant: Tenant, person: Person) -> None:
    ContactPointFactory(person=person)
    ContactPointFactory(person=person, kind=ContactPoint.Kind.PHONE)
    other = ContactPointFactory(person__organization=tenant.organization)

    response = tenant.client.delete(url(person.pk))

    assert response.status_code == 204
    assert response.content == b""
    assert not Person.objects.filter(pk=person.pk).exists()
    assert not ContactPoint.objects.filter(person_id=person.pk).exists()
    assert list(ContactPoint.objects.all()) == [other]
    assert_error(tenant.client.get(url(person.pk)), 404, "NOT_FOUND")


def test_delete_of_an_unknown_or_malformed_id_is_not_found(tenant: Tenant, person: Person) -> None:
    before = stored_state()

    assert_error(tenant.client.delete(url(uuid.uuid4())), 404, "NOT_FOUND")
    assert_error(tenant.client.delete(url("nope")), 404, "NOT_FOUND")

    assert stored_state() == before


def _request_enrichment(tenant: Tenant, person: Person, field: str = "emails") -> Enrichment:
    response = tenant.client.post(
        "/api/v1/operations/enrichment/batch",
        {"personIds": [str(person.pk)], "field": field},
        format="json",
    )
    assert response.status_code == 200, response.content
    return Enrichment.objects.get(pk=response.json()[0]["id"])


def test_delete_releases_the_reservation_of_a_pending_enrichment(
    tenant: Tenant, person: Person
) -> None:
    _request_enrichment(tenant, person)
    assert CreditAccount.objects.get(organization=tenant.organization).reserved == 1
    ledger = list(CreditTransaction.objects.values())

    response = tenant.client.delete(url(person.pk))

    assert response.status_code == 204
    account = CreditAccount.objects.get(organization=tenant.organization)
    assert (account.balance, account.reserved) == (1000, 0)
    assert list(CreditTransaction.objects.values()) == ledger
    assert not Enrichment.objects.filter(person_id=person.pk).exists()


def test_delete_keeps_the_charge_of_a_finished_enrichment_in_the_ledger(
    tenant: Tenant, person: Person
) -> None:
    enrichment = enrichment_complete(
        enrichment=_request_enrichment(tenant, person, field="phones"),
        values=[FoundValue(value="+44 20 7946 0000", type="mobile", quality="verified")],
        provider="sandbox",
    )
    _request_enrichment(tenant, person, field="emails")
    ledger = list(CreditTransaction.objects.values())

    response = tenant.client.delete(url(person.pk))

    assert response.status_code == 204
    account = CreditAccount.objects.get(organization=tenant.organization)
    assert (account.balance, account.reserved) == (990, 0)
    assert list(CreditTransaction.objects.values()) == ledger
    charge = CreditTransaction.objects.get(kind=CreditTransaction.Kind.CHARGE)
    assert (charge.amount, charge.reference_id) == (-10, enrichment.pk)
    assert not Enrichment.objects.exists()
    assert not ContactPoint.objects.exists()
