import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q, Value
from django.db.models.functions import Lower, Replace
from django.utils import timezone
from rest_framework.settings import api_settings

from enrichment_project.errors import NotFound, ValidationFailed
from organizations.models import Organization
from persons.identity import linkedin_identity, name_identity
from persons.models import ContactPoint, Person
from persons.selectors import persons_of

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


# The person fields an import writes; the others keep their stored values.
IMPORTED_FIELDS = (
    "first_name",
    "last_name",
    "company_name",
    "company_domain",
    "linkedin_url",
    "title",
)


@dataclass(frozen=True)
class ImportRow:
    """A validated row: its line in the file and its model field values ("" for empty cells)."""

    line: int
    values: Mapping[str, str]


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str
    fields: Mapping[str, Any]

    def as_detail(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason, "fields": self.fields}


@dataclass(frozen=True)
class ImportCounts:
    created: int
    updated: int
    unchanged: int


def rows_rejected(*, rejected: Sequence[Rejection], total: int) -> ValidationFailed:
    """The one error of an import with rejected rows: every rejection, by line."""
    rejected = sorted(rejected, key=lambda rejection: rejection.line)
    return ValidationFailed(
        f"{len(rejected)} of {total} rows were rejected (first: line {rejected[0].line}, "
        f"{rejected[0].reason}); nothing was imported.",
        {"rejected": [rejection.as_detail() for rejection in rejected], "rows": total},
    )


def _name_key(values: Mapping[str, str]) -> str | None:
    if not (
        values.get("first_name")
        and values.get("last_name")
        and (values.get("company_domain") or values.get("company_name"))
    ):
        return None
    return name_identity(
        first_name=values["first_name"],
        last_name=values["last_name"],
        company_domain=values.get("company_domain", ""),
        company_name=values.get("company_name", ""),
    )


class _PersonIndex:
    """The persons an import can match, by LinkedIn URL and by name at a company; persons the
    import creates or renames are added as it goes, so later rows of the file see them."""

    def __init__(self, persons: Iterable[Person]) -> None:
        self.by_linkedin: dict[str, Person] = {}
        self.by_name: dict[str, list[Person]] = {}
        for person in persons:  # oldest first: the oldest of stored duplicates is matched
            self.add(person)

    def add(self, person: Person) -> None:
        values = {name: getattr(person, name) for name in IMPORTED_FIELDS}
        if person.linkedin_url:
            self.by_linkedin.setdefault(linkedin_identity(person.linkedin_url), person)
        if (key := _name_key(values)) is not None:
            same_name = self.by_name.setdefault(key, [])
            if person not in same_name:
                same_name.append(person)

    def match(self, values: Mapping[str, str]) -> Person | None:
        """The same LinkedIn URL, else the same name at the same company; a person with
        another LinkedIn URL than the row's is someone else."""
        linkedin = linkedin_identity(values["linkedin_url"]) if values.get("linkedin_url") else ""
        if linkedin and (person := self.by_linkedin.get(linkedin)):
            return person
        for person in self.by_name.get(_name_key(values) or "", []):
            if not linkedin or not person.linkedin_url:
                return person
        return None


def _import_candidates(*, organization: Organization, rows: Sequence[ImportRow]) -> list[Person]:
    """One locked query for every stored person a row could match: a superset (same first and
    last name anywhere, LinkedIn URL with or without a trailing slash) that the index narrows."""
    linkedins, firsts, lasts = set(), set(), set()
    for row in rows:
        if url := row.values.get("linkedin_url"):
            linkedins |= {linkedin_identity(url), linkedin_identity(url) + "/"}
        if row.values.get("first_name") and row.values.get("last_name"):
            firsts.add(row.values["first_name"].lower())
            lasts.add(row.values["last_name"].lower())
    bare_url = Replace(
        Replace(Lower("linkedin_url"), Value("https://"), Value("")), Value("http://"), Value("")
    )
    return list(
        persons_of(organization=organization)
        .annotate(bare_url=bare_url, first=Lower("first_name"), last=Lower("last_name"))
        .filter(Q(bare_url__in=linkedins) | Q(first__in=firsts, last__in=lasts))
        .order_by("created_at", "id")
        # Locked so a concurrent delete cannot be undone by the upsert below. NO KEY:
        # enrichments of these persons can still be created meanwhile.
        .select_for_update(no_key=True)
    )


def persons_import(*, organization: Organization, rows: Sequence[ImportRow]) -> ImportCounts:
    """Upserts validated rows in one transaction: a row matching a stored person (see
    `_PersonIndex.match`) updates the fields it fills; the others create persons. Two rows of
    one person are rejected, and then nothing is written. Statements: the organization lock,
    one query for the candidates, one INSERT ... ON CONFLICT for every created and updated row."""
    with transaction.atomic(durable=True):
        # Imports of one organization take turns, so two uploads of one file cannot both miss
        # the persons the other is creating. NO KEY: rows referencing it can still be inserted.
        list(
            Organization.objects.select_for_update(no_key=True)
            .filter(pk=organization.pk)
            .values_list("pk")
        )
        index = _PersonIndex(_import_candidates(organization=organization, rows=rows))
        line_of: dict[uuid.UUID, int] = {}
        written: list[Person] = []
        created = unchanged = 0
        rejected = []
        for row in rows:
            person = index.match(row.values)
            if person is not None and person.pk in line_of:
                reason = f"The same person as line {line_of[person.pk]}."
                rejected.append(Rejection(line=row.line, reason=reason, fields={}))
                continue
            if person is None:
                person = Person(organization=organization, **row.values)
                created += 1
                written.append(person)
            else:
                # An empty cell keeps the stored value: CRM exports leave out what they lack.
                changes = {k: v for k, v in row.values.items() if v and getattr(person, k) != v}
                for name, value in changes.items():
                    setattr(person, name, value)
                if changes:
                    written.append(person)
                else:
                    unchanged += 1
            line_of[person.pk] = row.line
            index.add(person)
        if rejected:
            raise rows_rejected(rejected=rejected, total=len(rows))
        if written:
            Person.objects.bulk_create(
                written,
                update_conflicts=True,
                unique_fields=["id"],
                update_fields=[*IMPORTED_FIELDS, "updated_at"],
            )
    return ImportCounts(created=created, updated=len(written) - created, unchanged=unchanged)
