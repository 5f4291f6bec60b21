import pytest
from rest_framework.settings import api_settings

from enrichment_project.errors import NotFound, ValidationFailed
from persons.models import Person
from persons.services import IDENTITY_RULE, person_update
from tests.factories import PersonFactory
from tests.persons.helpers import stored_state


@pytest.mark.django_db
def test_person_update_checks_identity_against_the_row_as_stored_not_as_read() -> None:
    person = PersonFactory(linkedin_url="https://www.linkedin.com/in/ada")
    stale = Person.objects.get(pk=person.pk)
    # A concurrent update removed the LinkedIn URL after `stale` was read and validated.
    Person.objects.filter(pk=person.pk).update(linkedin_url="")
    before = stored_state()

    with pytest.raises(ValidationFailed) as raised:
        person_update(person=stale, changes={"last_name": ""})

    assert raised.value.details == {"fields": {api_settings.NON_FIELD_ERRORS_KEY: [IDENTITY_RULE]}}
    assert stored_state() == before


@pytest.mark.django_db
def test_person_update_returns_the_row_as_stored_with_the_changes() -> None:
    person = PersonFactory(title="Engineer")
    stale = Person.objects.get(pk=person.pk)
    Person.objects.filter(pk=person.pk).update(company_name="Renamed")

    updated = person_update(person=stale, changes={"title": "CTO"})

    assert (updated.title, updated.company_name) == ("CTO", "Renamed")
    person.refresh_from_db()
    assert (person.title, person.company_name) == ("CTO", "Renamed")


@pytest.mark.django_db
def test_person_update_of_a_person_deleted_meanwhile_is_not_found() -> None:
    person = PersonFactory()
    Person.objects.filter(pk=person.pk).delete()

    with pytest.raises(NotFound):
        person_update(person=person, changes={"title": "CTO"})
