from contextlib import AbstractContextManager, nullcontext
from typing import Any, TextIO

from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from enrichment_project.management import Report, ReportCommand
from organizations.services import organization_resolve
from persons.csv_files import EXPORT_CHUNK_SIZE, SEPARATORS, persons_csv_lines
from persons.selectors import persons_for_export


class Command(ReportCommand):
    help = (
        "Writes an organization's persons with their found emails and phones as CSV, as GET "
        "/api/v1/persons/export does."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organization id or unique name.")
        parser.add_argument(
            "--output", default="-", metavar="FILE", help="Where to write; - is standard output."
        )
        parser.add_argument("--separator", choices=list(SEPARATORS), default="comma")
        parser.add_argument(
            "--bom", action="store_true", help="Start with a UTF-8 byte order mark (Excel)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["output"] == "-":
            # The CSV owns standard output, so the summary (or JSON) goes to standard error.
            self.csv_out, self.stdout = self.stdout, self.stderr
            self.stdout.style_func = None
        super().handle(*args, **options)

    def _open(self, output: str) -> AbstractContextManager[TextIO]:
        if output == "-":
            return nullcontext(self.csv_out)
        try:
            return open(output, "w", encoding="utf-8", newline="")
        except OSError as error:
            raise CommandError(f"Cannot write {output}: {error.strerror}.") from error

    def report(self, *, org: str, output: str, separator: str, bom: bool, **options: Any) -> Report:
        organization = organization_resolve(ref=org)
        persons = persons_for_export(organization=organization)
        total = persons.count()
        lines = persons_csv_lines(
            persons.iterator(chunk_size=EXPORT_CHUNK_SIZE), separator=SEPARATORS[separator], bom=bom
        )
        bar = tqdm(total=total, unit="person", desc="Exporting", disable=None)
        with self._open(output) as target, bar:
            target.write(next(lines))
            for line in lines:
                target.write(line)  # ends with \r\n: OutputWrapper adds no newline
                bar.update(1)
        return Report(
            data={"organizationId": organization.pk, "persons": total, "output": output},
            summary=f"Exported {total} persons of {organization.name!r} to "
            f"{'standard output' if output == '-' else output}.",
        )
