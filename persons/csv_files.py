"""Persons in CSV files: an upload read into rows (the encodings, separators and header spellings
of CRM and spreadsheet exports), validated by the JSON API's own serializer, and the export."""

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.settings import api_settings

from enrichment_project.errors import ValidationFailed
from organizations.models import Organization
from persons.models import ContactPoint, Person
from persons.serializers import PersonIn
from persons.services import ImportCounts, ImportRow, Rejection, persons_import, rows_rejected

# Header spellings per field, compared in lower case without spaces, dashes or underscores:
# "First Name", "first_name", "firstName" and "FIRSTNAME" are one column.
COLUMN_ALIASES = {
    "firstName": ("firstname", "first", "givenname", "fname"),
    "lastName": ("lastname", "last", "surname", "familyname", "lname"),
    "companyName": (
        "companyname",
        "company",
        "organization",
        "organisation",
        "organizationname",
        "account",
        "accountname",
        "employer",
    ),
    "companyDomain": (
        "companydomain",
        "domain",
        "website",
        "companywebsite",
        "websiteurl",
        "companyurl",
        "web",
    ),
    "linkedinUrl": (
        "linkedinurl",
        "linkedin",
        "linkedinprofile",
        "linkedinprofileurl",
        "personlinkedinurl",
    ),
    "title": ("title", "jobtitle", "position"),
}
_FIELD_OF_ALIAS = {alias: name for name, aliases in COLUMN_ALIASES.items() for alias in aliases}
SEPARATORS = {"comma": ",", "semicolon": ";", "tab": "\t"}
EXPORT_COLUMNS = (
    "id",
    "firstName",
    "lastName",
    "companyName",
    "companyDomain",
    "linkedinUrl",
    "title",
    "emails",
    "phones",
    "createdAt",
    "updatedAt",
)
# Several found values share a cell; no email or phone contains this.
VALUE_SEPARATOR = "; "
# Persons fetched per query while exporting, each chunk with one query for its contact points.
EXPORT_CHUNK_SIZE = 1000


@dataclass(frozen=True)
class CsvFile:
    """An upload's rows as PersonIn input (line number and cells by field name), the header
    names it ignored and the rows refused before validation."""

    rows: list[tuple[int, dict[str, str]]]
    ignored_columns: list[str]
    rejected: list[Rejection]


def _column_key(header: str) -> str:
    return re.sub(r"[\W_]+", "", header).lower()


def _decode(content: bytes, encoding: str) -> str:
    # utf-8-sig drops the byte order mark Excel writes in front of "CSV UTF-8" files.
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        text = content.decode(codec)
    except UnicodeDecodeError as error:
        raise ValidationFailed(
            f"The file is not {encoding} text (invalid byte at offset {error.start}); save it "
            "as CSV UTF-8.",
            {"encoding": encoding, "offset": error.start},
        ) from error
    if "\x00" in text:
        raise ValidationFailed("The file holds NUL characters: it is not a CSV text file.")
    if not text.strip():
        raise ValidationFailed("The file is empty; its first line must name the columns.")
    return text


def _separator(text: str) -> str:
    """The separator that splits the header into the most columns (comma on a tie):
    spreadsheets in many locales write `;`. Decided on the header alone, because data cells
    hold commas and semicolons far more often than column names do."""

    def columns(separator: str) -> int:
        try:
            for cells in csv.reader(io.StringIO(text, newline=""), delimiter=separator):
                if any(cell.strip() for cell in cells):
                    return len(cells)
        except csv.Error:  # reported with its line when the file is read
            pass
        return 0

    return max(SEPARATORS.values(), key=columns)


def _cell(name: str, value: str) -> str:
    value = value.strip()
    if name == "companyDomain" and value:
        # A website column holds `https://www.acme.com/about`; the person keeps `acme.com`.
        host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", value, flags=re.IGNORECASE)
        return re.split(r"[/?#]", host, maxsplit=1)[0].lower().removeprefix("www.")
    if name == "linkedinUrl" and value and "://" not in value:
        return "https://" + value  # CRMs often drop the scheme: linkedin.com/in/ada
    return value


def csv_file_read(content: bytes, *, encoding: str = "utf-8") -> CsvFile:
    """Reads an upload; a file that cannot be read as a whole is refused with one clear error,
    a row with more cells than the header is rejected by its line number."""
    text = _decode(content, encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_separator(text), strict=True)
    max_rows = settings.PERSONS_IMPORT_MAX_ROWS
    rows: list[tuple[int, dict[str, str]]] = []
    rejected: list[Rejection] = []
    line = 1
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)  # blank lines above the header
        if header is None:
            raise ValidationFailed("The file has no header line naming the columns.")
        columns: dict[int, str] = {}
        ignored: list[str] = []
        for position, name in enumerate(header):
            field = _FIELD_OF_ALIAS.get(_column_key(name))
            if field is None:
                ignored.append(name.strip())
            elif field in columns.values():
                first = header[next(p for p, f in columns.items() if f == field)]
                raise ValidationFailed(
                    f"The columns {first!r} and {name!r} both give {field}.",
                    {"columns": [first, name], "field": field},
                )
            else:
                columns[position] = field
        if not columns:
            raise ValidationFailed(
                "The header names no known column; name them e.g. firstName, lastName, "
                "company, website, linkedin, title.",
                {"knownColumns": list(COLUMN_ALIASES)},
            )
        while True:
            line = reader.line_num + 1  # where the record starts; a quoted cell may span lines
            cells = next(reader, None)
            if cells is None:
                break
            if not any(cell.strip() for cell in cells):
                continue  # blank lines, and the empty rows spreadsheets leave at the end
            if len(rows) + len(rejected) == max_rows:
                raise ValidationFailed(
                    f"The file has more than {max_rows} rows; split it.", {"maxRows": max_rows}
                )
            if len(cells) > len(header):
                reason = f"{len(cells)} cells where the header names {len(header)} columns."
                rejected.append(Rejection(line=line, reason=reason, fields={}))
                continue
            # Missing trailing cells are empty: some tools drop trailing separators.
            rows.append(
                (
                    line,
                    {
                        name: _cell(name, cells[position] if position < len(cells) else "")
                        for position, name in columns.items()
                    },
                )
            )
    except csv.Error as error:
        raise ValidationFailed(f"Line {line} is not valid CSV: {error}.", {"line": line}) from error
    return CsvFile(rows=rows, ignored_columns=[name for name in ignored if name], rejected=rejected)


def _reason(errors: dict[str, Any]) -> str:
    return "; ".join(
        " ".join(messages)
        if name == api_settings.NON_FIELD_ERRORS_KEY
        else f"{name}: " + " ".join(messages)
        for name, messages in errors.items()
    )


def persons_csv_import(
    *,
    organization: Organization,
    file: CsvFile,
    progress: Callable[[int], object] | None = None,
) -> ImportCounts:
    """Validates every row as the JSON API validates a person, then upserts them all, or
    rejects the file listing every refused row. `progress` is told of each row checked."""
    rejected = list(file.rejected)
    valid = []
    # One serializer for every row, as a list serializer uses its child: building the fields
    # once instead of per row makes validation several times faster.
    serializer = PersonIn()
    for line, cells in file.rows:
        try:
            valid.append(ImportRow(line=line, values=serializer.run_validation(cells)))
        except serializers.ValidationError as error:
            reason = _reason(error.detail)
            rejected.append(Rejection(line=line, reason=reason, fields=error.detail))
        if progress is not None:
            progress(1)
    if rejected:
        raise rows_rejected(rejected=rejected, total=len(file.rows) + len(file.rejected))
    return persons_import(organization=organization, rows=valid)


class _Echo:
    """A file whose write() hands the line back, so csv.writer formats one row at a time."""

    def write(self, line: str) -> str:
        return line


_timestamp = serializers.DateTimeField().to_representation


def _export_row(person: Person) -> Sequence[str]:
    points = person.contact_points.all()  # prefetched with the chunk
    return (
        str(person.pk),
        person.first_name,
        person.last_name,
        person.company_name,
        person.company_domain,
        person.linkedin_url,
        person.title,
        VALUE_SEPARATOR.join(p.value for p in points if p.kind == ContactPoint.Kind.EMAIL),
        VALUE_SEPARATOR.join(p.value for p in points if p.kind == ContactPoint.Kind.PHONE),
        _timestamp(person.created_at),
        _timestamp(person.updated_at),
    )


def persons_csv_lines(
    persons: Iterable[Person], *, separator: str = ",", bom: bool = False
) -> Iterator[str]:
    """The export, a line at a time: the header, then one line per person (iterate a queryset
    with `contact_points` prefetched, e.g. `.iterator(chunk_size=EXPORT_CHUNK_SIZE)`)."""
    writer = csv.writer(_Echo(), delimiter=separator)
    yield ("\ufeff" if bom else "") + writer.writerow(EXPORT_COLUMNS)
    for person in persons:
        yield writer.writerow(_export_row(person))
