from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from credits.models import CreditAccount, CreditTransaction
from enrichment.models import Enrichment
from organizations.models import ApiKey
from tests.admin.conftest import finish_with_data, request_enrichments
from tests.conftest import Tenant
from tests.factories import UserFactory

SERVICE_VIEWS = ("grant", "check_ledger")


@pytest.fixture
def pages(make_tenant: Callable[..., Tenant]) -> dict[str, str]:
    """Every admin page this project adds or configures, by a short name."""
    tenant = make_tenant(credits=50)
    enrichment = finish_with_data(request_enrichments(tenant, 1)[0])
    organization_id = tenant.organization.pk
    objects = {
        "organizations_organization": organization_id,
        "organizations_apikey": ApiKey.objects.get(organization=tenant.organization).pk,
        "credits_creditaccount": organization_id,
        "credits_credittransaction": CreditTransaction.objects.first().pk,
        "enrichment_enrichment": enrichment.pk,
        "persons_person": enrichment.person_id,
    }
    urls = {}
    for name, pk in objects.items():
        urls[f"{name}_changelist"] = reverse(f"admin:{name}_changelist")
        urls[f"{name}_change"] = reverse(f"admin:{name}_change", args=[pk])
        urls[f"{name}_history"] = reverse(f"admin:{name}_history", args=[pk])
    for name in ("organizations_organization", "organizations_apikey"):
        urls[f"{name}_add"] = reverse(f"admin:{name}_add")
    for view in SERVICE_VIEWS:
        urls[view] = reverse(f"admin:credits_creditaccount_{view}", args=[organization_id])
    urls["overview"] = reverse("admin:enrichment_overview")
    return urls


def test_anonymous_and_non_staff_users_are_sent_to_the_login_page(
    client: Client, user_client: Client, pages: dict[str, str]
) -> None:
    for visitor in (client, user_client):
        for url in [reverse("admin:index"), *pages.values()]:
            response = visitor.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith(reverse("admin:login")), url


def test_staff_without_permissions_is_refused_every_page(
    staff_client: Client, pages: dict[str, str]
) -> None:
    for url in pages.values():
        assert staff_client.get(url).status_code == 403, url


def test_superuser_sees_every_page(admin_client: Client, pages: dict[str, str]) -> None:
    for url in [reverse("admin:index"), *pages.values()]:
        response = admin_client.get(url, follow=True)
        assert response.status_code == 200, url


def test_index_links_to_the_overview_for_those_who_may_see_it(
    admin_client: Client, staff_client: Client
) -> None:
    overview = reverse("admin:enrichment_overview")
    assert overview in admin_client.get(reverse("admin:index")).content.decode()
    assert overview not in staff_client.get(reverse("admin:index")).content.decode()


@pytest.fixture
def viewer_client(db: None) -> Client:
    """Staff who may view every model but change none: no service-backed change is theirs."""
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = Client()
    client.force_login(viewer)
    return client


def test_viewers_can_look_but_neither_grant_nor_run_actions_that_change_rows(
    viewer_client: Client, pages: dict[str, str]
) -> None:
    assert viewer_client.get(pages["grant"]).status_code == 403
    assert viewer_client.post(pages["grant"], {"amount": 5, "memo": "no"}).status_code == 403
    assert viewer_client.get(pages["organizations_apikey_add"]).status_code == 403
    enrichments = viewer_client.get(pages["enrichment_enrichment_changelist"])
    assert enrichments.status_code == 200
    assert 'value="requeue"' not in enrichments.content.decode()
    assert 'value="cancel"' not in enrichments.content.decode()
    keys = viewer_client.get(pages["organizations_apikey_changelist"]).content.decode()
    assert 'value="revoke"' not in keys
    account = viewer_client.get(pages["credits_creditaccount_change"]).content.decode()
    assert pages["grant"] not in account
    organization = viewer_client.get(pages["organizations_organization_change"]).content.decode()
    assert pages["grant"] not in organization
    assert pages["organizations_apikey_add"] not in organization
    # Checking the ledger changes nothing, so viewers may.
    assert pages["check_ledger"] in account
    assert CreditAccount.objects.get().balance == 49
    assert Enrichment.objects.count() == 1
