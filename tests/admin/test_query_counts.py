"""Every admin list costs the same number of queries for 3 rows as for 30: related rows are
joined, never fetched one by one."""

import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from credits.services import credits_grant
from organizations.services import api_key_create
from persons.models import ContactPoint, Person
from tests.admin.conftest import finish_with_data, request_enrichments
from tests.conftest import Tenant
from tests.factories import PersonFactory

# Measured, the session and the user included. A query added per page shows up here; a query
# per row fails the 3-versus-30 comparison.
CHANGELIST_QUERIES = {
    "organizations_organization": 5,
    "organizations_apikey": 6,
    "credits_creditaccount": 5,
    "credits_credittransaction": 7,
    "enrichment_enrichment": 8,
    "persons_person": 6,
}


def add_tenants(make_tenant: Callable[..., Tenant], count: int) -> None:
    """Each tenant brings a member, a key, an account, a grant, a person and a charge."""
    for _ in range(count):
        finish_with_data(request_enrichments(make_tenant(credits=10), 1)[0])


@pytest.mark.parametrize("name", CHANGELIST_QUERIES)
def test_changelist_query_count_does_not_grow_with_rows(
    name: str,
    admin_client: Client,
    make_tenant: Callable[..., Tenant],
    django_assert_max_num_queries: Callable,
) -> None:
    url = reverse(f"admin:{name}_changelist")
    add_tenants(make_tenant, 3)
    admin_client.get(url)  # content types and the session are cached from here on

    with django_assert_max_num_queries(CHANGELIST_QUERIES[name]) as few:
        assert admin_client.get(url).context["cl"].result_count >= 3
    add_tenants(make_tenant, 27)
    with django_assert_max_num_queries(CHANGELIST_QUERIES[name]) as many:
        assert admin_client.get(url).context["cl"].result_count >= 30

    assert len(many) == len(few)


DETAIL_QUERIES = {"organization": 6, "account": 5, "person": 5}


def grow_detail(tenant: Tenant, person: Person, actor: AbstractBaseUser, count: int) -> None:
    """`count` more members with keys, grants by staff, charges, and contact points of `person`."""
    for _ in range(count):
        api_key_create(organization=tenant.organization, username=uuid.uuid4().hex)
        credits_grant(organization=tenant.organization, amount=1, memo="more", actor=actor)
    for enrichment in request_enrichments(tenant, count):
        finish_with_data(enrichment)
    ContactPoint.objects.bulk_create(
        ContactPoint(
            person=person,
            kind="email",
            value=f"{uuid.uuid4().hex}@found.example",
            provider="sandbox",
            found_at=timezone.now(),
        )
        for _ in range(count)
    )


@pytest.mark.parametrize("page", DETAIL_QUERIES)
def test_detail_page_query_count_does_not_grow_with_inline_rows(
    page: str,
    admin_client: Client,
    admin_user: AbstractBaseUser,
    make_tenant: Callable[..., Tenant],
    django_assert_max_num_queries: Callable,
) -> None:
    tenant = make_tenant(credits=1000)
    person = PersonFactory(organization=tenant.organization)
    grow_detail(tenant, person, admin_user, 3)
    url = {
        "organization": reverse(
            "admin:organizations_organization_change", args=[tenant.organization.pk]
        ),
        "account": reverse("admin:credits_creditaccount_change", args=[tenant.organization.pk]),
        "person": reverse("admin:persons_person_change", args=[person.pk]),
    }[page]
    admin_client.get(url)

    with django_assert_max_num_queries(DETAIL_QUERIES[page]) as few:
        assert admin_client.get(url).status_code == 200
    grow_detail(tenant, person, admin_user, 27)
    with django_assert_max_num_queries(DETAIL_QUERIES[page]) as many:
        assert admin_client.get(url).status_code == 200

    assert len(many) == len(few)
