from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework.settings import api_settings

from enrichment_project.errors import NotFound, ValidationFailed
from organizations.models import Organization
from persons.models import ContactPoint, Person

IDENTITY_RULE = (
    "A person needs linkedinUrl, or firstName, lastName and companyDomain or companyName."
)


def person_is_identifiable(person: Person) -> bool:
    """The rule of the `person_is_identifiable` check constraint, checked before the database
    would refuse the row."""
    return bool(
        person.linkedin_url
        or (
            person.first_name
            and person.last_name
            and (person.company_domain or person.company_name)
        )
    )


def persons_create(
    *, organization: Organization, items: Sequence[Mapping[str, Any]]
) -> list[Person]:
    """Creates validated persons (model field names to values) in the given order with one
    INSERT, so either all of them exist afterwards or none."""
    return Person.objects.bulk_create([Person(organization=organization, **item) for item in items])


def person_update(*, person: Person, changes: Mapping[str, Any]) -> Person:
    """Applies validated changes and returns the person as stored."""
    with transaction.atomic(durable=True):
        # The lock makes the identity check see the latest committed values, so two concurrent
        # updates can't each remove half of the identity. NO KEY: enrichments referencing the
        # person may still be inserted meanwhile.
        locked = Person.objects.select_for_update(no_key=True).filter(pk=person.pk).first()
        if locked is None:
            raise NotFound("No such person.")
        for name, value in changes.items():
            setattr(locked, name, value)
        if not person_is_identifiable(locked):
            raise ValidationFailed(
                IDENTITY_RULE, {"fields": {api_settings.NON_FIELD_ERRORS_KEY: [IDENTITY_RULE]}}
            )
        if changes:
            locked.save(update_fields=[*changes, "updated_at"])
    return locked


def person_delete(*, person: Person) -> None:
    """Deletes the person with its contact points and enrichments. The enrichments' on_delete
    releases the reservations of pending ones; the atomic block keeps that release and the
    deletion together. Ledger entries stay: they name the enrichment only by reference_id."""
    with transaction.atomic(durable=True):
        person.delete()


def contact_points_save(*, contact_points: Sequence[ContactPoint]) -> None:
    """Saves found values on their persons in one statement, stamped as found now; a value a
    person already has is kept as it is (unique per person, kind and value)."""
    now = timezone.now()
    for contact_point in contact_points:
        contact_point.found_at = now
    ContactPoint.objects.bulk_create(contact_points, ignore_conflicts=True)
