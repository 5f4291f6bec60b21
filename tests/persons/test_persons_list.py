from collections.abc import Callable
from typing import Any

import pytest

from persons.models import ContactPoint
from tests.conftest import Tenant
from tests.factories import ContactPointFactory, PersonFactory
from tests.persons.helpers import assert_error

URL = "/api/v1/persons"


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [person["id"] for person in response.json()["results"]]


def test_list_returns_the_organizations_persons_newest_first(tenant: Tenant) -> None:
    persons = PersonFactory.create_batch(3, organization=tenant.organization)

    response = tenant.client.get(URL)

    assert _ids(response) == [str(person.pk) for person in reversed(persons)]
    assert response.json()["next"] is None
    assert response.json()["previous"] is None


def test_list_follows_next_across_pages_without_gaps_or_repeats(tenant: Tenant) -> None:
    persons = PersonFactory.create_batch(5, organization=tenant.organization)
    seen, pages, url = [], 0, f"{URL}?limit=2"

    while url:
        response = tenant.client.get(url)
        page = _ids(response)
        assert len(page) <= 2
        seen += page
        pages += 1
        url = response.json()["next"]

    assert pages == 3
    assert seen == [str(person.pk) for person in reversed(persons)]


def test_list_pages_stay_stable_when_persons_are_added_meanwhile(tenant: Tenant) -> None:
    persons = PersonFactory.create_batch(4, organization=tenant.organization)
    first = tenant.client.get(f"{URL}?limit=2")

    PersonFactory(organization=tenant.organization)
    second = tenant.client.get(first.json()["next"])

    assert _ids(second) == [str(persons[1].pk), str(persons[0].pk)]


def test_list_renders_each_persons_emails_and_phones(tenant: Tenant) -> None:
    person = PersonFactory(organization=tenant.organization)
    ContactPointFactory(person=person, value="ada@engines.example", type="work")
    ContactPointFactory(
        person=person, kind=ContactPoint.Kind.PHONE, value="+44 20 7946 0000", type="mobile"
    )

    [listed] = tenant.client.get(URL).json()["results"]

    assert [email["value"] for email in listed["emails"]] == ["ada@engines.example"]
    assert listed["phones"] == [
        {
            "value": "+44 20 7946 0000",
            "type": "mobile",
            "quality": "unknown",
            "provider": "sandbox",
            "foundAt": listed["phones"][0]["foundAt"],
        }
    ]


def test_list_never_shows_another_organizations_persons(
    tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    mine = PersonFactory(organization=tenant.organization, first_name="Ada")
    PersonFactory(organization=make_tenant().organization, first_name="Ada")

    assert _ids(tenant.client.get(URL)) == [str(mine.pk)]
    assert _ids(tenant.client.get(f"{URL}?search=ada")) == [str(mine.pk)]


@pytest.mark.parametrize(
    "field, stored, search",
    [
        ("first_name", "Augusta", "gust"),
        ("last_name", "Lovelace", "LOVE"),
        ("company_name", "Analytical Engines", "engines"),
        ("company_domain", "babbage.example", "Babbage"),
        ("linkedin_url", "https://www.linkedin.com/in/countess-ada", "countess"),
        ("title", "Chief Mathematician", "mathem"),
    ],
)
def test_search_matches_part_of_each_field_in_any_letter_case(
    tenant: Tenant, field: str, stored: str, search: str
) -> None:
    match = PersonFactory(organization=tenant.organization, **{field: stored})
    PersonFactory(
        organization=tenant.organization,
        first_name="Bob",
        last_name="Smith",
        company_name="Other",
        company_domain="other.example",
        title="Clerk",
    )

    assert _ids(tenant.client.get(URL, {"search": search})) == [str(match.pk)]


def test_search_needs_every_word_to_match_some_field(tenant: Tenant) -> None:
    ada = PersonFactory(
        organization=tenant.organization,
        first_name="Ada",
        last_name="Lovelace",
        company_name="Engines",
    )
    PersonFactory(organization=tenant.organization, first_name="Ada", last_name="Byron")
    PersonFactory(
        organization=tenant.organization,
        first_name="Charles",
        last_name="Babbage",
        company_name="Engines",
    )

    assert _ids(tenant.client.get(URL, {"search": "ada lovelace"})) == [str(ada.pk)]
    assert _ids(tenant.client.get(URL, {"search": "  engines   ADA "})) == [str(ada.pk)]


def test_search_treats_like_wildcards_as_plain_characters(tenant: Tenant) -> None:
    PersonFactory(organization=tenant.organization, title="Engineer")
    percent = PersonFactory(organization=tenant.organization, title="Top 1% seller")

    assert _ids(tenant.client.get(URL, {"search": "%"})) == [str(percent.pk)]
    assert _ids(tenant.client.get(URL, {"search": "_"})) == []


def test_blank_search_lists_everyone(tenant: Tenant) -> None:
    PersonFactory.create_batch(2, organization=tenant.organization)

    assert len(_ids(tenant.client.get(URL, {"search": " "}))) == 2


def test_list_filters_by_exact_company_domain_in_any_letter_case(tenant: Tenant) -> None:
    match = PersonFactory(organization=tenant.organization, company_domain="acme.example")
    PersonFactory(organization=tenant.organization, company_domain="notacme.example")

    assert _ids(tenant.client.get(URL, {"companyDomain": "ACME.example"})) == [str(match.pk)]


def test_list_rejects_a_search_longer_than_200_characters(tenant: Tenant) -> None:
    PersonFactory(organization=tenant.organization)

    error = assert_error(tenant.client.get(URL, {"search": "a" * 201}), 400, "VALIDATION_ERROR")

    assert list(error["details"]["fields"]) == ["search"]


def test_list_rejects_an_invalid_cursor(tenant: Tenant) -> None:
    assert_error(tenant.client.get(URL, {"cursor": "garbage"}), 404, "NOT_FOUND")


@pytest.mark.parametrize("size", [1, 50])
def test_list_costs_a_constant_number_of_queries(
    tenant: Tenant, size: int, django_assert_max_num_queries: Any
) -> None:
    for person in PersonFactory.create_batch(size, organization=tenant.organization):
        ContactPointFactory(person=person)
        ContactPointFactory(person=person, kind=ContactPoint.Kind.PHONE)
    tenant.client.get(f"{URL}?limit=1")  # refreshes the key's last_used_at, not counted below

    # The API key, the page of persons (every one matches "a" of "Acme"), their contact points.
    with django_assert_max_num_queries(3):
        response = tenant.client.get(URL, {"search": "a", "limit": 50})

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == size
    assert all(len(person["emails"]) == len(person["phones"]) == 1 for person in results)
