"""Celery tasks: thin wrappers that take ids and call services. Results live on the rows."""

import contextvars
import logging
import time
from collections.abc import Collection
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import cache

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

from enrichment.async_lookups import async_lookups_poll, enrichments_hand_to_async
from enrichment.models import Enrichment
from enrichment.queueing import PROCESS_ENRICHMENTS_TASK
from enrichment.selectors import subject_of
from enrichment.services import (
    enrichments_claim,
    enrichments_complete_from_shared_answers,
    enrichments_requeue_timed_out,
    enrichments_settle_lookups,
)
from enrichment.waterfall import LookupOutcome, waterfall_lookup
from enrichment_project.log_context import log_context_bound
from providers.calls import provider_calls_flush

logger = logging.getLogger(__name__)


@cache
def _lookup_pool() -> ThreadPoolExecutor:
    # One per worker process, shared by the jobs running on its threads; created lazily, so never
    # before a fork.
    return ThreadPoolExecutor(
        max_workers=settings.ENRICHMENT_PROVIDER_CONCURRENCY, thread_name_prefix="lookup"
    )


# A lost database connection (a restarted or failed-over PostgreSQL) retries the job soon, with the
# same id, so it takes its claims back instead of waiting for the re-queue service.
@shared_task(
    name=PROCESS_ENRICHMENTS_TASK,
    bind=True,
    autoretry_for=(InterfaceError, OperationalError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def process_enrichments(self: Task, enrichment_ids: list[str]) -> None:
    """Claims the job's pending enrichments, looks them up concurrently outside any transaction,
    and settles the answers in short transactions as they arrive. At the soft time limit the job
    stops waiting: what is still unanswered stays claimed until the lease (the hard limit) ends,
    then the re-queue service takes it back."""
    deadline = time.monotonic() + settings.CELERY_TASK_SOFT_TIME_LIMIT
    claimed = enrichments_claim(enrichment_ids=enrichment_ids, claim_token=self.request.id or "")
    lookups: dict[Future[LookupOutcome], Enrichment] = {
        # Each lookup thread logs with the job's ids and its own enrichment's.
        _lookup_pool().submit(contextvars.copy_context().run, _lookup, enrichment): enrichment
        for enrichment in enrichments_complete_from_shared_answers(enrichments=claimed)
    }
    handed = []
    while lookups:
        # Settles each wave of answers in one transaction while the rest are in flight.
        done = _next_wave(lookups, deadline)
        if not done:
            _abandon(lookups)
            break
        handed += enrichments_settle_lookups(
            lookups=[(lookups.pop(future), future) for future in done]
        )
        _calls_flush()
    if handed:
        # The job's enrichments for an asynchronous provider go to it in groups, not one by one,
        # in the order they were requested.
        position = {pk: index for index, pk in enumerate(enrichment_ids)}
        handed.sort(key=lambda pair: position[str(pair[0].pk)])
        enrichments_hand_to_async(handed=handed)
        _calls_flush()


def _next_wave(
    lookups: Collection[Future[LookupOutcome]], deadline: float
) -> set[Future[LookupOutcome]]:
    """The answers to settle together: the first to arrive, then more for as long as each wave
    window brings at least one, at most ENRICHMENT_WAVE_MAX after the first and never past the
    deadline. Answers that come in spread out (threads waking one by one after a long wait)
    then make one settlement, one turn on the credit row's lock, instead of several. Empty
    when the deadline passed first."""
    done, _ = wait(
        lookups, timeout=max(deadline - time.monotonic(), 0), return_when=FIRST_COMPLETED
    )
    window = settings.ENRICHMENT_WAVE_WINDOW
    if not done or not window:
        return done
    closes = min(time.monotonic() + settings.ENRICHMENT_WAVE_MAX, deadline)
    while (timeout := min(window, closes - time.monotonic())) > 0:
        arrived, in_flight = wait(lookups, timeout=timeout)
        quiet = len(arrived) == len(done)
        done = arrived
        if quiet or not in_flight:
            break
    return done


def _abandon(lookups: dict[Future[LookupOutcome], Enrichment]) -> None:
    """Lookups not started yet are dropped; running ones end on their own (every provider call
    has a timeout) and their answers are not settled by this job."""
    for future in lookups:
        future.cancel()
    logger.warning(
        "Job stopped at its time limit with %d lookups unanswered; they are left to the lease",
        len(lookups),
    )


def _calls_flush() -> None:
    """Writes the wave's provider calls, after its settlement committed: a failure keeps them
    buffered for the next flush and must not stop the settling of the other lookups."""
    try:
        provider_calls_flush()
    except Exception:
        logger.exception("Provider calls not written yet; kept for the next flush")


def _lookup(enrichment: Enrichment) -> LookupOutcome:
    with log_context_bound(enrichment_id=enrichment.pk):
        try:
            return waterfall_lookup(
                subject=subject_of(enrichment.person),
                field=enrichment.field,
                reference_id=enrichment.pk,
                not_found=enrichment.providers_not_found,
            )
        finally:
            # A lookup thread that wrote to the database (a full call-log buffer flushes itself)
            # gives its connection back: the pool has many more threads than PostgreSQL has
            # connections to spare.
            connections.close_all()


@shared_task(name="enrichment.requeue_timed_out_enrichments")
def requeue_timed_out_enrichments() -> None:
    report = enrichments_requeue_timed_out(
        older_than=settings.ENRICHMENT_TIMEOUT, max_attempts=settings.ENRICHMENT_MAX_ATTEMPTS
    )
    if report.requeued or report.timed_out:
        logger.info(
            "Re-queued %d and timed out %d stuck enrichments",
            len(report.requeued),
            len(report.timed_out),
        )


@shared_task(name="enrichment.poll_async_lookups")
def poll_async_lookups() -> None:
    polled = async_lookups_poll()
    if polled:
        logger.info("Polled %d asynchronous provider submissions", polled)
