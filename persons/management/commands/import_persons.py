import codecs
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from enrichment_project.errors import ValidationFailed
from enrichment_project.management import Report, ReportCommand
from organizations.services import organization_resolve
from persons.csv_files import csv_file_read, persons_csv_import


def _encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise CommandError(f"Unknown encoding {name!r}.") from None


class Command(ReportCommand):
    help = (
        "Upserts persons from a CSV file into an organization, as POST /api/v1/persons/import "
        "does: up to 10,000 rows, all or nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE", help="The CSV file; - reads standard input.")
        parser.add_argument("--org", required=True, help="Organization id or unique name.")
        parser.add_argument(
            "--encoding", default="utf-8", help="The file's encoding (%(default)s)."
        )

    def report(self, *, file: str, org: str, encoding: str, **options: Any) -> Report:
        organization = organization_resolve(ref=org)
        encoding = _encoding(encoding)
        try:
            if file == "-":
                content = sys.stdin.buffer.read()
            else:
                with open(file, "rb") as source:
                    content = source.read()
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}.") from error
        try:
            parsed = csv_file_read(content, encoding=encoding)
            # On a terminal only (disable=None); the summary or JSON stays alone on stdout.
            with tqdm(total=len(parsed.rows), unit="row", desc="Checking", disable=None) as bar:
                counts = persons_csv_import(
                    organization=organization, file=parsed, progress=bar.update
                )
        except ValidationFailed as error:
            rejected = error.details.get("rejected", [])
            lines = [f"line {row['line']}: {row['reason']}" for row in rejected]
            raise CommandError("\n".join([error.message, *lines])) from error
        return Report(
            data={
                "organizationId": organization.pk,
                "rows": len(parsed.rows),
                "created": counts.created,
                "updated": counts.updated,
                "unchanged": counts.unchanged,
                "ignoredColumns": parsed.ignored_columns,
            },
            summary=(
                f"Imported {len(parsed.rows)} rows into {organization.name!r}: "
                f"{counts.created} created, {counts.updated} updated, "
                f"{counts.unchanged} unchanged."
                + (
                    f" Ignored columns: {', '.join(parsed.ignored_columns)}."
                    if parsed.ignored_columns
                    else ""
                )
            ),
        )
