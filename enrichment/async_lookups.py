"""The asynchronous stage of the waterfall (Dropcontact): claimed enrichments are submitted in
groups of up to the provider's batch limit, and a beat-driven sweep polls the submissions and
settles the answers with the usual charge/release rules, or counts a submission not answered by
ENRICHMENT_ASYNC_MAX_WAIT as a transient failure. The reservations are held meanwhile.

A submission is recorded as an intent (status `submitting`, its enrichments linked by live items)
before the request is sent, and marked `submitted` with the provider's request id afterwards. An
enrichment has at most one live item (a unique index), so a redelivered job finds it linked and
does not submit it again. An intent whose worker died before recording the answer cannot be looked
up at the provider (Dropcontact has no client-side id to search by): once its lease passes, the
sweep ends it `lost` and its enrichments are retried through the waterfall."""

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from enrichment.models import (
    LIVE_ASYNC_STATUSES,
    AsyncLookup,
    AsyncLookupItem,
    AsyncLookupStatus,
    Enrichment,
    Status,
)
from enrichment.selectors import lookup_key, subject_of
from enrichment.services import (
    Retry,
    Settlement,
    enrichments_not_found_record,
    enrichments_retry_later,
    enrichments_settle,
    global_enrichments_record,
)
from enrichment.waterfall import AsyncHandOff, LookupOutcome
from providers import registry
from providers.base import (
    Answer,
    AsyncAdapter,
    PermanentProviderError,
    ProviderError,
    ProviderFailure,
    Submission,
    TransientProviderError,
)
from providers.calls import provider_calls_flush
from providers.services import (
    ProviderUnavailable,
    answer_at_min_quality,
    provider_poll,
    provider_submit,
)

logger = logging.getLogger(__name__)


def enrichments_hand_to_async(*, handed: Sequence[tuple[Enrichment, AsyncHandOff]]) -> None:
    """The job's enrichments whose waterfall reached an asynchronous provider: what the waterfall
    learnt is stored, they are submitted in groups per provider, and those the provider would not
    take (open circuit, out of credits) go back to the waterfall, which then skips it."""
    enrichments_not_found_record(
        not_found={enrichment.pk: hand_off.not_found for enrichment, hand_off in handed}
    )
    by_provider: dict[str, list[Enrichment]] = {}
    adapters: dict[str, AsyncAdapter] = {}
    for enrichment, hand_off in handed:
        enrichment.providers_not_found = list(hand_off.not_found)
        by_provider.setdefault(hand_off.adapter.name, []).append(enrichment)
        adapters[hand_off.adapter.name] = hand_off.adapter
    for name, enrichments in by_provider.items():
        refused = enrichments_submit_async(enrichments=enrichments, adapter=adapters[name])
        if refused:
            enrichments_retry_later(
                retries=[
                    Retry(enrichment=e, not_found=tuple(e.providers_not_found)) for e in refused
                ]
            )


def enrichments_submit_async(
    *, enrichments: Sequence[Enrichment], adapter: AsyncAdapter
) -> list[Enrichment]:
    """The seam with the waterfall, which calls it when the next provider of the claimed
    enrichments' field is asynchronous. Submits them in groups of up to the adapter's batch
    limit, one request each, sent outside any transaction; enrichments no longer pending, or
    already linked to a live submission (a redelivered job), are left out. Returns those the
    provider did not take, for the waterfall to ask its next provider: every one of a group the
    provider could not take as a whole (circuit open, key rejected, out of credits). The others
    wait on a submission, or were retried later (a transient refusal) or failed (an invalid
    request). Every stored person has what Dropcontact needs (a name at a company, or a LinkedIn
    URL: the `person_is_identifiable` constraint), so none is left out for lack of data."""
    passed_on: list[Enrichment] = []
    for field in sorted({enrichment.field for enrichment in enrichments}):
        of_field = [enrichment for enrichment in enrichments if enrichment.field == field]
        for start in range(0, len(of_field), adapter.batch_limit):
            chunk = of_field[start : start + adapter.batch_limit]
            passed_on += _submit_group(chunk, adapter, field)
    provider_calls_flush()
    return passed_on


def _submit_group(
    enrichments: Sequence[Enrichment], adapter: AsyncAdapter, field: str
) -> list[Enrichment]:
    lookup, linked = _intent_record(enrichments, adapter, field)
    if not linked:
        return []
    try:
        submission = provider_submit(
            adapter=adapter, subjects=[subject_of(e.person) for e in linked], field=field
        )
    except (ProviderUnavailable, ProviderFailure) as error:
        _lookups_end([lookup.pk], AsyncLookupStatus.REFUSED, error.reason)
        return linked
    except TransientProviderError as error:
        _lookups_end([lookup.pk], AsyncLookupStatus.REFUSED, error.reason)
        enrichments_retry_later(retries=[Retry(enrichment=e) for e in linked])
        return []
    except PermanentProviderError as error:
        _lookups_end([lookup.pk], AsyncLookupStatus.REFUSED, error.reason)
        enrichments_settle(
            settlements=[
                Settlement(enrichment=e, status=Status.FAILED, reason=error.reason) for e in linked
            ]
        )
        return []
    _submitted_record(lookup, submission)
    return []


def _intent_record(
    enrichments: Sequence[Enrichment], adapter: AsyncAdapter, field: str
) -> tuple[AsyncLookup, list[Enrichment]]:
    """Records the submission before it is sent and links the pending enrichments that no live
    submission holds, in one short transaction; returns the ones linked, in submission order.
    The intent's `poll_after` is a lease past the task time limit: only once the submitting job
    is surely dead does the sweep treat it as lost."""
    now = timezone.now()
    lookup = AsyncLookup(
        provider=adapter.name,
        field=field,
        poll_after=now + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT),
        deadline=now + timedelta(seconds=settings.ENRICHMENT_ASYNC_MAX_WAIT),
    )
    by_id = {enrichment.pk: enrichment for enrichment in enrichments}
    with transaction.atomic(durable=True):
        pending = set(
            Enrichment.objects.filter(pk__in=by_id, status=Status.PENDING).values_list(
                "pk", flat=True
            )
        )
        lookup.save(force_insert=True)
        # A live item of another submission wins (ON CONFLICT DO NOTHING on the unique index,
        # which also waits for a concurrent submitter's transaction): no enrichment goes twice.
        AsyncLookupItem.objects.bulk_create(
            [
                AsyncLookupItem(lookup=lookup, enrichment_id=pk, position=position)
                for position, pk in enumerate(pk for pk in by_id if pk in pending)
            ],
            ignore_conflicts=True,
        )
        linked = list(lookup.items.order_by("position").values_list("enrichment_id", flat=True))
        if not linked:
            lookup.delete()
    return lookup, [by_id[pk] for pk in linked]


def _submitted_record(lookup: AsyncLookup, submission: Submission) -> None:
    now = timezone.now()
    recorded = AsyncLookup.objects.filter(pk=lookup.pk, status=AsyncLookupStatus.SUBMITTING).update(
        status=AsyncLookupStatus.SUBMITTED,
        request_id=submission.request_id,
        submitted_at=now,
        poll_after=now + timedelta(seconds=settings.ENRICHMENT_ASYNC_POLL_SECONDS),
        deadline=now + timedelta(seconds=settings.ENRICHMENT_ASYNC_MAX_WAIT),
    )
    if not recorded:
        # Only after the submitting job outlived its time limit: the sweep has retried them.
        logger.warning(
            "Submission %s (%s) accepted after it was given up as lost",
            submission.request_id,
            lookup.provider,
        )


def _lookups_end(lookup_ids: Sequence[uuid.UUID], status: str, reason: str) -> None:
    """Ends submissions: their items stop being live, so their enrichments can be submitted
    again."""
    with transaction.atomic():
        AsyncLookup.objects.filter(pk__in=lookup_ids).update(
            status=status, ended_at=timezone.now(), error=reason[:200]
        )
        AsyncLookupItem.objects.filter(lookup_id__in=lookup_ids, live=True).update(live=False)


# --- The sweep ---------------------------------------------------------------------------------


def async_lookups_poll() -> int:
    """Polls every due submission, at most ENRICHMENT_ASYNC_SWEEP_MAX per run, and settles the
    answered ones; returns how many were handled. Submissions are claimed with SKIP LOCKED and a
    lease, so two sweeps never poll one at once and a sweep that dies leaves it due again."""
    claimed = _due_lookups_claim()
    for lookup in claimed:
        try:
            _lookup_poll(lookup)
        except Exception:
            # One bad submission does not hold up the others; its lease makes it due again.
            logger.exception("Polling submission %s (%s) failed", lookup.pk, lookup.provider)
    provider_calls_flush()
    return len(claimed)


def _due_lookups_claim() -> list[AsyncLookup]:
    now = timezone.now()
    with transaction.atomic():
        claimed = list(
            AsyncLookup.objects.select_for_update(skip_locked=True)
            .filter(status__in=LIVE_ASYNC_STATUSES, poll_after__lte=now)
            .order_by("poll_after")[: settings.ENRICHMENT_ASYNC_SWEEP_MAX]
        )
        AsyncLookup.objects.filter(pk__in=[lookup.pk for lookup in claimed]).update(
            poll_after=now + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
        )
    return claimed


def _lookup_poll(lookup: AsyncLookup) -> None:
    if lookup.status == AsyncLookupStatus.SUBMITTING:
        # Its submitter died between recording the intent and recording the answer.
        _lookup_give_up(lookup, AsyncLookupStatus.LOST, "async_submission_lost")
        return
    error = ""
    try:
        poll = provider_poll(adapter=_adapter(lookup.provider), request_id=lookup.request_id)
    except (ProviderError, LookupError) as failure:
        # Open circuit, rejected key, "slow down", a provider no longer configured: nothing
        # tells the answer will not come, so it is asked again until the deadline.
        poll, error = None, getattr(failure, "reason", str(failure))
    if poll is not None and poll.answers is not None:
        _answers_settle(lookup, poll.answers)
    elif timezone.now() >= lookup.deadline:
        _lookup_give_up(lookup, AsyncLookupStatus.EXPIRED, "async_max_wait")
    else:
        AsyncLookup.objects.filter(pk=lookup.pk).update(
            poll_after=timezone.now() + timedelta(seconds=settings.ENRICHMENT_ASYNC_POLL_SECONDS),
            polls=F("polls") + 1,
            error=error[:200],
        )


def _adapter(name: str) -> AsyncAdapter:
    """The configured adapter of that name (a custom one is configured by its dotted path)."""
    for entries in settings.ENRICHMENT_PROVIDERS.values():
        for entry in entries:
            if getattr(registry.adapter_class(entry), "name", None) == name:
                return registry.adapter(entry)
    return registry.adapter(name)


def _lookup_give_up(lookup: AsyncLookup, status: str, reason: str) -> None:
    """A transient failure for the lookup's pending enrichments: retried through the waterfall
    while they have attempts left, else failed with the reason. The lookup ends first, so the
    retried enrichments can be submitted again."""
    ids = list(lookup.items.filter(live=True).values_list("enrichment_id", flat=True))
    _lookups_end([lookup.pk], status, reason)
    pending = list(Enrichment.objects.filter(pk__in=ids, status=Status.PENDING))
    exhausted = [e for e in pending if e.attempts >= settings.ENRICHMENT_MAX_ATTEMPTS]
    if exhausted:
        enrichments_settle(
            settlements=[
                Settlement(enrichment=e, status=Status.FAILED, reason=reason) for e in exhausted
            ]
        )
    retried = [e for e in pending if e not in exhausted]
    if retried:
        enrichments_retry_later(retries=[Retry(enrichment=e) for e in retried])
    logger.info(
        "Gave up submission %s (%s): %s; %d retried, %d failed",
        lookup.request_id or lookup.pk,
        lookup.provider,
        reason,
        len(retried),
        len(exhausted),
    )


def _answers_settle(lookup: AsyncLookup, answers: Sequence[Answer]) -> None:
    """Settles the answered enrichments: found ones finished and charged, not-found ones finished
    and released when the provider is the field's last, else handed back to the waterfall for the
    next provider. Settling first and ending the lookup after keeps a crash in between harmless:
    the lookup is polled again and the settlement skips what is no longer pending."""
    items = list(lookup.items.select_related("enrichment__person").order_by("position"))
    if len(answers) != len(items):
        _lookup_give_up(lookup, AsyncLookupStatus.ANSWERED, "async_answer_mismatch")
        return
    answered = [
        (item, answer_at_min_quality(answer, lookup.field))
        for item, answer in zip(items, answers, strict=True)
        if item.enrichment.status == Status.PENDING
    ]
    go_on = _has_provider_after(lookup.field, lookup.provider)
    final = [(item, answer) for item, answer in answered if answer.found or not go_on]
    keys = {item.pk: lookup_key(subject_of(item.enrichment.person)) for item, _ in final}
    shared = global_enrichments_record(
        {
            (keys[item.pk], lookup.field): LookupOutcome(
                values=tuple(answer.values), provider=lookup.provider if answer.found else ""
            )
            for item, answer in final
        }
    )
    enrichments_settle(
        settlements=[
            Settlement(
                enrichment=item.enrichment,
                status=Status.FINISHED,
                values=answer.values,
                provider=lookup.provider if answer.found else "",
                global_enrichment_id=shared[(keys[item.pk], lookup.field)],
            )
            for item, answer in final
        ]
    )
    found = {item.pk for item, answer in answered if answer.found}
    with transaction.atomic():
        AsyncLookupItem.objects.filter(pk__in=found).update(found=True)
        AsyncLookupItem.objects.filter(
            pk__in=[item.pk for item, _ in answered if item.pk not in found]
        ).update(found=False)
        _lookups_end([lookup.pk], AsyncLookupStatus.ANSWERED, "")
    handed_back = [item.enrichment for item, answer in answered if not answer.found and go_on]
    if handed_back:
        # Gives the claims back and queues them: the waterfall resumes after this provider.
        enrichments_retry_later(
            retries=[
                Retry(enrichment=e, not_found=(*e.providers_not_found, lookup.provider))
                for e in handed_back
            ]
        )


def _has_provider_after(field: str, name: str) -> bool:
    names = [
        getattr(registry.adapter_class(entry), "name", entry)
        for entry in settings.ENRICHMENT_PROVIDERS.get(field, [])
    ]
    return name in names and names.index(name) < len(names) - 1


def async_providers_not_found(*, enrichment_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """Per enrichment, the asynchronous providers that answered "not found" for it: a resumed
    waterfall does not ask them again."""
    rows = AsyncLookupItem.objects.filter(
        enrichment_id__in=list(enrichment_ids), found=False
    ).values_list("enrichment_id", "lookup__provider")
    not_found: dict[uuid.UUID, set[str]] = {}
    for enrichment_id, provider in rows:
        not_found.setdefault(enrichment_id, set()).add(provider)
    return not_found
