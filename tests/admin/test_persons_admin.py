from collections.abc import Callable

from django.test import Client
from django.urls import reverse

from persons.models import Person
from tests.admin.conftest import finish_with_data, person_named, request_enrichments
from tests.conftest import Tenant


def test_person_page_shows_found_contact_points_with_their_provider_and_is_read_only(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant(credits=10)
    enrichment = finish_with_data(request_enrichments(tenant, 1)[0], "ada@found.example")
    url = reverse("admin:persons_person_change", args=[enrichment.person_id])

    page = admin_client.get(url).content.decode()
    response = admin_client.post(url, {"first_name": "Changed"})

    assert "ada@found.example" in page
    assert "sandbox" in page
    enrichments = reverse("admin:enrichment_enrichment_changelist")
    assert f"{enrichments}?person__id__exact={enrichment.person_id}" in page
    assert response.status_code == 403
    assert Person.objects.get(pk=enrichment.person_id).first_name != "Changed"
    assert admin_client.get(url.replace("/change/", "/delete/")).status_code == 403


def test_person_list_searches_by_name_domain_and_id_and_filters_by_organization(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant, other = make_tenant(), make_tenant()
    ada = person_named(tenant, "Ada", "Lovelace", "engines.example")
    grace = person_named(other, "Grace", "Hopper", "navy.example")
    changelist = reverse("admin:persons_person_changelist")

    def shown(**params: str) -> set[Person]:
        response = admin_client.get(changelist, params)
        assert response.status_code == 200
        return set(response.context["cl"].result_list)

    assert shown(q="ada lovelace") == {ada}
    assert shown(q="navy.example") == {grace}
    assert shown(q=str(grace.pk)) == {grace}
    assert shown(organization__id__exact=str(tenant.organization.pk)) == {ada}
