"""Reads. Every selector that serves a request takes the organization, so a query that forgets
its tenant cannot be written by accident."""

import hashlib
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from enrichment.models import Enrichment, GlobalEnrichment
from enrichment.providers.base import Subject
from organizations.models import Organization
from persons.identity import linkedin_identity, name_identity
from persons.models import Person


def subject_of(person: Person) -> Subject:
    return Subject(
        first_name=person.first_name,
        last_name=person.last_name,
        company_name=person.company_name,
        company_domain=person.company_domain,
        linkedin_url=person.linkedin_url,
    )


def lookup_key(subject: Subject) -> str:
    """The identity a provider answers for, normalized and hashed: the same person stored by two
    organizations shares one key, and the key reveals nothing about either."""
    if subject.linkedin_url:
        identity = "li:" + linkedin_identity(subject.linkedin_url)
    else:
        identity = "nm:" + name_identity(
            first_name=subject.first_name,
            last_name=subject.last_name,
            company_domain=subject.company_domain,
            company_name=subject.company_name,
        )
    return hashlib.sha256(identity.encode()).hexdigest()


def global_enrichments_fresh(*, keys: Iterable[str], field: str) -> dict[str, GlobalEnrichment]:
    oldest = timezone.now() - timedelta(seconds=settings.ENRICHMENT_GLOBAL_MAX_AGE)
    found = GlobalEnrichment.objects.filter(
        lookup_key__in=list(keys), field=field, updated_at__gte=oldest
    )
    return {global_enrichment.lookup_key: global_enrichment for global_enrichment in found}


def enrichments_of(*, organization: Organization) -> QuerySet[Enrichment]:
    return Enrichment.objects.filter(organization=organization)


def enrichment_get(*, organization: Organization, enrichment_id: uuid.UUID) -> Enrichment | None:
    return enrichments_of(organization=organization).filter(pk=enrichment_id).first()


def enrichment_latest(
    *, organization: Organization, person_id: uuid.UUID, field: str
) -> Enrichment | None:
    return (
        enrichments_of(organization=organization)
        .filter(person_id=person_id, field=field)
        .order_by("-created_at", "-id")
        .first()
    )
