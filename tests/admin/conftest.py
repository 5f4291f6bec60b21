"""Admin test helpers. Rows are made through the services, so the credit invariants hold unless a
test breaks them on purpose; only timestamps are moved by hand, to age rows."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from enrichment.models import Enrichment, Status
from enrichment.services import enrichment_complete, enrichment_end_unfound
from persons.models import Person
from providers.base import FoundValue
from tests.conftest import Tenant
from tests.enrichment.conftest import request_enrichments as request_enrichments_of
from tests.factories import PersonFactory, UserFactory


@pytest.fixture
def staff_client(db: None) -> Client:
    """Staff without any model permission."""
    client = Client()
    client.force_login(UserFactory(is_staff=True))
    return client


@pytest.fixture
def user_client(db: None) -> Client:
    """Logged in, but not staff."""
    client = Client()
    client.force_login(UserFactory())
    return client


def request_enrichments(tenant: Tenant, count: int, field: str = "emails") -> list[Enrichment]:
    """Pending enrichments of `count` new persons of the tenant."""
    persons = PersonFactory.create_batch(count, organization=tenant.organization)
    return request_enrichments_of(tenant, persons, field)


def finish_with_data(enrichment: Enrichment, *values: str) -> Enrichment:
    found = [
        FoundValue(value=value, type="work", quality="verified")
        for value in values or ("ada@found.example",)
    ]
    finished = enrichment_complete(enrichment=enrichment, values=found, provider="sandbox")
    assert finished is not None
    return finished


def end(enrichment: Enrichment, status: str) -> Enrichment:
    ended = enrichment_end_unfound(enrichment=enrichment, status=status, reason=status)
    assert ended is not None
    return ended


def age(enrichments: list[Enrichment], *, seconds: int, attempts: int = 1) -> None:
    """Makes pending enrichments look queued (and created) `seconds` ago and claimed `attempts`
    times by a worker that is long gone."""
    then = timezone.now() - timedelta(seconds=seconds)
    Enrichment.objects.filter(pk__in=[e.pk for e in enrichments]).update(
        created_at=then, queued_at=then, attempts=attempts
    )


@dataclass
class Mix:
    """One enrichment in each state an admin action must tell apart, all of one tenant."""

    tenant: Tenant
    stuck: Enrichment
    exhausted: Enrichment
    fresh: Enrichment
    finished: Enrichment
    failed: Enrichment


@pytest.fixture
def mix(make_tenant: Callable[..., Tenant]) -> Mix:
    tenant = make_tenant(credits=100)
    stuck, exhausted, fresh, finished, failed = request_enrichments(tenant, 5)
    age([stuck], seconds=3600)
    age([exhausted], seconds=3600, attempts=settings.ENRICHMENT_MAX_ATTEMPTS)
    return Mix(
        tenant=tenant,
        stuck=stuck,
        exhausted=exhausted,
        fresh=fresh,
        finished=finish_with_data(finished),
        failed=end(failed, Status.FAILED),
    )


def person_named(tenant: Tenant, first: str, last: str, domain: str) -> Person:
    return PersonFactory(
        organization=tenant.organization, first_name=first, last_name=last, company_domain=domain
    )
