import io
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from persons.models import Person
from tests.commands import run_command, run_json
from tests.conftest import Tenant
from tests.factories import ContactPointFactory, PersonFactory
from tests.persons.helpers import stored_state

HEADER = "First Name;Last Name;Company;Website;LinkedIn;Job Title;Email\r\n"


class Terminal(io.StringIO):
    """Standard error as a terminal, where the progress bar shows."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "persons.csv"
    path.write_bytes(
        (
            "\ufeff"
            + HEADER
            + "Zoë;Ørsted;Acme;https://acme.example;;CTO;zoe@acme.example\r\n"
            + "Ada;Lovelace;Engines;engines.example;;;\r\n"
        ).encode()
    )
    return path


def test_import_persons_upserts_the_file_into_the_organization_named(
    tenant: Tenant, csv_file: Path
) -> None:
    existing = PersonFactory(
        organization=tenant.organization,
        first_name="Ada",
        last_name="Lovelace",
        company_domain="engines.example",
    )

    out = run_json("import_persons", str(csv_file), "--org", tenant.organization.name)

    assert out == {
        "organizationId": str(tenant.organization.pk),
        "rows": 2,
        "created": 1,
        "updated": 1,
        "unchanged": 0,
        "ignoredColumns": ["Email"],
    }
    zoe = Person.objects.get(first_name="Zoë")
    assert (zoe.organization, zoe.company_domain) == (tenant.organization, "acme.example")
    existing.refresh_from_db()
    assert existing.company_name == "Engines"


def test_import_persons_prints_a_summary_and_accepts_the_organization_id(
    tenant: Tenant, csv_file: Path
) -> None:
    out = run_command("import_persons", str(csv_file), "--org", str(tenant.organization.pk))

    assert out.strip() == (
        f"Imported 2 rows into {tenant.organization.name!r}: 2 created, 0 updated, 0 unchanged. "
        "Ignored columns: Email."
    )


def test_import_persons_shows_a_progress_bar_on_a_terminal(
    tenant: Tenant, csv_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    run_command("import_persons", str(csv_file), "--org", tenant.organization.name)

    assert "Checking: 100%" in terminal.getvalue()
    assert "2/2" in terminal.getvalue()


def test_import_persons_lists_every_rejected_line_and_changes_nothing(
    tenant: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "Ada;;;;;;\r\nGrace;Hopper;Navy;navy.example;;;\r\n;;;;nope;;\r\n")
    before = stored_state()

    with pytest.raises(CommandError) as error:
        run_command("import_persons", str(path), "--org", tenant.organization.name)

    message = str(error.value)
    assert message.startswith("2 of 3 rows were rejected")
    assert "\nline 2: A person needs linkedinUrl" in message
    assert "\nline 4: linkedinUrl: Enter a valid http(s) URL." in message
    assert stored_state() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv", "--org", "{org}"], "Cannot read missing.csv"),
        (["{file}", "--org", "nobody"], "No organization"),
        (["{file}", "--org", "{org}", "--encoding", "klingon"], "Unknown encoding"),
    ],
)
def test_import_persons_refuses_bad_arguments(
    tenant: Tenant, csv_file: Path, args: list[str], message: str
) -> None:
    filled = [arg.format(org=tenant.organization.name, file=csv_file) for arg in args]

    with pytest.raises(CommandError, match=message):
        run_command("import_persons", *filled)

    assert not Person.objects.exists()


def test_export_persons_writes_the_file_that_the_api_exports(
    tenant: Tenant, tmp_path: Path
) -> None:
    person = PersonFactory(organization=tenant.organization, first_name="Zoë")
    ContactPointFactory(person=person, value="zoe@acme.example")
    path = tmp_path / "out.csv"

    out = run_json("export_persons", "--org", tenant.organization.name, "--output", str(path))

    assert out == {
        "organizationId": str(tenant.organization.pk),
        "persons": 1,
        "output": str(path),
    }
    api = b"".join(tenant.client.get("/api/v1/persons/export").streaming_content)
    assert path.read_bytes() == api
    assert "zoe@acme.example" in path.read_text(encoding="utf-8")


def test_export_persons_to_standard_output_keeps_the_summary_on_standard_error(
    tenant: Tenant,
) -> None:
    PersonFactory.create_batch(2, organization=tenant.organization)
    stdout, stderr = io.StringIO(), io.StringIO()

    call_command(
        "export_persons",
        "--org",
        tenant.organization.name,
        "--separator",
        "semicolon",
        "--bom",
        stdout=stdout,
        stderr=stderr,
    )

    assert stdout.getvalue().startswith("\ufeffid;firstName;")
    assert len(stdout.getvalue().splitlines()) == 3
    assert stderr.getvalue().strip() == (
        f"Exported 2 persons of {tenant.organization.name!r} to standard output."
    )


def test_export_then_import_by_command_leaves_everything_unchanged(
    tenant: Tenant, tmp_path: Path
) -> None:
    PersonFactory.create_batch(3, organization=tenant.organization)
    path = tmp_path / "round.csv"
    run_command("export_persons", "--org", tenant.organization.name, "--output", str(path))
    before = stored_state()

    out = run_json("import_persons", str(path), "--org", tenant.organization.name)

    assert (out["unchanged"], out["created"], out["updated"]) == (3, 0, 0)
    assert stored_state() == before


def test_export_persons_refuses_an_unwritable_output(tenant: Tenant, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="Cannot write"):
        run_command("export_persons", "--org", tenant.organization.name, "--output", str(tmp_path))
