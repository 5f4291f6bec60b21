import uuid
from typing import Any

import pytest
from django.conf import settings
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from persons.models import Person
from persons.services import IDENTITY_RULE
from tests.conftest import Tenant
from tests.persons.helpers import assert_error, stored_state, valid_person

URL = "/api/v1/persons"
NON_FIELD = api_settings.NON_FIELD_ERRORS_KEY


def test_create_one_person_returns_201_with_the_stored_person(tenant: Tenant) -> None:
    response = tenant.client.post(URL, valid_person(), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    person = Person.objects.get()
    assert person.organization == tenant.organization
    assert uuid.UUID(body["id"]) == person.pk
    assert uuid.UUID(body["id"]).version == 4
    assert {key: body[key] for key in valid_person()} == valid_person()
    assert body["emails"] == []
    assert body["phones"] == []
    assert body["createdAt"].endswith("Z")
    assert body["updatedAt"].endswith("Z")
    assert set(body) == {*valid_person(), "id", "createdAt", "updatedAt", "emails", "phones"}


@pytest.mark.parametrize(
    "identity",
    [
        {"linkedinUrl": "https://www.linkedin.com/in/ada"},
        {"linkedinUrl": "http://linkedin.com/in/ada"},
        {"firstName": "Ada", "lastName": "Lovelace", "companyDomain": "engines.example"},
        {"firstName": "Ada", "lastName": "Lovelace", "companyName": "Analytical Engines"},
    ],
)
def test_create_accepts_each_way_to_identify_a_person(
    tenant: Tenant, identity: dict[str, str]
) -> None:
    response = tenant.client.post(URL, identity, format="json")

    assert response.status_code == 201, response.content
    assert Person.objects.count() == 1


def test_create_leaves_fields_not_sent_empty_and_renders_them_as_null(tenant: Tenant) -> None:
    response = tenant.client.post(
        URL, {"linkedinUrl": "https://linkedin.com/in/ada", "title": None}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert [body[key] for key in ("firstName", "lastName", "companyName", "title")] == [None] * 4
    person = Person.objects.get()
    assert (person.first_name, person.company_domain, person.title) == ("", "", "")


def test_create_lowercases_company_domain_and_trims_whitespace(tenant: Tenant) -> None:
    payload = valid_person(firstName="  Ada ", companyDomain="  Engines.EXAMPLE \n")

    response = tenant.client.post(URL, payload, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["companyDomain"] == "engines.example"
    person = Person.objects.get()
    assert (person.first_name, person.company_domain) == ("Ada", "engines.example")


def test_create_array_returns_201_with_persons_in_request_order(tenant: Tenant) -> None:
    payload = [valid_person(firstName=f"Person {index}") for index in range(5)]

    response = tenant.client.post(URL, payload, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert [item["firstName"] for item in body] == [f"Person {index}" for index in range(5)]
    stored = Person.objects.in_bulk([item["id"] for item in body])
    assert [stored[uuid.UUID(item["id"])].first_name for item in body] == [
        f"Person {index}" for index in range(5)
    ]
    assert Person.objects.filter(organization=tenant.organization).count() == 5


def test_create_array_of_one_returns_an_array(tenant: Tenant) -> None:
    response = tenant.client.post(URL, [valid_person()], format="json")

    assert response.status_code == 201, response.content
    assert isinstance(response.json(), list)
    assert len(response.json()) == 1


def test_create_accepts_the_maximum_of_1000_persons(tenant: Tenant) -> None:
    payload = [valid_person(firstName=f"P{index}") for index in range(settings.PERSONS_BULK_MAX)]

    response = tenant.client.post(URL, payload, format="json")

    assert response.status_code == 201, response.content
    assert len(response.json()) == 1000
    assert Person.objects.filter(organization=tenant.organization).count() == 1000


def test_create_rejects_1001_persons_and_creates_nothing(tenant: Tenant) -> None:
    payload = [valid_person() for _ in range(settings.PERSONS_BULK_MAX + 1)]

    error = assert_error(tenant.client.post(URL, payload, format="json"), 400, "VALIDATION_ERROR")

    assert error["details"] == {"count": 1001, "maxItems": 1000}
    assert Person.objects.count() == 0


def test_create_rejects_an_empty_array(tenant: Tenant) -> None:
    error = assert_error(tenant.client.post(URL, [], format="json"), 400, "VALIDATION_ERROR")

    assert error["details"] == {"count": 0, "maxItems": 1000}
    assert Person.objects.count() == 0


def test_bulk_create_rejects_whole_array_when_one_item_is_invalid(tenant: Tenant) -> None:
    payload = [valid_person() for _ in range(5)]
    payload[3] = valid_person(firstName=42)
    before = stored_state()

    error = assert_error(tenant.client.post(URL, payload, format="json"), 400, "VALIDATION_ERROR")

    assert error["details"] == {"items": {"3": {"firstName": ["Not a valid string."]}}}
    assert stored_state() == before
    assert Person.objects.count() == 0


def test_bulk_create_names_every_failing_item_by_index(tenant: Tenant) -> None:
    payload = [
        {"linkedinUrl": "not a url"},
        valid_person(),
        {"firstName": "Ada"},
        valid_person(nickname="Countess"),
        "Ada Lovelace",
    ]

    error = assert_error(tenant.client.post(URL, payload, format="json"), 400, "VALIDATION_ERROR")

    items = error["details"]["items"]
    assert set(items) == {"0", "2", "3", "4"}
    assert items["0"] == {"linkedinUrl": ["Enter a valid http(s) URL."]}
    assert items["2"] == {NON_FIELD: [IDENTITY_RULE]}
    assert items["3"] == {"nickname": ["Unknown field."]}
    assert list(items["4"]) == [NON_FIELD]
    assert error["message"] == "4 of 5 persons are invalid; none was created."
    assert Person.objects.count() == 0


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"title": "CTO"},
        {"firstName": "Ada", "lastName": "Lovelace"},
        {"firstName": "Ada", "companyDomain": "engines.example"},
        {"lastName": "Lovelace", "companyName": "Analytical Engines"},
        {"firstName": "Ada", "lastName": "  ", "companyName": "Analytical Engines"},
        {"firstName": "Ada", "lastName": "Lovelace", "companyName": "", "companyDomain": None},
        {"linkedinUrl": "", "firstName": "Ada", "lastName": "Lovelace"},
    ],
)
def test_create_rejects_a_person_that_cannot_be_identified(
    tenant: Tenant, payload: dict[str, Any]
) -> None:
    error = assert_error(tenant.client.post(URL, payload, format="json"), 400, "VALIDATION_ERROR")

    assert error["message"] == IDENTITY_RULE
    assert error["details"] == {"fields": {NON_FIELD: [IDENTITY_RULE]}}
    assert Person.objects.count() == 0


def test_create_rejects_unknown_keys_so_typos_are_caught(tenant: Tenant) -> None:
    payload = valid_person() | {"firstname": "Ada", "company_domain": "engines.example"}

    error = assert_error(tenant.client.post(URL, payload, format="json"), 400, "VALIDATION_ERROR")

    assert error["details"] == {
        "fields": {"firstname": ["Unknown field."], "company_domain": ["Unknown field."]}
    }
    assert Person.objects.count() == 0


@pytest.mark.parametrize(
    "key, value",
    [
        ("id", str(uuid.uuid4())),
        ("createdAt", "2024-01-01T00:00:00Z"),
        ("updatedAt", "2024-01-01T00:00:00Z"),
        ("emails", [{"value": "ada@engines.example"}]),
        ("phones", []),
    ],
)
def test_create_rejects_read_only_keys(tenant: Tenant, key: str, value: Any) -> None:
    payload = valid_person() | {key: value}

    error = assert_error(tenant.client.post(URL, payload, format="json"), 400, "VALIDATION_ERROR")

    assert error["details"] == {"fields": {key: ["This field is read-only."]}}
    assert Person.objects.count() == 0


@pytest.mark.parametrize("value", [42, 4.2, True, ["Ada"], {"name": "Ada"}])
@pytest.mark.parametrize(
    "key", ["firstName", "lastName", "companyName", "companyDomain", "linkedinUrl", "title"]
)
def test_create_rejects_values_that_are_not_strings(tenant: Tenant, key: str, value: Any) -> None:
    error = assert_error(
        tenant.client.post(URL, valid_person(**{key: value}), format="json"),
        400,
        "VALIDATION_ERROR",
    )

    assert error["details"] == {"fields": {key: ["Not a valid string."]}}
    assert Person.objects.count() == 0


def _of_length(key: str, length: int) -> str:
    """A valid value of the field with exactly `length` characters."""
    if key == "companyDomain":
        return "a" * (length - len(".example")) + ".example"
    if key == "linkedinUrl":
        prefix = "https://www.linkedin.com/in/"
        return prefix + "a" * (length - len(prefix))
    return "x" * length


@pytest.mark.parametrize(
    "key, limit",
    [
        ("firstName", 100),
        ("lastName", 100),
        ("companyName", 200),
        ("companyDomain", 253),
        ("linkedinUrl", 500),
        ("title", 200),
    ],
)
def test_create_enforces_the_maximum_length_of_each_field(
    tenant: Tenant, key: str, limit: int
) -> None:
    at_limit = tenant.client.post(URL, valid_person(**{key: _of_length(key, limit)}), format="json")
    assert at_limit.status_code == 201, at_limit.content
    before = stored_state()

    error = assert_error(
        tenant.client.post(URL, valid_person(**{key: _of_length(key, limit + 1)}), format="json"),
        400,
        "VALIDATION_ERROR",
    )

    assert error["details"]["fields"] == {
        key: [f"Ensure this field has no more than {limit} characters."]
    }
    assert stored_state() == before


@pytest.mark.parametrize(
    "url",
    [
        "linkedin.com/in/ada",
        "ftp://linkedin.com/in/ada",
        "javascript:alert(1)",
        "https://",
        "https://linked in.com/in/ada",
    ],
)
def test_create_rejects_a_linkedin_url_that_is_not_http_or_https(tenant: Tenant, url: str) -> None:
    error = assert_error(
        tenant.client.post(URL, valid_person(linkedinUrl=url), format="json"),
        400,
        "VALIDATION_ERROR",
    )

    assert error["details"] == {"fields": {"linkedinUrl": ["Enter a valid http(s) URL."]}}
    assert Person.objects.count() == 0


@pytest.mark.parametrize(
    "domain",
    ["https://engines.example", "engines.example/about", "engines", "a b.example", "@x.io"],
)
def test_create_rejects_a_company_domain_that_is_not_a_bare_domain(
    tenant: Tenant, domain: str
) -> None:
    error = assert_error(
        tenant.client.post(URL, valid_person(companyDomain=domain), format="json"),
        400,
        "VALIDATION_ERROR",
    )

    assert list(error["details"]["fields"]) == ["companyDomain"]
    assert Person.objects.count() == 0


def test_create_rejects_a_nul_character_instead_of_failing_in_the_database(
    tenant: Tenant,
) -> None:
    error = assert_error(
        tenant.client.post(URL, valid_person(title="CTO\x00"), format="json"),
        400,
        "VALIDATION_ERROR",
    )

    assert list(error["details"]["fields"]) == ["title"]
    assert Person.objects.count() == 0


@pytest.mark.parametrize("payload", ["Ada Lovelace", 42, None, True])
def test_create_rejects_a_body_that_is_neither_an_object_nor_an_array(
    tenant: Tenant, payload: Any
) -> None:
    assert_error(tenant.client.post(URL, payload, format="json"), 400, "VALIDATION_ERROR")

    assert Person.objects.count() == 0


def test_create_rejects_malformed_json(tenant: Tenant) -> None:
    response = tenant.client.post(URL, '{"firstName": "Ada",', content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert Person.objects.count() == 0


def test_create_without_an_api_key_is_refused(tenant: Tenant) -> None:
    response = APIClient().post(URL, valid_person(), format="json")

    assert_error(response, 401, "VALIDATION_ERROR")
    assert Person.objects.count() == 0


@pytest.mark.parametrize("size", [1, 1000])
def test_bulk_create_uses_a_constant_number_of_queries(
    tenant: Tenant, size: int, django_assert_max_num_queries: Any
) -> None:
    tenant.client.get(URL)  # refreshes the key's last_used_at, so it is not counted below
    payload = [valid_person(firstName=f"P{index}") for index in range(size)]

    # The API key lookup, one INSERT, one contact points lookup for the response.
    with django_assert_max_num_queries(3):
        response = tenant.client.post(URL, payload, format="json")

    assert response.status_code == 201, response.content
    assert Person.objects.count() == size
