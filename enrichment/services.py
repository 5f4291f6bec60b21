"""Enrichment state changes. Each entry point is one transaction that takes the organization's
credit row lock before it touches enrichment rows, so money and status always move together."""

import logging
import random
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import partial, update_wrapper

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, F, JSONField, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from credits.models import CreditAccount
from credits.selectors import credit_account_get
from credits.services import (
    Charge,
    credit_account_lock,
    credits_charge,
    credits_release,
    credits_reserve,
)
from enrichment.models import (
    AsyncLookupItem,
    Enrichment,
    EnrichmentBatch,
    EnrichmentBatchItem,
    GlobalEnrichment,
    Status,
)
from enrichment.queueing import enqueue_enrichments
from enrichment.selectors import (
    BatchSummary,
    enrichment_batches_summarize,
    enrichments_reusable,
    global_enrichments_fresh,
    lookup_key,
    subject_of,
)
from enrichment.serializers import EnrichmentBatchOut, EnrichmentOut
from enrichment.waterfall import AsyncHandOff, LookupOutcome, WaterfallStopped
from enrichment_project.db import AnyOf, rows_alike, rows_insert_alike, rows_update
from enrichment_project.errors import InvalidState, NotFound, ValidationFailed
from enrichment_project.metrics import ENRICHMENTS_CREATED, ENRICHMENTS_ENDED, count_on_commit
from organizations.models import Organization
from persons.models import ContactPoint
from persons.selectors import persons_list, persons_of
from persons.services import contact_points_save
from providers.base import FoundValue
from webhooks.events import ENRICHMENT_BATCH_COMPLETED, ENRICHMENT_COMPLETED
from webhooks.services import webhook_events_record

logger = logging.getLogger(__name__)


def enrichment_price(field: str) -> int:
    return int(settings.ENRICHMENT_CREDIT_COSTS[field])


@dataclass(frozen=True)
class EnrichmentRequest:
    """What a request got: one enrichment per distinct person in request order, the batch it
    recorded (if asked to), and the credits it reserved and left available, read from the
    locked credit row."""

    enrichments: list[Enrichment]
    batch: BatchSummary | None
    credits_reserved: int
    credits_available: int


@dataclass(frozen=True)
class Estimate:
    persons: int
    reused: int
    new: int
    credits_required: int
    credits_available: int
    sufficient: bool


def enrichments_request(
    *,
    organization: Organization,
    user: AbstractBaseUser,
    person_ids: Sequence[uuid.UUID],
    field: str,
    max_age: int | None = None,
    record_batch: bool = False,
) -> EnrichmentRequest:
    """One enrichment per distinct person, in the order first requested: the reusable one when it
    exists (a finished one at most `max_age` seconds old), else a new pending one whose price is
    reserved. All or nothing; work is queued only once the transaction has committed. Its
    statement count does not depend on len(person_ids)."""
    return _request(
        organization=organization,
        user=user,
        field=field,
        max_age=max_age,
        record_batch=record_batch,
        select_persons=partial(_known_person_ids, organization, person_ids),
    )


def enrichments_request_by_search(
    *,
    organization: Organization,
    user: AbstractBaseUser,
    search: str,
    limit: int | None,
    field: str,
    max_age: int | None = None,
) -> EnrichmentRequest:
    """The batch semantics for the persons a person search lists, newest first: the first
    `limit` of them, or, without a limit, all of them when they are at most
    ENRICHMENT_BULK_MAX_PERSONS (more is refused rather than silently cut)."""
    return _request(
        organization=organization,
        user=user,
        field=field,
        max_age=max_age,
        record_batch=True,
        select_persons=partial(_searched_person_ids, organization, search, limit),
    )


def enrichments_estimate(
    *,
    organization: Organization,
    person_ids: Sequence[uuid.UUID],
    field: str,
    max_age: int | None = None,
) -> Estimate:
    """What the same batch request would reserve now; reads only, so nothing is created,
    superseded, reserved or queued."""
    distinct_ids = _known_person_ids(organization, person_ids)
    reusable, _stale = enrichments_reusable(
        organization=organization, person_ids=distinct_ids, field=field, max_age=max_age
    )
    new = len(distinct_ids) - len(reusable)
    required = new * enrichment_price(field)
    available = credit_account_get(organization=organization).available
    return Estimate(
        persons=len(distinct_ids),
        reused=len(reusable),
        new=new,
        credits_required=required,
        credits_available=available,
        sufficient=required <= available,
    )


def _known_person_ids(
    organization: Organization, person_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """The distinct ids in request order; a 400 listing those not of this organization."""
    distinct_ids = list(dict.fromkeys(person_ids))
    known_ids = set(
        persons_of(organization=organization)
        .filter(AnyOf(F("pk"), distinct_ids))
        .values_list("pk", flat=True)
    )
    unknown_ids = [str(pk) for pk in distinct_ids if pk not in known_ids]
    if unknown_ids:
        raise ValidationFailed(
            f"{len(unknown_ids)} person id(s) are unknown in this organization.",
            {"unknownPersonIds": unknown_ids},
        )
    return distinct_ids


def _searched_person_ids(
    organization: Organization, search: str, limit: int | None
) -> list[uuid.UUID]:
    most = settings.ENRICHMENT_BULK_MAX_PERSONS
    # One more than allowed tells "too many" apart from "exactly the maximum" in one statement.
    ids = list(
        persons_list(organization=organization, search=search)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)[: limit or most + 1]
    )
    if not ids:
        raise ValidationFailed("The search matches no person.", {"search": search})
    if len(ids) > most:
        raise ValidationFailed(
            f"The search matches more than {most} persons; narrow it or set a limit.",
            {"search": search, "maxItems": most},
        )
    return ids


def _request(
    *,
    organization: Organization,
    user: AbstractBaseUser,
    field: str,
    max_age: int | None,
    record_batch: bool,
    select_persons: Callable[[], list[uuid.UUID]],
) -> EnrichmentRequest:
    price = enrichment_price(field)
    with transaction.atomic(durable=True):
        # Checking the persons needs no lock: one deleted meanwhile fails the insert below.
        distinct_ids = select_persons()
        # The lock serializes requests of one organization, so two of them can never both see
        # "no reusable enrichment" for the same person and field.
        account = credit_account_lock(organization_id=organization.pk)
        reusable = _reusable_enrichments(organization, distinct_ids, field, max_age)
        new = _enrichments_create(
            account,
            Enrichment(organization=organization, field=field, price=price, created_by=user),
            [person_id for person_id in distinct_ids if person_id not in reusable],
        )
        by_person = reusable | {enrichment.person_id: enrichment for enrichment in new}
        enrichments = [by_person[person_id] for person_id in distinct_ids]
        batch = (
            _batch_record(organization, user, field, enrichments, reused=reusable.keys())
            if record_batch
            else None
        )
    return EnrichmentRequest(
        enrichments=enrichments,
        batch=batch,
        credits_reserved=price * len(new),
        credits_available=account.available,
    )


def _enrichments_create(
    account: CreditAccount, template: Enrichment, person_ids: list[uuid.UUID]
) -> list[Enrichment]:
    """A pending enrichment like `template` for each person, its price reserved, queued once the
    transaction commits; in two statements whatever their number."""
    if not person_ids:
        return []
    credits_reserve(account=account, amount=template.price * len(person_ids))
    ids = [uuid.uuid4() for _ in person_ids]
    # One microsecond apart in request order, as bulk_create's clock read per row made them: the
    # list's cursor is a created_at, and DRF pages backwards wrongly through runs of equal ones.
    now = timezone.now()
    times = [now + timedelta(microseconds=position) for position in range(len(ids))]
    varying = {"id": ids, "person": person_ids, "created_at": times, "updated_at": times}
    try:
        rows_insert_alike(template, varying)
    except IntegrityError as error:
        # Only a person deleted during this request gets here; the lock rules out the rest.
        raise InvalidState("A requested person changed during the request; retry.") from error
    count_on_commit(ENRICHMENTS_CREATED, len(ids), field=template.field)
    _enqueue_on_commit(ids)
    return rows_alike(template, varying)


def _batch_record(
    organization: Organization,
    user: AbstractBaseUser,
    field: str,
    enrichments: list[Enrichment],
    reused: Collection[uuid.UUID],
) -> BatchSummary:
    """Records the batch and its items (two statements whatever its size) and summarizes it from
    the rows in hand: under the credit row lock nothing else can change their status."""
    batch = EnrichmentBatch(organization=organization, field=field, created_by=user)
    summary = BatchSummary(batch=batch)
    for enrichment in enrichments:
        summary.add(enrichment, reused=enrichment.person_id in reused)
    if not summary.by_status[Status.PENDING]:
        batch.completed_at = timezone.now()
    batch.save(force_insert=True)
    rows_insert_alike(
        EnrichmentBatchItem(batch=batch),
        {
            "enrichment": summary.enrichment_ids,
            "position": range(len(enrichments)),
            "reused": [enrichment.person_id in reused for enrichment in enrichments],
        },
    )
    return summary


def _enqueue_on_commit(enrichment_ids: list[uuid.UUID], countdown: float = 0) -> None:
    """Queues the work once the transaction commits. robust: the rows are committed whatever the
    broker does; if publishing fails they stay pending and the re-queue service sends them again.
    The partial carries enqueue_enrichments' name because Django logs a failed robust callback by
    its __qualname__, which a bare partial lacks (the logging itself would raise)."""
    job = partial(enqueue_enrichments, enrichment_ids, countdown=countdown)
    transaction.on_commit(update_wrapper(job, enqueue_enrichments), robust=True)


def _reusable_enrichments(
    organization: Organization, person_ids: list[uuid.UUID], field: str, max_age: int | None
) -> dict[uuid.UUID, Enrichment]:
    reusable, stale = enrichments_reusable(
        organization=organization, person_ids=person_ids, field=field, max_age=max_age
    )
    if stale:
        # Superseded keeps the partial unique index true for the new one, without changing a
        # final status.
        Enrichment.objects.filter(pk__in=stale).update(superseded_at=timezone.now())
    return reusable


def enrichment_batches_complete(*, ended_ids: Collection[uuid.UUID]) -> list[EnrichmentBatch]:
    """Sets `completed_at` on the open batches holding any of `ended_ids` that have no other
    pending enrichment, and returns them. Called in the transaction that ends those enrichments,
    which holds the organization's credit row lock, as every change of an enrichment's status
    does: two of them never both see the other's last enrichment still pending. Only the batches
    of `ended_ids` are looked at, through the items' enrichment index. The time is read under the
    lock, so it is never before the end of any enrichment of the batch."""
    if not ended_ids:
        return []
    now = timezone.now()
    ended_ids = list(ended_ids)
    still_pending = EnrichmentBatchItem.objects.filter(
        batch=OuterRef("pk"), enrichment__status=Status.PENDING
    ).exclude(AnyOf(F("enrichment_id"), ended_ids))
    completed = list(
        EnrichmentBatch.objects.filter(
            completed_at__isnull=True,
            pk__in=EnrichmentBatchItem.objects.filter(AnyOf(F("enrichment_id"), ended_ids)).values(
                "batch_id"
            ),
        ).exclude(Exists(still_pending))
    )
    if completed:
        EnrichmentBatch.objects.filter(pk__in=[batch.pk for batch in completed]).update(
            completed_at=now
        )
        for batch in completed:
            batch.completed_at = now
    return completed


def enrichments_release_for_deletion(*, enrichments: QuerySet[Enrichment]) -> None:
    """Releases the reservations of the pending enrichments about to be deleted with their person.
    Runs inside the deleting transaction (see `release_pending_then_cascade`); a worker settling
    one of them waits on the credit row lock and then finds the row gone."""
    pending = enrichments.filter(status=Status.PENDING)
    for organization_id in sorted(set(pending.values_list("organization_id", flat=True))):
        account = credit_account_lock(organization_id=organization_id)
        rows = list(pending.filter(organization_id=organization_id).values_list("pk", "price"))
        credits_release(account=account, amount=sum(price for _, price in rows))
        # Their batches may have been waiting for nothing else.
        deleted = [pk for pk, _ in rows]
        completed = enrichment_batches_complete(ended_ids=deleted)
        _record_ended(organization_id, batches=completed, leaving_out=deleted)


# --- Worker side ------------------------------------------------------------------------------

CONTACT_KIND_BY_FIELD = {"emails": "email", "phones": "phone"}


def enrichments_claim(*, enrichment_ids: Sequence[str], claim_token: str) -> list[Enrichment]:
    """Claims the pending enrichments of a job: attempts + 1 and a lease. Rows another live job
    holds are skipped, so a duplicated job does no provider call twice; a redelivery of the same
    job (same token, its first consumer died) or a claim older than the task time limit is taken
    over."""
    now = timezone.now()
    lease_expired = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    with transaction.atomic():
        claimable = list(
            Enrichment.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("person")
            .filter(
                AnyOf(F("pk"), enrichment_ids),
                status=Status.PENDING,
                # Neither a redelivery nor a lease takeover goes past the attempts (a job whose
                # process keeps dying would loop); the re-queue service ends such a row `timeout`.
                attempts__lt=settings.ENRICHMENT_MAX_ATTEMPTS,
            )
            .filter(
                Q(started_at__isnull=True)
                | Q(started_at__lt=lease_expired)
                | Q(claim_token=claim_token)
            )
        )
        Enrichment.objects.filter(
            AnyOf(F("pk"), [enrichment.pk for enrichment in claimable])
        ).update(attempts=F("attempts") + 1, started_at=now, claim_token=claim_token)
    for enrichment in claimable:
        enrichment.attempts += 1
        enrichment.started_at = now
    return claimable


@dataclass(frozen=True)
class Settlement:
    """The final outcome of one pending enrichment."""

    enrichment: Enrichment
    status: str
    values: Sequence[FoundValue] = ()
    provider: str = ""
    reason: str = ""
    global_enrichment_id: uuid.UUID | None = None


def enrichments_settle(*, settlements: Sequence[Settlement]) -> list[Enrichment]:
    """Applies final outcomes to pending enrichments: contact points saved, the price charged
    when data was found, otherwise released. One short transaction per organization, whatever the
    number of enrichments. Enrichments no longer pending (cancelled, or settled by a duplicate
    job) are left alone; the ones settled are returned."""
    by_organization: dict[uuid.UUID, list[Settlement]] = {}
    for settlement in settlements:
        by_organization.setdefault(settlement.enrichment.organization_id, []).append(settlement)
    settled = []
    for organization_id in sorted(by_organization):
        settled += _settle_for_organization(organization_id, by_organization[organization_id])
    return settled


def _settle_for_organization(
    organization_id: uuid.UUID, settlements: list[Settlement]
) -> list[Enrichment]:
    outcome_of = {settlement.enrichment.pk: settlement for settlement in settlements}
    now = timezone.now()
    with transaction.atomic(durable=True):
        account = credit_account_lock(organization_id=organization_id)
        pending = list(
            Enrichment.objects.select_for_update()
            .filter(AnyOf(F("pk"), list(outcome_of)), status=Status.PENDING)
            .order_by("pk")
        )
        charged: list[Enrichment] = []
        released = 0
        contacts: list[ContactPoint] = []
        for enrichment in pending:
            outcome = outcome_of[enrichment.pk]
            found = outcome.status == Status.FINISHED and bool(outcome.values)
            enrichment.status = outcome.status
            enrichment.finished_at = enrichment.updated_at = now
            enrichment.data_found = found
            enrichment.error = outcome.reason
            if outcome.status == Status.FINISHED:
                enrichment.data = [asdict(found) for found in outcome.values]
                enrichment.provider = outcome.provider
                enrichment.global_enrichment_id = outcome.global_enrichment_id
            if found:
                contacts += [
                    ContactPoint(
                        person_id=enrichment.person_id,
                        kind=CONTACT_KIND_BY_FIELD[enrichment.field],
                        value=value.value,
                        type=value.type,
                        quality=value.quality,
                        provider=outcome.provider,
                    )
                    for value in outcome.values
                ]
            if found and enrichment.price:
                charged.append(enrichment)
            else:
                released += enrichment.price
        contact_points_save(contact_points=contacts)
        entries = credits_charge(
            account=account,
            charges=[
                Charge(
                    amount=enrichment.price,
                    operation=f"enrichment.{enrichment.field}",
                    reference_id=enrichment.pk,
                )
                for enrichment in charged
            ],
        )
        for enrichment, entry in zip(charged, entries, strict=True):
            enrichment.credit_transaction = entry
            enrichment.credits_charged = enrichment.price
        credits_release(account=account, amount=released)
        rows_update(pending, SETTLED_FIELDS)
        completed = enrichment_batches_complete(ended_ids=[e.pk for e in pending])
        ended = _count_ended((enrichment.field, enrichment.status) for enrichment in pending)
        if pending:
            _record_ended(organization_id, enrichments=pending, batches=completed)
    if pending:
        # The line `grep <request id>` finds at the end of a batch.
        logger.info(
            "Settled %d enrichments: %s",
            len(pending),
            ", ".join(f"{count} {field} {status}" for (field, status), count in ended.items()),
            extra={
                "organization_id": str(organization_id),
                "enrichment_ids": [str(enrichment.pk) for enrichment in pending],
            },
        )
    return pending


def _count_ended(ended: Iterable[tuple[str, str]]) -> Counter[tuple[str, str]]:
    """Counts enrichments that left pending, by (field, status), once the transaction commits."""
    counts = Counter(ended)
    for (field, status), count in counts.items():
        count_on_commit(ENRICHMENTS_ENDED, count, field=field, status=status)
    return counts


def _record_ended(
    organization_id: uuid.UUID,
    *,
    enrichments: Iterable[Enrichment] = (),
    batches: Sequence[EnrichmentBatch] = (),
    leaving_out: Collection[uuid.UUID] = (),
) -> None:
    """The `enrichment.completed` events of the enrichments that ended and the
    `enrichment_batch.completed` events of the batches they completed, written in the
    transaction that ended them. The rendering is lazy: it runs only for the event types an
    endpoint of the organization subscribes to."""

    def events(subscribed: frozenset[str]) -> Iterator[tuple[str, dict]]:
        if ENRICHMENT_COMPLETED in subscribed:
            for data in EnrichmentOut(enrichments, many=True).data:
                yield ENRICHMENT_COMPLETED, data
        if batches and ENRICHMENT_BATCH_COMPLETED in subscribed:
            summaries = enrichment_batches_summarize(batches=batches, leaving_out=leaving_out)
            for data in EnrichmentBatchOut(summaries, many=True).data:
                yield ENRICHMENT_BATCH_COMPLETED, data

    webhook_events_record(organization_id=organization_id, events=events)


# The columns a settlement writes, in one UPDATE joined to one array per column (rows_update).
SETTLED_FIELDS = (
    "status",
    "finished_at",
    "updated_at",
    "data_found",
    "error",
    "data",
    "provider",
    "global_enrichment",
    "credit_transaction",
    "credits_charged",
)


def enrichment_complete(
    *,
    enrichment: Enrichment,
    values: Sequence[FoundValue],
    provider: str,
    global_enrichment_id: uuid.UUID | None = None,
) -> Enrichment | None:
    """Finishes one pending enrichment with what was found (possibly nothing); None when it was
    no longer pending, and then nothing changed."""
    settlement = Settlement(
        enrichment=enrichment,
        status=Status.FINISHED,
        values=values,
        provider=provider,
        global_enrichment_id=global_enrichment_id,
    )
    return next(iter(enrichments_settle(settlements=[settlement])), None)


def enrichment_end_unfound(
    *, enrichment: Enrichment, status: str, reason: str
) -> Enrichment | None:
    """Ends one pending enrichment as failed, timed out or cancelled, releasing its reservation;
    None when it was no longer pending."""
    settlement = Settlement(enrichment=enrichment, status=status, reason=reason)
    return next(iter(enrichments_settle(settlements=[settlement])), None)


@dataclass(frozen=True)
class Retry:
    """A claimed enrichment to try again: the providers that answered "not found" so far (not
    asked again), and the least delay worth waiting (a provider's hint, a circuit reopening)."""

    enrichment: Enrichment
    not_found: tuple[str, ...] = ()
    not_before: float = 0.0


def enrichments_retry_later(*, retries: Sequence[Retry]) -> float | None:
    """Gives the claims back, stores what each attempt learnt (its providers' "not found"), and
    queues the enrichments again after an exponential backoff with "equal jitter" (at least half
    the backoff, so a burst of retries spreads out but still waits), and never before the
    longest `not_before` of them. Returns the delay, or None when none of them is pending any
    more."""
    attempts = max(retry.enrichment.attempts for retry in retries)
    ceiling = min(
        settings.ENRICHMENT_RETRY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0),
        settings.ENRICHMENT_RETRY_BACKOFF_MAX_SECONDS,
    )
    delay = max(ceiling / 2 + random.uniform(0, ceiling / 2), *(r.not_before for r in retries))
    with transaction.atomic():
        retryable = Enrichment.objects.filter(
            pk__in=[retry.enrichment.pk for retry in retries], status=Status.PENDING
        )
        ids = list(retryable.values_list("pk", flat=True))
        retryable.update(
            started_at=None,
            claim_token="",
            queued_at=timezone.now(),
            **_not_found_learnt({retry.enrichment.pk: retry.not_found for retry in retries}),
        )
        if not ids:
            return None
        _enqueue_on_commit(ids, countdown=delay)
    return delay


def _not_found_learnt(not_found: dict[uuid.UUID, tuple[str, ...]]) -> dict[str, Case]:
    """The UPDATE assignment that stores each enrichment's providers that said "not found"."""
    learnt = [
        When(pk=pk, then=Value(list(names), output_field=JSONField()))
        for pk, names in not_found.items()
        if names
    ]
    return (
        {"providers_not_found": Case(*learnt, default=F("providers_not_found"))} if learnt else {}
    )


def enrichments_not_found_record(*, not_found: dict[uuid.UUID, tuple[str, ...]]) -> None:
    """Stores what a waterfall learnt before it handed enrichments to an asynchronous provider,
    so that resuming after that provider does not ask the earlier ones again."""
    assignment = _not_found_learnt(not_found)
    if assignment:
        Enrichment.objects.filter(pk__in=list(not_found), status=Status.PENDING).update(
            **assignment
        )


def enrichment_cancel(*, organization: Organization, enrichment_id: uuid.UUID) -> Enrichment:
    enrichment = Enrichment.objects.filter(organization=organization, pk=enrichment_id).first()
    if enrichment is None:
        raise NotFound("No such enrichment.")
    cancelled = enrichment_end_unfound(
        enrichment=enrichment, status=Status.CANCELLED, reason="cancelled"
    )
    if cancelled is None:
        enrichment.refresh_from_db(fields=["status"])
        raise InvalidState(
            f"Only pending enrichments can be cancelled; this one is {enrichment.status}.",
            {"status": enrichment.status},
        )
    return cancelled


@dataclass(frozen=True)
class RequeueReport:
    requeued: list[uuid.UUID]
    timed_out: list[uuid.UUID]
    dry_run: bool


def enrichments_requeue_timed_out(
    *,
    older_than: int,
    max_attempts: int,
    dry_run: bool = False,
    enrichment_ids: Sequence[uuid.UUID] | None = None,
) -> RequeueReport:
    """Pending enrichments not done `older_than` seconds after they were queued, and not held by
    a live claim: queued again while they have attempts left, else ended `timeout` with their
    reservation released. Rows are claimed with SKIP LOCKED, so copies of this command and
    running workers never handle one row twice. `enrichment_ids` narrows it to those rows."""
    now = timezone.now()
    stuck = Enrichment.objects.filter(
        status=Status.PENDING, queued_at__lt=now - timedelta(seconds=older_than)
    )
    if enrichment_ids is not None:
        stuck = stuck.filter(pk__in=list(enrichment_ids))
    stuck = stuck.filter(
        Q(started_at__isnull=True)
        | Q(started_at__lt=now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT))
    ).exclude(
        # Waiting on an asynchronous provider's live submission: the polling sweep ends it by its
        # deadline; past the deadline (no sweep running) it is recovered here like any other.
        Exists(
            AsyncLookupItem.objects.filter(
                enrichment=OuterRef("pk"), live=True, lookup__deadline__gt=now
            )
        )
    )
    retryable = stuck.filter(attempts__lt=max_attempts)
    exhausted = stuck.filter(attempts__gte=max_attempts)
    if dry_run:
        return RequeueReport(
            requeued=list(retryable.values_list("pk", flat=True)),
            timed_out=list(exhausted.values_list("pk", flat=True)),
            dry_run=True,
        )
    with transaction.atomic(durable=True):
        requeued = list(retryable.select_for_update(skip_locked=True).values_list("pk", flat=True))
        Enrichment.objects.filter(pk__in=requeued).update(
            queued_at=now, started_at=None, claim_token=""
        )
        _enqueue_on_commit(requeued)
    timed_out: list[uuid.UUID] = []
    # Per organization, the credit row is locked before the enrichment rows, as everywhere else.
    for organization_id in sorted(set(exhausted.values_list("organization_id", flat=True))):
        with transaction.atomic(durable=True):
            account = credit_account_lock(organization_id=organization_id)
            rows = list(
                exhausted.filter(organization_id=organization_id)
                .select_for_update(skip_locked=True)
                .values_list("pk", "price", "field")
            )
            ids = [pk for pk, _, _ in rows]
            Enrichment.objects.filter(pk__in=ids).update(
                status=Status.TIMEOUT,
                error="timeout",
                data_found=False,
                finished_at=now,
                updated_at=now,
            )
            credits_release(account=account, amount=sum(price for _, price, _ in rows))
            completed = enrichment_batches_complete(ended_ids=ids)
            _count_ended((field, Status.TIMEOUT) for _, _, field in rows)
            if ids:
                _record_ended(
                    organization_id,
                    enrichments=Enrichment.objects.filter(pk__in=ids),
                    batches=completed,
                )
        timed_out.extend(ids)
    return RequeueReport(requeued=requeued, timed_out=timed_out, dry_run=False)


def enrichments_complete_from_shared_answers(
    *, enrichments: Sequence[Enrichment]
) -> list[Enrichment]:
    """Completes the enrichments whose identity already has a fresh shared answer, and returns
    the others, which need a provider lookup."""
    need_lookup, settlements = [], []
    for field in {enrichment.field for enrichment in enrichments}:
        of_field = [enrichment for enrichment in enrichments if enrichment.field == field]
        keys = {e.pk: lookup_key(subject_of(e.person)) for e in of_field}
        answers = global_enrichments_fresh(keys=keys.values(), field=field)
        for enrichment in of_field:
            answer = answers.get(keys[enrichment.pk])
            if answer is None:
                need_lookup.append(enrichment)
            else:
                settlements.append(
                    Settlement(
                        enrichment=enrichment,
                        status=Status.FINISHED,
                        values=found_values_of(answer.data),
                        provider=answer.provider,
                        global_enrichment_id=answer.pk,
                    )
                )
    if settlements:
        enrichments_settle(settlements=settlements)
    return need_lookup


def found_values_of(data: Iterable[dict[str, str]]) -> list[FoundValue]:
    """Stored found values; those stored before providers graded them read as `unknown`."""
    return [
        FoundValue(
            value=found["value"], type=found["type"], quality=found.get("quality", "unknown")
        )
        for found in data
    ]


def enrichments_settle_lookups(
    *, lookups: Sequence[tuple[Enrichment, Future[LookupOutcome]]]
) -> list[tuple[Enrichment, AsyncHandOff]]:
    """Settles claimed enrichments with their waterfall outcomes, together: finished (the answer
    shared with other organizations); retried later after a transient error, or while no provider
    of the field is available, as long as attempts remain; else failed with the reason. Returns
    the enrichments whose next provider is asynchronous, for the job to submit together."""
    answered: list[tuple[Enrichment, LookupOutcome]] = []
    settlements: list[Settlement] = []
    retries: list[Retry] = []
    handed: list[tuple[Enrichment, AsyncHandOff]] = []
    for enrichment, lookup in lookups:
        try:
            answered.append((enrichment, lookup.result()))
            continue
        except AsyncHandOff as hand_off:
            handed.append((enrichment, hand_off))
            continue
        except WaterfallStopped as error:
            stopped = error
        except Exception:
            logger.exception("Provider bug while enriching %s; retried", enrichment.pk)
            stopped = WaterfallStopped("provider_error", not_found=(), transient=True)
        if stopped.transient and enrichment.attempts < settings.ENRICHMENT_MAX_ATTEMPTS:
            retries.append(
                Retry(
                    enrichment=enrichment,
                    not_found=stopped.not_found,
                    not_before=stopped.retry_after,
                )
            )
        else:
            settlements.append(
                Settlement(enrichment=enrichment, status=Status.FAILED, reason=stopped.reason)
            )
    keys = {enrichment.pk: lookup_key(subject_of(enrichment.person)) for enrichment, _ in answered}
    shared = global_enrichments_record(
        {(keys[enrichment.pk], enrichment.field): outcome for enrichment, outcome in answered}
    )
    settlements += [
        Settlement(
            enrichment=enrichment,
            status=Status.FINISHED,
            values=outcome.values,
            provider=outcome.provider,
            global_enrichment_id=shared[(keys[enrichment.pk], enrichment.field)],
        )
        for enrichment, outcome in answered
    ]
    if settlements:
        enrichments_settle(settlements=settlements)
    if retries:
        enrichments_retry_later(retries=retries)
    return handed


def global_enrichments_record(
    answers: dict[tuple[str, str], LookupOutcome],
) -> dict[tuple[str, str], uuid.UUID]:
    """Stores the provider answers, by (lookup key, field), for other organizations to reuse, in
    one upsert; returns the stored rows' ids."""
    if not answers:
        return {}
    now = timezone.now()
    GlobalEnrichment.objects.bulk_create(
        [
            GlobalEnrichment(
                lookup_key=key,
                field=field,
                data=[asdict(found) for found in outcome.values],
                provider=outcome.provider,
                updated_at=now,
            )
            for (key, field), outcome in answers.items()
        ],
        update_conflicts=True,
        unique_fields=["lookup_key", "field"],
        update_fields=["data", "provider", "updated_at"],
    )
    # Read back: on a conflict the stored row keeps its own id, which the upsert does not return.
    rows = GlobalEnrichment.objects.filter(
        lookup_key__in={key for key, _ in answers}, field__in={field for _, field in answers}
    ).values_list("lookup_key", "field", "pk")
    return {(key, field): pk for key, field, pk in rows}
