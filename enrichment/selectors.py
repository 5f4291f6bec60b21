"""Reads. Every selector that serves a request takes the organization, so a query that forgets
its tenant cannot be written by accident."""

import dataclasses
import hashlib
import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import timedelta

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone

from enrichment.models import (
    REUSABLE_STATUSES,
    Enrichment,
    EnrichmentBatch,
    EnrichmentBatchItem,
    GlobalEnrichment,
    Status,
)
from enrichment_project.db import AnyOf
from organizations.models import Organization
from persons.identity import linkedin_identity, name_identity
from persons.models import Person
from providers.base import Subject


def subject_of(person: Person) -> Subject:
    return Subject(
        first_name=person.first_name,
        last_name=person.last_name,
        company_name=person.company_name,
        company_domain=person.company_domain,
        linkedin_url=person.linkedin_url,
    )


def lookup_key(subject: Subject) -> str:
    """The identity a provider answers for, normalized and hashed: the same person stored by two
    organizations shares one key, and the key reveals nothing about either."""
    if subject.linkedin_url:
        identity = "li:" + linkedin_identity(subject.linkedin_url)
    else:
        identity = "nm:" + name_identity(
            first_name=subject.first_name,
            last_name=subject.last_name,
            company_domain=subject.company_domain,
            company_name=subject.company_name,
        )
    return hashlib.sha256(identity.encode()).hexdigest()


def global_enrichments_fresh(*, keys: Iterable[str], field: str) -> dict[str, GlobalEnrichment]:
    oldest = timezone.now() - timedelta(seconds=settings.ENRICHMENT_GLOBAL_MAX_AGE)
    found = GlobalEnrichment.objects.filter(
        lookup_key__in=list(keys), field=field, updated_at__gte=oldest
    )
    return {global_enrichment.lookup_key: global_enrichment for global_enrichment in found}


def enrichments_of(*, organization: Organization) -> QuerySet[Enrichment]:
    return Enrichment.objects.filter(organization=organization)


def enrichment_get(*, organization: Organization, enrichment_id: uuid.UUID) -> Enrichment | None:
    return enrichments_of(organization=organization).filter(pk=enrichment_id).first()


def enrichment_latest(
    *, organization: Organization, person_id: uuid.UUID, field: str
) -> Enrichment | None:
    return (
        enrichments_of(organization=organization)
        .filter(person_id=person_id, field=field)
        .order_by("-created_at", "-id")
        .first()
    )


def reuse_cutoff(max_age: int | None) -> timedelta | None:
    """The age past which a finished enrichment is not reused: the request's `maxAge` or
    ENRICHMENT_REUSE_MAX_AGE, whichever is shorter (a request can ask for fresher data than the
    operator's policy, never for staler); None when neither is set."""
    ages = [age for age in (max_age, settings.ENRICHMENT_REUSE_MAX_AGE) if age is not None]
    return timedelta(seconds=min(ages)) if ages else None


def enrichments_reusable(
    *,
    organization: Organization,
    person_ids: Sequence[uuid.UUID],
    field: str,
    max_age: int | None = None,
) -> tuple[dict[uuid.UUID, Enrichment], list[uuid.UUID]]:
    """The reusable enrichment of each person that has one, and the ids of the finished ones
    too old to reuse (a request supersedes them; an estimate only counts them as new)."""
    candidates = enrichments_of(organization=organization).filter(
        AnyOf(F("person_id"), person_ids),
        field=field,
        status__in=REUSABLE_STATUSES,
        superseded_at__isnull=True,
    )
    cutoff = reuse_cutoff(max_age)
    oldest_reusable = timezone.now() - cutoff if cutoff is not None else None
    reusable, stale = {}, []
    for enrichment in candidates:
        if (
            oldest_reusable is not None
            and enrichment.status == Status.FINISHED
            and enrichment.finished_at < oldest_reusable
        ):
            stale.append(enrichment.pk)
        else:
            reusable[enrichment.person_id] = enrichment
    return reusable, stale


@dataclasses.dataclass
class BatchSummary:
    """A batch with its enrichment ids in request order and its live counts."""

    batch: EnrichmentBatch
    enrichment_ids: list[uuid.UUID] = dataclasses.field(default_factory=list)
    by_status: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(Status.values, 0)
    )
    found: int = 0
    credits_charged: int = 0

    @property
    def total(self) -> int:
        return len(self.enrichment_ids)

    def add(self, enrichment: Enrichment, *, reused: bool) -> None:
        self.enrichment_ids.append(enrichment.pk)
        self.by_status[enrichment.status] += 1
        self.found += bool(enrichment.data_found)
        if not reused:
            self.credits_charged += enrichment.credits_charged


def enrichment_batches_of(*, organization: Organization) -> QuerySet[EnrichmentBatch]:
    return EnrichmentBatch.objects.filter(organization=organization)


def enrichment_batches_summarize(
    *, batches: Sequence[EnrichmentBatch], leaving_out: Collection[uuid.UUID] = ()
) -> list[BatchSummary]:
    """Summaries of the batches in one query, whatever their number and size: their items in
    order, each joined to the few columns of its enrichment the counts need. `leaving_out`:
    enrichments being deleted in this transaction, whose items are about to go."""
    summaries = {batch.pk: BatchSummary(batch=batch) for batch in batches}
    items = (
        EnrichmentBatchItem.objects.filter(batch_id__in=list(summaries))
        .exclude(enrichment_id__in=list(leaving_out))
        .order_by("batch_id", "position")
        .select_related("enrichment")
        .only(
            "batch_id",
            "reused",
            "enrichment__status",
            "enrichment__data_found",
            "enrichment__credits_charged",
        )
    )
    for item in items:
        summaries[item.batch_id].add(item.enrichment, reused=item.reused)
    return list(summaries.values())


def enrichment_batch_get(*, organization: Organization, batch_id: uuid.UUID) -> BatchSummary | None:
    batch = enrichment_batches_of(organization=organization).filter(pk=batch_id).first()
    return enrichment_batches_summarize(batches=[batch])[0] if batch else None
