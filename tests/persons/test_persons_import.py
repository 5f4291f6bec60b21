import time
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django import Settings
from rest_framework.response import Response
from rest_framework.test import APIClient

from enrichment_project.errors import ValidationFailed
from persons.csv_files import csv_file_read
from persons.models import Person
from persons.services import IDENTITY_RULE
from tests.concurrency import run_concurrently
from tests.conftest import Tenant
from tests.factories import PersonFactory
from tests.persons.helpers import assert_error, stored_state

URL = "/api/v1/persons/import"
HEADER = "firstName,lastName,companyName,companyDomain,linkedinUrl,title\r\n"


def post_csv(tenant: Tenant, body: str | bytes, content_type: str = "text/csv") -> Response:
    content = body.encode() if isinstance(body, str) else body
    return tenant.client.post(URL, content, content_type=content_type)


def imported(response: Response) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    return response.json()


def rows_of(count: int, start: int = 0) -> str:
    return "".join(
        f"First{i},Last{i},Company {i},company{i}.example,,Engineer\r\n"
        for i in range(start, start + count)
    )


def test_import_creates_persons_and_answers_the_counts(tenant: Tenant) -> None:
    body = HEADER + rows_of(2) + ",,,,https://www.linkedin.com/in/grace,\r\n"

    out = imported(post_csv(tenant, body))

    assert out == {"rows": 3, "created": 3, "updated": 0, "unchanged": 0, "ignoredColumns": []}
    stored = Person.objects.filter(organization=tenant.organization).order_by("created_at")
    assert [(p.first_name, p.company_domain, p.linkedin_url) for p in stored] == [
        ("First0", "company0.example", ""),
        ("First1", "company1.example", ""),
        ("", "", "https://www.linkedin.com/in/grace"),
    ]


@pytest.mark.parametrize(
    "header",
    [
        "First Name,Last Name,Company,Website,LinkedIn,Job Title",
        "first_name,last_name,company_name,company_domain,linkedin_url,title",
        "FIRSTNAME,LastName,Organization,Domain,LinkedIn Profile URL,Position",
        "given-name,surname,Account Name,Company Website,Person Linkedin Url,TITLE",
    ],
)
def test_import_recognises_the_header_spellings_of_crm_exports(tenant: Tenant, header: str) -> None:
    body = f"{header}\r\nAda,Lovelace,Engines,https://www.Engines.example/about,linkedin.com/in/ada,CTO\r\n"

    imported(post_csv(tenant, body))

    person = Person.objects.get()
    assert (person.first_name, person.last_name, person.company_name) == (
        "Ada",
        "Lovelace",
        "Engines",
    )
    # A website is kept as its bare domain, a LinkedIn URL without scheme gets https.
    assert person.company_domain == "engines.example"
    assert (person.linkedin_url, person.title) == ("https://linkedin.com/in/ada", "CTO")


def test_import_reads_an_excel_file_with_bom_semicolons_quotes_and_non_ascii_names(
    tenant: Tenant,
) -> None:
    body = (
        "\ufeffVorname;Nachname;First Name;Last Name;Company;Website;Title\r\n"
        'x;y;"Zoë";"Ørsted-Łukasiewicz";"Müller, Söhne & Co.";müller.example;"Head of\r\n'
        'R&D; Europe, ""Nord"""\r\n'
        ';;José;Núñez;"Ibérica, S.A.";iberica.example;\r\n'
    ).encode("utf-8")

    out = imported(post_csv(tenant, body))

    assert (out["rows"], out["created"], out["ignoredColumns"]) == (2, 2, ["Vorname", "Nachname"])
    first, second = Person.objects.order_by("created_at")
    assert (first.first_name, first.last_name) == ("Zoë", "Ørsted-Łukasiewicz")
    assert first.company_name == "Müller, Söhne & Co."
    assert first.company_domain == "müller.example"
    assert first.title == 'Head of\r\nR&D; Europe, "Nord"'
    assert (second.first_name, second.last_name, second.company_name) == (
        "José",
        "Núñez",
        "Ibérica, S.A.",
    )


def test_import_reads_a_declared_charset(tenant: Tenant) -> None:
    body = (HEADER + "Zoë,Ørsted,Acme,acme.example,,\r\n").encode("cp1252")

    imported(post_csv(tenant, body, content_type="text/csv; charset=windows-1252"))

    assert Person.objects.get().first_name == "Zoë"


def test_import_updates_the_person_with_the_same_linkedin_url_or_name_and_domain(
    tenant: Tenant,
) -> None:
    org = tenant.organization
    by_linkedin = PersonFactory(
        organization=org, linkedin_url="https://www.linkedin.com/in/ada", title="Mathematician"
    )
    by_name = PersonFactory(
        organization=org, first_name="Grace", last_name="Hopper", company_domain="navy.example"
    )
    same = PersonFactory(organization=org, company_name="", title="")
    body = (
        HEADER
        # Any letter case, scheme or trailing slash is the same LinkedIn URL.
        + "Augusta,,,,HTTP://WWW.LINKEDIN.COM/in/Ada/,Countess\r\n"
        + "grace,HOPPER,,NAVY.example,,Rear Admiral\r\n"
        # Matched whatever the case; its cells hold what is stored, so nothing is written.
        + f"{same.first_name},{same.last_name},,{same.company_domain.upper()},,\r\n"
    )
    before = dict(Person.objects.values_list("pk", "updated_at"))

    out = imported(post_csv(tenant, body))

    assert (out["created"], out["updated"], out["unchanged"]) == (0, 2, 1)
    by_linkedin.refresh_from_db()
    # Filled cells are written, empty ones keep what is stored.
    assert (by_linkedin.first_name, by_linkedin.last_name, by_linkedin.title) == (
        "Augusta",
        by_linkedin.last_name,
        "Countess",
    )
    assert by_linkedin.linkedin_url == "HTTP://WWW.LINKEDIN.COM/in/Ada/"
    by_name.refresh_from_db()
    assert (by_name.first_name, by_name.company_domain, by_name.title) == (
        "grace",
        "navy.example",
        "Rear Admiral",
    )
    assert Person.objects.get(pk=same.pk).updated_at == before[same.pk]
    assert Person.objects.count() == 3


def test_import_matches_non_ascii_names_in_any_letter_case(tenant: Tenant) -> None:
    stored = PersonFactory(
        organization=tenant.organization,
        first_name="Zoë",
        last_name="Ørsted",
        company_domain="acme.example",
        title="",
    )
    body = "\r\n\r\n" + HEADER + "ZOË,øRSTED,,acme.example,,Ingeniør\r\n"

    out = imported(post_csv(tenant, body))

    assert (out["created"], out["updated"]) == (0, 1)
    stored.refresh_from_db()
    assert (stored.first_name, stored.title) == ("ZOË", "Ingeniør")


def test_import_does_not_merge_a_row_into_a_person_with_another_linkedin_url(
    tenant: Tenant,
) -> None:
    stored = PersonFactory(
        organization=tenant.organization,
        first_name="Ada",
        last_name="Lovelace",
        company_domain="engines.example",
        linkedin_url="https://linkedin.com/in/ada-1",
    )

    out = imported(
        post_csv(tenant, HEADER + "Ada,Lovelace,,engines.example,https://linkedin.com/in/ada-2,\n")
    )

    assert out["created"] == 1
    assert Person.objects.get(pk=stored.pk).linkedin_url == "https://linkedin.com/in/ada-1"


def test_import_never_matches_another_organizations_person(
    tenant: Tenant, make_tenant: Any
) -> None:
    other = make_tenant()
    theirs = PersonFactory(organization=other.organization, linkedin_url="https://l.example/a")
    before = Person.objects.filter(pk=theirs.pk).values().get()

    out = imported(post_csv(tenant, HEADER + "New,Name,,,https://l.example/a,\r\n"))

    assert out["created"] == 1
    assert Person.objects.filter(pk=theirs.pk).values().get() == before
    assert Person.objects.filter(organization=tenant.organization).count() == 1


def test_import_is_all_or_nothing_and_lists_rejected_rows_by_line(tenant: Tenant) -> None:
    PersonFactory(organization=tenant.organization)
    body = (
        HEADER  # line 1
        + rows_of(1)  # line 2: valid
        + 'Ada,Lovelace,"Engines\r\nLtd",engines example,,\r\n'  # lines 3-4
        + "Ada,,,,,\r\n"  # line 5: not identifiable
        + rows_of(1, start=5)  # line 6: valid
        + "a,b,c,d.example,,title,extra\r\n"  # line 7: more cells than the header
        + ",,,,not a url,\r\n"  # line 8
    )
    before = stored_state()

    error = assert_error(post_csv(tenant, body), 400, "VALIDATION_ERROR")

    assert stored_state() == before
    assert error["message"].startswith("4 of 6 rows were rejected")
    rejected = error["details"]["rejected"]
    assert [row["line"] for row in rejected] == [3, 5, 7, 8]
    assert rejected[0]["reason"].startswith("companyDomain: Enter a domain")
    assert rejected[1] == {"line": 5, "reason": IDENTITY_RULE, "fields": rejected[1]["fields"]}
    assert rejected[2]["reason"] == "7 cells where the header names 6 columns."
    assert rejected[3]["fields"] == {"linkedinUrl": ["Enter a valid http(s) URL."]}
    assert error["details"]["rows"] == 6


def test_import_rejects_two_rows_of_one_person(tenant: Tenant) -> None:
    stored = PersonFactory(organization=tenant.organization, linkedin_url="https://l.example/x")
    body = (
        HEADER
        + "Ada,Lovelace,,engines.example,,\r\n"
        + "ADA,LOVELACE,,Engines.example,,CTO\r\n"  # the same as line 2
        + ",,,,https://l.example/x,\r\n"
        + f"{stored.first_name},{stored.last_name},,{stored.company_domain},,\r\n"  # line 4's
    )
    before = stored_state()

    error = assert_error(post_csv(tenant, body), 400, "VALIDATION_ERROR")

    assert stored_state() == before
    assert [(row["line"], row["reason"]) for row in error["details"]["rejected"]] == [
        (3, "The same person as line 2."),
        (5, "The same person as line 4."),
    ]


def test_blank_lines_are_skipped_and_line_numbers_stay_those_of_the_file(tenant: Tenant) -> None:
    body = HEADER + "\r\n" + rows_of(1) + ",,,,,\r\n\r\n" + "Ada,,,,,\r\n"

    error = assert_error(post_csv(tenant, body), 400, "VALIDATION_ERROR")

    assert [row["line"] for row in error["details"]["rejected"]] == [6]
    assert error["details"]["rows"] == 2


def test_a_header_only_file_imports_nothing(tenant: Tenant) -> None:
    out = imported(post_csv(tenant, HEADER))

    assert out == {"rows": 0, "created": 0, "updated": 0, "unchanged": 0, "ignoredColumns": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "The file is empty"),
        (b"\xef\xbb\xbf\r\n\r\n  \r\n", "The file is empty"),
        (b'""\r\n""\r\n', "no header line"),
        (b"firstName,lastName\r\nJos\xe9,Mart\xednez\r\n", "not utf-8 text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not utf-8 text"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00", "NUL characters"),
        (b'firstName,lastName\r\n"Ada,Lovelace\r\n', "Line 2 is not valid CSV"),
        (b'firstName,lastName\r\n"Ada"x,Lovelace\r\n', "Line 2 is not valid CSV"),
        (b"name,email\r\nAda,ada@example.com\r\n", "names no known column"),
        (b"company,Company Name\r\nAcme,Acme\r\n", "both give companyName"),
    ],
)
def test_an_unreadable_file_is_a_clear_400_that_changes_nothing(
    tenant: Tenant, body: bytes, message: str
) -> None:
    PersonFactory(organization=tenant.organization)
    before = stored_state()

    error = assert_error(post_csv(tenant, body), 400, "VALIDATION_ERROR")

    assert message.lower() in error["message"].lower()
    assert stored_state() == before


def test_more_than_10000_rows_are_refused(tenant: Tenant) -> None:
    error = assert_error(post_csv(tenant, HEADER + rows_of(10_001)), 400, "VALIDATION_ERROR")

    assert error["details"] == {"maxRows": 10_000}
    assert not Person.objects.exists()


@pytest.mark.parametrize(
    "content_type", ["application/json", "multipart/form-data; boundary=x", "text/plain"]
)
def test_a_body_that_is_not_text_csv_is_415(tenant: Tenant, content_type: str) -> None:
    response = post_csv(tenant, HEADER + rows_of(1), content_type=content_type)

    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert not Person.objects.exists()


def test_an_unknown_charset_is_a_400(tenant: Tenant) -> None:
    response = post_csv(tenant, HEADER + rows_of(1), content_type="text/csv; charset=bz2_codec")

    assert_error(response, 400, "VALIDATION_ERROR")


def test_the_import_has_its_own_size_limit_with_413_beyond_it(
    tenant: Tenant, settings: Settings
) -> None:
    body = HEADER + rows_of(100)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.PERSONS_IMPORT_MAX_BYTES = len(body)

    assert imported(post_csv(tenant, body))["created"] == 100

    settings.PERSONS_IMPORT_MAX_BYTES = len(body) - 1
    error = assert_error(post_csv(tenant, body), 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"maxBytes": len(body) - 1}


def test_the_import_needs_an_api_key(tenant: Tenant) -> None:
    tenant.client.credentials()

    assert_error(post_csv(tenant, HEADER + rows_of(1)), 401, "VALIDATION_ERROR")
    assert not Person.objects.exists()


def timed_import(tenant: Tenant, body: str) -> tuple[dict[str, Any], list[str], float]:
    """The answer, the SQL statements sent (the test's own SAVEPOINT around the durable block
    left out: in production it is BEGIN and COMMIT) and the seconds it took."""
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        out = imported(post_csv(tenant, body))
        seconds = time.perf_counter() - started
    sql = [query["sql"] for query in captured.captured_queries]
    return out, [s for s in sql if "SAVEPOINT" not in s], seconds


def test_import_statements_are_the_same_for_10_and_10000_rows(tenant: Tenant) -> None:
    post_csv(tenant, HEADER + rows_of(1, start=99_999))  # the key's last_used_at is now fresh

    small, small_sql, _ = timed_import(tenant, HEADER + rows_of(10))
    large, large_sql, seconds = timed_import(tenant, HEADER + rows_of(10_000, start=10))
    changed = HEADER + rows_of(10_000, start=10).replace("Engineer", "Manager")
    updated, updated_sql, update_seconds = timed_import(tenant, changed)
    unchanged, unchanged_sql, _ = timed_import(tenant, changed)

    assert (small["created"], large["created"], updated["updated"]) == (10, 10_000, 10_000)
    assert Person.objects.filter(title="Manager").count() == 10_000
    # The API key, then the organization lock, the candidates and one INSERT ... ON CONFLICT.
    assert len(small_sql) == len(large_sql) == len(updated_sql) == 4
    assert [sql.split()[0] for sql in large_sql] == ["SELECT", "SELECT", "SELECT", "INSERT"]
    assert "FOR NO KEY UPDATE" in large_sql[1] and "FOR NO KEY UPDATE" in large_sql[2]
    assert "ON CONFLICT" in updated_sql[3]
    # Nothing to write: no upsert at all.
    assert unchanged["unchanged"] == 10_000 and len(unchanged_sql) == 3
    print(f"statements 10 rows={len(small_sql)} 10,000 rows={len(large_sql)}")
    print(f"10,000 new rows: {seconds:.2f} s; 10,000 updated rows: {update_seconds:.2f} s")


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_one_file_at_once_create_each_person_once(
    make_tenant: Any,
) -> None:
    tenant = make_tenant()
    body = (HEADER + rows_of(300)).encode()

    def upload() -> Response:
        client = APIClient()  # one per thread
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant.key}")
        return client.post(URL, body, content_type="text/csv")

    first, second = run_concurrently([upload, upload])

    counts = sorted((imported(r)["created"], imported(r)["unchanged"]) for r in (first, second))
    assert counts == [(0, 300), (300, 0)]
    assert Person.objects.filter(organization=tenant.organization).count() == 300


CSV_ALPHABET = st.sampled_from(
    [
        *[",", ";", "\t", '"', "\r", "\n", "\r\n", " ", "\ufeff", "\x00", "é", "a"],
        *["First Name", "linkedin", "website", "https://", "x.example", "Last Name", "company"],
    ]
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(content=st.binary(max_size=300) | st.lists(CSV_ALPHABET, max_size=60).map("".join))
def test_reading_any_upload_gives_rows_or_a_validation_error(content: bytes | str) -> None:
    data = content.encode() if isinstance(content, str) else content
    try:
        file = csv_file_read(data)
    except ValidationFailed as error:
        assert error.message
    else:
        assert all(isinstance(line, int) and line >= 2 for line, _ in file.rows)


def test_an_import_above_the_json_limit_is_kept_and_replayed_under_its_idempotency_key(
    tenant: Tenant, settings: Settings
) -> None:
    body = (HEADER + rows_of(100)).encode()
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.PERSONS_IMPORT_MAX_BYTES = len(body)

    def upload() -> Response:
        return tenant.client.post(
            URL, body, content_type="text/csv", HTTP_IDEMPOTENCY_KEY="import-1"
        )

    first, replay = upload(), upload()

    assert imported(first)["created"] == 100
    assert replay["Idempotent-Replayed"] == "true" and replay.content == first.content
    assert Person.objects.filter(organization=tenant.organization).count() == 100
