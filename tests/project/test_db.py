import uuid

import pytest
from django.db import DataError, connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from enrichment.models import Enrichment
from enrichment_project.db import AnyOf, rows_alike, rows_insert_alike
from persons.models import Person
from tests.factories import PersonFactory


def columns(enrichment: Enrichment, leaving_out: set[str] = frozenset()) -> dict[str, object]:
    return {
        field.attname: getattr(enrichment, field.attname)
        for field in Enrichment._meta.concrete_fields
        if field.attname not in leaving_out
    }


def test_rows_inserted_alike_hold_what_save_writes_and_come_back_as_stored(tenant):
    first, *others = PersonFactory.create_batch(3, organization=tenant.organization)
    saved = Enrichment.objects.create(
        organization=tenant.organization, person=first, field="emails", price=3
    )
    template = Enrichment(organization=tenant.organization, field="emails", price=3)
    ids = [uuid.uuid4() for _ in others]

    varying = {"id": ids, "person": [p.pk for p in others]}

    with CaptureQueriesContext(connection) as captured:
        rows_insert_alike(template, varying)
    returned = rows_alike(template, varying)

    assert len(captured) == 1
    stored = Enrichment.objects.in_bulk(ids)
    assert [columns(row) for row in returned] == [columns(stored[pk]) for pk in ids]
    assert [row.person_id for row in returned] == [p.pk for p in others]
    assert not any(row._state.adding for row in returned)
    # Apart from its keys and the times it was written, a row is what save() writes.
    per_row = {"id", "person_id", "queued_at", "created_at", "updated_at"}
    saved.refresh_from_db()
    assert all(columns(row, per_row) == columns(saved, per_row) for row in stored.values())
    assert stored[ids[0]].created_at >= saved.created_at


def test_a_shared_value_too_long_for_its_column_is_refused_not_cut(tenant):
    person = PersonFactory(organization=tenant.organization)
    template = Enrichment(organization=tenant.organization, field="e" * 11, price=1)

    with pytest.raises(DataError), transaction.atomic():
        rows_insert_alike(template, {"id": [uuid.uuid4()], "person": [person.pk]})
    assert not Enrichment.objects.exists()


def test_any_of_finds_what_in_finds_with_one_parameter(tenant, make_tenant):
    mine = PersonFactory.create_batch(3, organization=tenant.organization)
    theirs = PersonFactory(organization=make_tenant().organization)
    wanted = [mine[0].pk, mine[2].pk, theirs.pk, uuid.uuid4()]

    found = Person.objects.filter(AnyOf(F("pk"), wanted))

    assert set(found) == set(Person.objects.filter(pk__in=wanted)) == {mine[0], mine[2], theirs}
    sql, params = found.query.sql_with_params()
    assert "= ANY(%s)" in sql and params == (wanted,)
