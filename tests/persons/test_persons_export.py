import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.response import Response

from persons.csv_files import EXPORT_CHUNK_SIZE, EXPORT_COLUMNS
from persons.models import ContactPoint, Person
from tests.conftest import Tenant
from tests.factories import ContactPointFactory, PersonFactory
from tests.persons.helpers import assert_error

URL = "/api/v1/persons/export"


def export(tenant: Tenant, query: str = "", **headers: str) -> tuple[Response, bytes]:
    response = tenant.client.get(f"{URL}{query}", **headers)
    assert response.status_code == 200, response.content
    assert response.streaming
    return response, b"".join(response.streaming_content)


def rows(content: bytes, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig")), delimiter=delimiter))


def test_export_streams_the_persons_with_their_found_emails_and_phones(tenant: Tenant) -> None:
    ada = PersonFactory(
        organization=tenant.organization,
        first_name="Zoë",
        last_name="O'Brien, Jr.",
        title="Head of\nthings",
        linkedin_url="https://linkedin.com/in/zoe",
    )
    ContactPointFactory(person=ada, value="zoe@work.example")
    ContactPointFactory(person=ada, value="zoe@home.example", type="personal")
    ContactPointFactory(person=ada, kind=ContactPoint.Kind.PHONE, value="+44 20 7946 0000")
    bare = PersonFactory(organization=tenant.organization)

    response, content = export(tenant)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="persons-')
    assert not content.startswith(b"\xef\xbb\xbf")
    first, second = rows(content)
    assert list(first) == list(EXPORT_COLUMNS)
    assert first["id"] == str(ada.pk)
    assert (first["firstName"], first["lastName"], first["title"]) == (
        "Zoë",
        "O'Brien, Jr.",
        "Head of\nthings",
    )
    assert first["emails"] == "zoe@work.example; zoe@home.example"
    assert first["phones"] == "+44 20 7946 0000"
    assert first["createdAt"].endswith("Z")
    assert (second["id"], second["emails"], second["phones"]) == (str(bare.pk), "", "")


def test_export_holds_only_the_callers_persons(tenant: Tenant, make_tenant) -> None:
    mine = PersonFactory(organization=tenant.organization)
    PersonFactory(organization=make_tenant().organization)

    _, content = export(tenant)

    assert [row["id"] for row in rows(content)] == [str(mine.pk)]


def test_export_of_a_search_holds_the_persons_it_lists(tenant: Tenant) -> None:
    PersonFactory(organization=tenant.organization, company_domain="acme.example")
    wanted = PersonFactory(organization=tenant.organization, company_domain="wanted.example")

    _, content = export(tenant, "?companyDomain=WANTED.example")

    assert [row["id"] for row in rows(content)] == [str(wanted.pk)]


def test_export_for_excel_has_a_bom_and_semicolons(tenant: Tenant) -> None:
    PersonFactory(organization=tenant.organization, company_name="Müller; Söhne")

    _, content = export(tenant, "?separator=semicolon&bom=true")

    assert content.startswith(b"\xef\xbb\xbfid;firstName;")
    assert rows(content, delimiter=";")[0]["companyName"] == "Müller; Söhne"


def test_an_empty_organization_exports_the_header_alone(tenant: Tenant) -> None:
    _, content = export(tenant)

    assert content == (",".join(EXPORT_COLUMNS) + "\r\n").encode()


def test_export_answers_csv_whatever_accept_says_and_errors_in_json(tenant: Tenant) -> None:
    export(tenant, HTTP_ACCEPT="text/csv")
    export(tenant, HTTP_ACCEPT="application/json")

    response = tenant.client.get(f"{URL}?separator=pipe", HTTP_ACCEPT="text/csv")

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "separator" in error["details"]["fields"]


def test_export_needs_an_api_key(tenant: Tenant) -> None:
    tenant.client.credentials()

    assert_error(tenant.client.get(URL), 401, "VALIDATION_ERROR")


def test_export_queries_by_chunk_not_by_person(tenant: Tenant) -> None:
    persons = PersonFactory.create_batch(
        EXPORT_CHUNK_SIZE * 2 + 1, organization=tenant.organization
    )
    ContactPointFactory.create_batch(3, person=persons[-1])
    tenant.client.get("/api/v1/operations/credits/balance")  # the key's last_used_at is fresh

    with CaptureQueriesContext(connection) as captured:
        response = tenant.client.get(URL)
        # Streamed: the view has only authenticated; persons are read while the body is sent.
        assert len(captured) == 1 and response.streaming
        blocks = list(response.streaming_content)
    content = b"".join(blocks)

    assert len(rows(content)) == len(persons)
    assert rows(content)[-1]["emails"].count("@") == 3
    sql = [query["sql"] for query in captured.captured_queries]
    # The API key, the persons through one server-side cursor, the contact points per chunk.
    assert len(sql) == 1 + 1 + 3, sql
    assert sum("persons_contactpoint" in s for s in sql) == 3
    assert len(blocks) > 1  # sent as it is written, in blocks


@pytest.mark.parametrize("query", ["", "?separator=semicolon&bom=true", "?separator=tab"])
def test_an_export_imported_again_leaves_every_person_unchanged(tenant: Tenant, query: str) -> None:
    PersonFactory.create_batch(5, organization=tenant.organization)
    PersonFactory(
        organization=tenant.organization,
        first_name="José",
        last_name="Núñez",
        company_name="Ibérica, S.A.",
        company_domain="",
        title='Says "hola"\r\nand more',
    )
    PersonFactory(
        organization=tenant.organization,
        first_name="",
        last_name="",
        company_name="",
        company_domain="",
        linkedin_url="https://www.linkedin.com/in/only-a-url/",
    )
    ContactPointFactory(person=Person.objects.first())
    before = list(Person.objects.order_by("pk").values())
    _, content = export(tenant, query)

    response = tenant.client.post("/api/v1/persons/import", content, content_type="text/csv")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "rows": 7,
        "created": 0,
        "updated": 0,
        "unchanged": 7,
        "ignoredColumns": ["id", "emails", "phones", "createdAt", "updatedAt"],
    }
    assert list(Person.objects.order_by("pk").values()) == before
