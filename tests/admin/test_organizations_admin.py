from collections.abc import Callable
from datetime import timedelta

from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from organizations.models import ApiKey, Organization
from organizations.services import api_key_create, hash_api_key
from tests.conftest import Tenant


def test_organization_page_shows_members_keys_and_credits_but_no_key_hash(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant(credits=75)
    api_key = ApiKey.objects.get(organization=tenant.organization)

    page = admin_client.get(
        reverse("admin:organizations_organization_change", args=[tenant.organization.pk])
    ).content.decode()

    assert tenant.user.username in page
    assert api_key.prefix in page
    assert api_key.key_hash not in page
    assert "75 available" in page
    assert reverse("admin:credits_creditaccount_change", args=[tenant.organization.pk]) in page
    assert reverse("admin:credits_creditaccount_grant", args=[tenant.organization.pk]) in page


def test_organization_is_not_editable_from_its_page(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant()
    url = reverse("admin:organizations_organization_change", args=[tenant.organization.pk])

    response = admin_client.post(url, {"name": "Renamed"})

    assert response.status_code == 403
    tenant.organization.refresh_from_db()
    assert tenant.organization.name != "Renamed"


def test_organization_is_added_through_the_service(admin_client: Client) -> None:
    add = reverse("admin:organizations_organization_add")

    response = admin_client.post(add, {"name": "  Initech  "})

    organization = Organization.objects.get()
    assert organization.name == "Initech"
    assert response["Location"] == reverse(
        "admin:organizations_organization_change", args=[organization.pk]
    )
    duplicate = admin_client.post(add, {"name": "Initech"})
    assert duplicate.status_code == 200
    assert "already exists" in duplicate.content.decode()
    assert Organization.objects.count() == 1


def test_issued_key_secret_is_shown_once_and_only_its_hash_is_stored(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant()
    add = reverse("admin:organizations_apikey_add")
    assert (
        str(tenant.organization.pk)
        in admin_client.get(add, {"organization": tenant.organization.pk}).content.decode()
    )

    response = admin_client.post(
        add, {"organization": tenant.organization.pk, "username": "carol", "name": "CRM sync"}
    )

    api_key = ApiKey.objects.get(user__username="carol")
    assert api_key.name == "CRM sync"
    assert api_key.user.memberships.get().organization == tenant.organization
    assert response["Location"] == reverse("admin:organizations_apikey_change", args=[api_key.pk])
    shown = [str(message) for message in get_messages(response.wsgi_request)]
    secret = shown[0].rsplit(" ", 1)[-1]
    assert secret.startswith(f"ek_{api_key.prefix}_")
    assert api_key.key_hash == hash_api_key(secret)
    assert not LogEntry.objects.filter(change_message__contains=secret).exists()
    assert not LogEntry.objects.filter(object_repr__contains=secret).exists()
    first_view = admin_client.get(response["Location"]).content.decode()
    assert secret in first_view
    assert secret not in admin_client.get(response["Location"]).content.decode()


def test_revoke_action_revokes_only_the_selected_active_keys(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant()
    active = ApiKey.objects.get(organization=tenant.organization)
    untouched = api_key_create(organization=tenant.organization, username="bob").api_key
    already = api_key_create(organization=tenant.organization, username="eve").api_key
    revoked_at = timezone.now() - timedelta(days=3)
    ApiKey.objects.filter(pk=already.pk).update(revoked_at=revoked_at)

    response = admin_client.post(
        reverse("admin:organizations_apikey_changelist"),
        {"action": "revoke", "_selected_action": [active.pk, already.pk]},
        follow=True,
    )

    assert "Revoked 1 API key(s). 1 were already revoked" in response.content.decode()
    active.refresh_from_db()
    untouched.refresh_from_db()
    already.refresh_from_db()
    assert active.revoked_at is not None
    assert untouched.revoked_at is None
    assert already.revoked_at == revoked_at
    assert LogEntry.objects.filter(object_id=str(active.pk), change_message="Revoked").exists()
    revoked_client = tenant.client.get("/api/v1/enrichments")
    assert revoked_client.status_code == 401
