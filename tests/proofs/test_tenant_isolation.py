"""No request reads or changes another organization's data: an id of another organization is
"not found" (or an unknown id in a batch), lists show the caller's rows only, and the other
organization's rows stay exactly as they were."""

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.response import Response

from credits.models import CreditAccount, CreditTransaction
from enrichment.models import Enrichment
from organizations.models import Organization
from persons.models import ContactPoint, Person
from tests.enrichment.conftest import BATCH_URL
from tests.enrichment.test_batch_api import assert_error
from tests.proofs.conftest import Stocked

BATCH_QUERY_URL = "/api/v1/operations/enrichment/batch/query"


@pytest.fixture
def mine(make_stocked_tenant: Callable[..., Stocked]) -> Stocked:
    return make_stocked_tenant(credits=1000)


@pytest.fixture
def other(make_stocked_tenant: Callable[..., Stocked]) -> Stocked:
    return make_stocked_tenant(credits=500)


def stored_state(organization: Organization) -> dict[str, list[dict[str, Any]]]:
    """Every row of the organization's data, to show that a request changed none of it."""
    return {
        "persons": list(Person.objects.filter(organization=organization).order_by("pk").values()),
        "contact points": list(
            ContactPoint.objects.filter(person__organization=organization).order_by("pk").values()
        ),
        "enrichments": list(
            Enrichment.objects.filter(organization=organization).order_by("pk").values()
        ),
        "account": list(CreditAccount.objects.filter(organization=organization).values()),
        "ledger": list(
            CreditTransaction.objects.filter(account_id=organization.pk).order_by("pk").values()
        ),
    }


def assert_shows_nothing_of(response: Response, stocked: Stocked) -> None:
    content = response.content.decode()
    assert not [identifier for identifier in stocked.ids if identifier in content]


@pytest.mark.parametrize("state", ["pending", "finished"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("get", "/api/v1/persons/{person}", None, id="GET person"),
        pytest.param("patch", "/api/v1/persons/{person}", {"title": "Spy"}, id="PATCH person"),
        pytest.param("delete", "/api/v1/persons/{person}", None, id="DELETE person"),
        pytest.param("get", "/api/v1/enrichments/{enrichment}", None, id="GET enrichment"),
        pytest.param(
            "post", "/api/v1/enrichments/{enrichment}/cancel", None, id="POST enrichment cancel"
        ),
        pytest.param(
            "get",
            "/api/v1/operations/enrichment/{person}?field=emails",
            None,
            id="GET person's latest enrichment",
        ),
        pytest.param(
            "post",
            "/api/v1/operations/enrichment/{person}?field=emails",
            None,
            id="POST person enrichment",
        ),
    ],
)
def test_another_organizations_object_is_not_found_and_nothing_changes(
    mine: Stocked, other: Stocked, state: str, method: str, path: str, body: dict | None
) -> None:
    """Each id names another organization's person or enrichment, whose emails enrichment is
    pending or finished with data."""
    target: Enrichment = getattr(other, state)
    before = stored_state(mine.tenant.organization), stored_state(other.tenant.organization)

    url = path.format(person=target.person_id, enrichment=target.pk)
    response = getattr(mine.tenant.client, method)(url, body, format="json")

    assert_error(response, 404, "NOT_FOUND")
    assert_shows_nothing_of(response, other)
    after = stored_state(mine.tenant.organization), stored_state(other.tenant.organization)
    assert after == before


def test_batch_with_another_organizations_person_refuses_it_as_unknown_and_creates_nothing(
    mine: Stocked, other: Stocked
) -> None:
    before = stored_state(mine.tenant.organization), stored_state(other.tenant.organization)
    foreign = other.persons[1]

    response = mine.tenant.client.post(
        BATCH_URL,
        {"personIds": [str(mine.persons[0].pk), str(foreign.pk)], "field": "phones"},
        format="json",
    )

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"unknownPersonIds": [str(foreign.pk)]}
    after = stored_state(mine.tenant.organization), stored_state(other.tenant.organization)
    assert after == before


def test_batch_query_leaves_out_another_organizations_persons(
    mine: Stocked, other: Stocked
) -> None:
    tasks = [
        {"entityId": str(stocked.finished.person_id), "field": "emails"}
        for stocked in (other, mine, other)
    ] + [{"entityId": str(other.failed.person_id), "field": "phones"}]

    response = mine.tenant.client.post(BATCH_QUERY_URL, {"tasks": tasks}, format="json")

    assert response.status_code == 200, response.content
    assert [item["id"] for item in response.json()] == [str(mine.finished.pk)]
    assert_shows_nothing_of(response, other)


@pytest.mark.parametrize(
    ("url", "shown_ids", "own_ids"),
    [
        (
            "/api/v1/persons",
            lambda body: [item["id"] for item in body["results"]],
            lambda stocked: [str(person.pk) for person in stocked.persons],
        ),
        (
            "/api/v1/enrichments",
            lambda body: [item["id"] for item in body["results"]],
            lambda stocked: [str(enrichment.pk) for enrichment in stocked.enrichments],
        ),
        (
            "/api/v1/operations/credits/history",
            lambda body: [item["id"] for item in body["transactions"]],
            lambda stocked: list(
                CreditTransaction.objects.filter(
                    account_id=stocked.tenant.organization.pk
                ).values_list("pk", flat=True)
            ),
        ),
    ],
    ids=["persons", "enrichments", "credit history"],
)
def test_lists_show_the_callers_rows_and_none_of_another_organization(
    mine: Stocked,
    other: Stocked,
    url: str,
    shown_ids: Callable[[dict], list],
    own_ids: Callable[[Stocked], list],
) -> None:
    response = mine.tenant.client.get(url)

    assert response.status_code == 200, response.content
    assert sorted(shown_ids(response.json())) == sorted(own_ids(mine))
    assert_shows_nothing_of(response, other)


@pytest.mark.parametrize(
    ("url", "query"),
    [
        ("/api/v1/enrichments", lambda other: {"personId": str(other.finished.person_id)}),
        ("/api/v1/persons", lambda other: {"companyDomain": other.persons[1].company_domain}),
        ("/api/v1/persons", lambda other: {"search": other.persons[1].company_domain}),
    ],
    ids=["enrichments of its person", "persons of its domain", "persons matching its search"],
)
def test_list_filters_naming_another_organizations_data_find_nothing(
    mine: Stocked, other: Stocked, url: str, query: Callable[[Stocked], dict[str, str]]
) -> None:
    response = mine.tenant.client.get(url, query(other))

    assert response.status_code == 200, response.content
    assert response.json()["results"] == []


def test_balance_is_the_callers_own(mine: Stocked, other: Stocked) -> None:
    response = mine.tenant.client.get("/api/v1/operations/credits/balance")

    assert response.status_code == 200, response.content
    account = CreditAccount.objects.get(organization=mine.tenant.organization)
    body = response.json()
    assert body["organizationId"] == str(mine.tenant.organization.pk)
    assert (body["balance"], body["reserved"]) == (account.balance, account.reserved)
    assert_shows_nothing_of(response, other)
