from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from rest_framework.test import APIClient

from credits.services import credits_grant
from organizations.models import Organization
from organizations.services import api_key_create
from providers.circuit import circuit_views_forget
from tests.factories import OrganizationFactory


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list
) -> None:
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        raise pytest.UsageError(
            "The suite runs against PostgreSQL: use `make test` or set DATABASE_URL (and "
            "CELERY_BROKER_URL to Redis)."
        )


@dataclass
class Tenant:
    """An organization with an API key and a client that sends it."""

    organization: Organization
    user: AbstractBaseUser
    client: APIClient
    key: str


@pytest.fixture
def make_tenant(db: None) -> Callable[..., Tenant]:
    def make(credits: int = 0, name: str | None = None) -> Tenant:
        organization = OrganizationFactory(**({"name": name} if name else {}))
        issued = api_key_create(organization=organization, username=f"user-{organization.pk}")
        if credits:
            credits_grant(organization=organization, amount=credits, memo="test grant")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
        return Tenant(
            organization=organization, user=issued.api_key.user, client=client, key=issued.secret
        )

    return make


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant(credits=1000)


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> None:
    """Throttle counters live in the cache; each test starts with none, and with no process view
    of a circuit read by an earlier test."""
    cache.clear()
    circuit_views_forget()
