"""Enrichment state changes. Each entry point is one transaction that takes the organization's
credit row lock before it touches enrichment rows, so money and status always move together."""

import logging
import random
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from credits.models import CreditAccount
from credits.services import (
    credit_account_lock,
    credits_charge,
    credits_release,
    credits_reserve,
)
from enrichment.models import REUSABLE_STATUSES, Enrichment, GlobalEnrichment, Status
from enrichment.providers import LookupOutcome
from enrichment.providers.base import FoundValue, PermanentProviderError, TransientProviderError
from enrichment.queueing import enqueue_enrichments
from enrichment.selectors import global_enrichments_fresh, lookup_key, subject_of
from enrichment_project.errors import InvalidState, NotFound, ValidationFailed
from organizations.models import Organization
from persons.models import Person
from persons.services import contact_points_add

logger = logging.getLogger(__name__)


def enrichment_price(field: str) -> int:
    return int(settings.ENRICHMENT_CREDIT_COSTS[field])


def enrichments_request(
    *,
    organization: Organization,
    user: AbstractBaseUser,
    person_ids: Sequence[uuid.UUID],
    field: str,
) -> list[Enrichment]:
    """One enrichment per distinct person, in the order first requested: the reusable one when it
    exists, else a new pending one whose price is reserved. All or nothing; work is queued only
    once the transaction has committed. Its statement count does not depend on len(person_ids)."""
    distinct_ids = list(dict.fromkeys(person_ids))
    price = enrichment_price(field)
    with transaction.atomic(durable=True):
        # The lock serializes requests of one organization, so two of them can never both see
        # "no reusable enrichment" for the same person and field.
        account = credit_account_lock(organization_id=organization.pk)
        known_ids = set(
            Person.objects.filter(organization=organization, pk__in=distinct_ids).values_list(
                "pk", flat=True
            )
        )
        unknown_ids = [str(pk) for pk in distinct_ids if pk not in known_ids]
        if unknown_ids:
            raise ValidationFailed(
                f"{len(unknown_ids)} person id(s) are unknown in this organization.",
                {"unknownPersonIds": unknown_ids},
            )
        reusable = _reusable_enrichments(organization, distinct_ids, field)
        new = [
            Enrichment(
                organization=organization,
                person_id=person_id,
                field=field,
                price=price,
                created_by=user,
            )
            for person_id in distinct_ids
            if person_id not in reusable
        ]
        if new:
            credits_reserve(account=account, amount=price * len(new))
            try:
                Enrichment.objects.bulk_create(new)
            except IntegrityError as error:
                # Only a person deleted during this request gets here; the lock rules out the rest.
                raise InvalidState(
                    "A requested person changed during the request; retry."
                ) from error
            new_ids = [enrichment.pk for enrichment in new]
            # robust: the enrichments are committed whatever the broker does; if publishing fails
            # they stay pending and the re-queue command sends them again.
            transaction.on_commit(partial(enqueue_enrichments, new_ids), robust=True)
    by_person = reusable | {enrichment.person_id: enrichment for enrichment in new}
    return [by_person[person_id] for person_id in distinct_ids]


def _reusable_enrichments(
    organization: Organization, person_ids: list[uuid.UUID], field: str
) -> dict[uuid.UUID, Enrichment]:
    candidates = Enrichment.objects.filter(
        organization=organization,
        person_id__in=person_ids,
        field=field,
        status__in=REUSABLE_STATUSES,
        superseded_at__isnull=True,
    )
    max_age = settings.ENRICHMENT_REUSE_MAX_AGE
    if max_age is None:
        return {enrichment.person_id: enrichment for enrichment in candidates}
    oldest_reusable = timezone.now() - timedelta(seconds=max_age)
    reusable, stale = {}, []
    for enrichment in candidates:
        if enrichment.status == Status.FINISHED and enrichment.finished_at < oldest_reusable:
            stale.append(enrichment.pk)
        else:
            reusable[enrichment.person_id] = enrichment
    if stale:
        Enrichment.objects.filter(pk__in=stale).update(superseded_at=timezone.now())
    return reusable


def enrichments_release_for_deletion(*, enrichments: QuerySet[Enrichment]) -> None:
    """Releases the reservations of the pending enrichments about to be deleted with their person.
    Runs inside the deleting transaction (see `release_pending_then_cascade`); a worker settling
    one of them waits on the credit row lock and then finds the row gone."""
    pending = enrichments.filter(status=Status.PENDING)
    for organization_id in sorted(set(pending.values_list("organization_id", flat=True))):
        account = credit_account_lock(organization_id=organization_id)
        prices = pending.filter(organization_id=organization_id).values_list("price", flat=True)
        credits_release(account=account, amount=sum(prices))


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
            .filter(pk__in=enrichment_ids, status=Status.PENDING)
            .filter(
                Q(started_at__isnull=True)
                | Q(started_at__lt=lease_expired)
                | Q(claim_token=claim_token)
            )
        )
        Enrichment.objects.filter(pk__in=[enrichment.pk for enrichment in claimable]).update(
            attempts=F("attempts") + 1, started_at=now, claim_token=claim_token
        )
    for enrichment in claimable:
        enrichment.attempts += 1
        enrichment.started_at = now
    return claimable


def enrichment_complete(
    *,
    enrichment: Enrichment,
    values: Sequence[FoundValue],
    provider: str,
    global_enrichment_id: uuid.UUID | None = None,
) -> Enrichment | None:
    """Finishes a pending enrichment: contact points saved, and the price charged when data was
    found or released when not. None when it is no longer pending (cancelled, or settled by a
    duplicate job), and then nothing changes."""

    def finish(settled: Enrichment, account: CreditAccount) -> None:
        settled.data_found = bool(values)
        settled.data = [{"value": found.value, "type": found.type} for found in values]
        settled.provider = provider
        settled.global_enrichment_id = global_enrichment_id
        if values:
            contact_points_add(
                person_id=settled.person_id,
                kind=CONTACT_KIND_BY_FIELD[settled.field],
                found=[(found.value, found.type) for found in values],
                provider=provider,
            )
        if values and settled.price:
            settled.credit_transaction = credits_charge(
                account=account,
                amount=settled.price,
                operation=f"enrichment.{settled.field}",
                reference_id=settled.pk,
            )
            settled.credits_charged = settled.price
        else:
            credits_release(account=account, amount=settled.price)

    return _settle(enrichment=enrichment, status=Status.FINISHED, apply=finish)


def enrichment_end_unfound(
    *, enrichment: Enrichment, status: str, reason: str
) -> Enrichment | None:
    """Ends a pending enrichment as failed, timed out or cancelled and releases its reservation.
    None when it is no longer pending."""

    def release(settled: Enrichment, account: CreditAccount) -> None:
        settled.error = reason
        settled.data_found = False
        credits_release(account=account, amount=settled.price)

    return _settle(enrichment=enrichment, status=status, apply=release)


def _settle(
    *,
    enrichment: Enrichment,
    status: str,
    apply: Callable[[Enrichment, CreditAccount], None],
) -> Enrichment | None:
    with transaction.atomic(durable=True):
        account = credit_account_lock(organization_id=enrichment.organization_id)
        settled = (
            Enrichment.objects.select_for_update()
            .filter(pk=enrichment.pk, status=Status.PENDING)
            .first()
        )
        if settled is None:
            return None
        apply(settled, account)
        settled.status = status
        settled.finished_at = timezone.now()
        settled.save()
    return settled


def enrichment_retry_later(*, enrichment: Enrichment) -> float | None:
    """Gives the claim back and queues the enrichment again after an exponential backoff with full
    jitter. Returns the delay, or None when it is no longer pending."""
    ceiling = min(
        settings.ENRICHMENT_RETRY_BACKOFF_SECONDS * 2 ** max(enrichment.attempts - 1, 0),
        settings.ENRICHMENT_RETRY_BACKOFF_MAX_SECONDS,
    )
    # "Equal jitter": at least half the backoff, so retries of one burst spread out but still wait.
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    with transaction.atomic():
        released = Enrichment.objects.filter(pk=enrichment.pk, status=Status.PENDING).update(
            started_at=None, claim_token="", queued_at=timezone.now()
        )
        if not released:
            return None
        transaction.on_commit(
            partial(enqueue_enrichments, [enrichment.pk], countdown=delay), robust=True
        )
    return delay


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
        transaction.on_commit(partial(enqueue_enrichments, requeued), robust=True)
    timed_out: list[uuid.UUID] = []
    # Per organization, the credit row is locked before the enrichment rows, as everywhere else.
    for organization_id in sorted(set(exhausted.values_list("organization_id", flat=True))):
        with transaction.atomic(durable=True):
            account = credit_account_lock(organization_id=organization_id)
            rows = list(
                exhausted.filter(organization_id=organization_id)
                .select_for_update(skip_locked=True)
                .values_list("pk", "price")
            )
            ids = [pk for pk, _ in rows]
            Enrichment.objects.filter(pk__in=ids).update(
                status=Status.TIMEOUT,
                error="timeout",
                data_found=False,
                finished_at=now,
                updated_at=now,
            )
            credits_release(account=account, amount=sum(price for _, price in rows))
        timed_out.extend(ids)
    return RequeueReport(requeued=requeued, timed_out=timed_out, dry_run=False)


def enrichments_complete_from_shared_answers(
    *, enrichments: Sequence[Enrichment]
) -> list[Enrichment]:
    """Completes the enrichments whose identity already has a fresh shared answer, and returns
    the others, which need a provider lookup."""
    keys = {enrichment.pk: lookup_key(subject_of(enrichment.person)) for enrichment in enrichments}
    need_lookup = []
    for field in {enrichment.field for enrichment in enrichments}:
        of_field = [enrichment for enrichment in enrichments if enrichment.field == field]
        answers = global_enrichments_fresh(keys=[keys[e.pk] for e in of_field], field=field)
        for enrichment in of_field:
            answer = answers.get(keys[enrichment.pk])
            if answer is None:
                need_lookup.append(enrichment)
                continue
            enrichment_complete(
                enrichment=enrichment,
                values=[FoundValue(**found) for found in answer.data],
                provider=answer.provider,
                global_enrichment_id=answer.pk,
            )
    return need_lookup


def enrichment_settle_lookup(*, enrichment: Enrichment, lookup: Future[LookupOutcome]) -> None:
    """Settles a claimed enrichment with its provider answer: finished (and shared with other
    organizations), retried later after a transient error while attempts remain, else failed."""
    try:
        outcome = lookup.result()
    except PermanentProviderError as error:
        enrichment_end_unfound(enrichment=enrichment, status=Status.FAILED, reason=error.reason)
        return
    except Exception as error:
        if not isinstance(error, TransientProviderError):
            logger.exception("Provider bug while enriching %s; treated as transient", enrichment.pk)
        reason = getattr(error, "reason", "provider_error")
        if enrichment.attempts >= settings.ENRICHMENT_MAX_ATTEMPTS:
            enrichment_end_unfound(enrichment=enrichment, status=Status.FAILED, reason=reason)
        else:
            enrichment_retry_later(enrichment=enrichment)
        return
    shared, _ = GlobalEnrichment.objects.update_or_create(
        lookup_key=lookup_key(subject_of(enrichment.person)),
        field=enrichment.field,
        defaults={
            "data": [{"value": found.value, "type": found.type} for found in outcome.values],
            "provider": outcome.provider,
        },
    )
    enrichment_complete(
        enrichment=enrichment,
        values=outcome.values,
        provider=outcome.provider,
        global_enrichment_id=shared.pk,
    )
