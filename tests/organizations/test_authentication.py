import hashlib

from django.utils import timezone

from organizations.models import ApiKey
from organizations.services import api_key_create, api_key_revoke
from tests.enrichment.test_batch_api import assert_error
from tests.factories import OrganizationFactory

BALANCE_URL = "/api/v1/operations/credits/balance"


def test_api_key_is_stored_only_as_its_hash(db):
    issued = api_key_create(organization=OrganizationFactory(), username="ada", name="ci")

    stored = ApiKey.objects.get(pk=issued.api_key.pk)
    assert stored.key_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    stored_text = " ".join(str(value) for value in ApiKey.objects.values().get().values())
    assert issued.secret not in stored_text
    assert issued.secret.startswith(f"ek_{stored.prefix}_")


def test_bearer_key_resolves_its_organization_and_records_last_use(tenant):
    response = tenant.client.get(BALANCE_URL)

    assert response.status_code == 200
    assert response.json()["organizationId"] == str(tenant.organization.pk)
    api_key = ApiKey.objects.get(organization=tenant.organization)
    assert api_key.last_used_at is not None
    assert timezone.now() - api_key.last_used_at < timezone.timedelta(seconds=10)


def test_revoked_key_is_refused_with_401(tenant):
    api_key_revoke(api_key=ApiKey.objects.get(organization=tenant.organization))

    assert_error(tenant.client.get(BALANCE_URL), 401, "VALIDATION_ERROR")


def test_key_with_right_prefix_but_wrong_secret_is_refused(tenant):
    prefix = tenant.key.split("_")[1]
    tenant.client.credentials(HTTP_AUTHORIZATION=f"Bearer ek_{prefix}_{'x' * 43}")

    assert_error(tenant.client.get(BALANCE_URL), 401, "VALIDATION_ERROR")


def test_missing_key_is_401_with_a_bearer_challenge(tenant):
    tenant.client.credentials()

    response = tenant.client.get(BALANCE_URL)

    assert_error(response, 401, "VALIDATION_ERROR")
    assert response["WWW-Authenticate"] == "Bearer"


def test_key_of_an_inactive_user_is_refused(tenant):
    tenant.user.is_active = False
    tenant.user.save()

    assert_error(tenant.client.get(BALANCE_URL), 401, "VALIDATION_ERROR")
