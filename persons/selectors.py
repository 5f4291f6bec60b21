"""Reads. Every selector takes the organization, so a query that forgets its tenant cannot be
written by accident."""

import uuid
from functools import reduce
from operator import or_

from django.db.models import Q, QuerySet

from organizations.models import Organization
from persons.models import Person

SEARCHED_FIELDS = (
    "first_name",
    "last_name",
    "company_name",
    "company_domain",
    "linkedin_url",
    "title",
)


def persons_of(*, organization: Organization) -> QuerySet[Person]:
    return Person.objects.filter(organization=organization)


def persons_list(
    *, organization: Organization, search: str = "", company_domain: str = ""
) -> QuerySet[Person]:
    """Every word of `search` must appear in one of SEARCHED_FIELDS, so "ada acme" finds Ada
    Lovelace of Acme."""
    persons = persons_of(organization=organization)
    for word in search.split():
        persons = persons.filter(
            reduce(or_, (Q(**{f"{name}__icontains": word}) for name in SEARCHED_FIELDS))
        )
    if company_domain:
        persons = persons.filter(company_domain=company_domain.strip().lower())
    return persons


def person_get(*, organization: Organization, person_id: uuid.UUID) -> Person | None:
    return persons_of(organization=organization).filter(pk=person_id).first()


def persons_for_export(
    *, organization: Organization, search: str = "", company_domain: str = ""
) -> QuerySet[Person]:
    """The persons a search lists, oldest first, with their contact points: iterated in chunks,
    each chunk costs one query for its contact points."""
    return (
        persons_list(organization=organization, search=search, company_domain=company_domain)
        .order_by("created_at", "id")
        .prefetch_related("contact_points")
    )
