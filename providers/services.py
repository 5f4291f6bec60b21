"""The entry points a waterfall calls: one provider request with everything shared around it
(the circuit asked first and told the outcome, a "slow down" hint paused for every worker, the
call recorded in the buffered log) and the answer held to ENRICHMENT_MIN_QUALITY."""

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import caches
from django.utils import timezone

from enrichment_project.cache import shared_counter_incr
from enrichment_project.metrics import PROVIDER_REQUEST_DURATION, PROVIDER_REQUESTS
from providers.base import (
    QUALITIES,
    RATE_LIMITED,
    Adapter,
    Answer,
    AsyncAdapter,
    PollResult,
    ProviderError,
    ProviderFailure,
    RateLimitWait,
    Subject,
    Submission,
    SyncAdapter,
    TransientProviderError,
)
from providers.calls import recorder
from providers.circuit import Circuit, ProviderUnavailable

T = TypeVar("T", Answer, Submission, PollResult)
# What every worker waits after a "slow down" that gave no Retry-After or reset time: 0.1 s
# for the first, doubled for each next one within SLOW_DOWN_MEMORY seconds of it, 1 s at most.
# A refusal the limiter did not prevent is mostly a request that reached the provider a little
# late (the provider counts arrivals); a provider whose limit is really lower than configured
# keeps refusing and soon gets the full second.
SLOW_DOWN_FIRST_PAUSE = 0.1
SLOW_DOWN_PAUSE = 1.0
SLOW_DOWN_MEMORY = 10


def provider_lookup(
    *, adapter: SyncAdapter, subject: Subject, field: str, reference_id: uuid.UUID | None
) -> Answer:
    """The provider's answer for one subject, values below the field's minimum quality dropped;
    raises ProviderUnavailable, or the adapter's classified ProviderError."""
    answer = _call(adapter, lambda: adapter.lookup(subject, field), reference_id=reference_id)
    return answer_at_min_quality(answer, field)


def provider_submit(
    *, adapter: AsyncAdapter, subjects: Sequence[Subject], field: str
) -> Submission:
    return _call(adapter, lambda: adapter.submit(subjects, field))


def provider_poll(*, adapter: AsyncAdapter, request_id: str) -> PollResult:
    return _call(adapter, lambda: adapter.poll(request_id), request_id=request_id)


def answer_at_min_quality(answer: Answer, field: str) -> Answer:
    floor = QUALITIES.index(settings.ENRICHMENT_MIN_QUALITY.get(field, "unknown"))
    kept = tuple(v for v in answer.values if QUALITIES.index(v.quality) >= floor)
    if len(kept) == len(answer.values):
        return answer
    return replace(answer, values=kept, note="" if kept else "below_min_quality")


def _call(
    adapter: Adapter,
    send: Callable[[], T],
    *,
    reference_id: uuid.UUID | None = None,
    request_id: str = "",
) -> T:
    circuit = Circuit(adapter.name) if adapter.has_circuit else None
    if circuit is not None and not circuit.allow():
        raise ProviderUnavailable(circuit.state())
    log = {"provider": adapter.name, "at": timezone.now(), "reference_id": reference_id}
    started = time.monotonic()
    try:
        result = send()
    except (RateLimitWait, ProviderUnavailable):
        raise  # Nothing was sent.
    except ProviderError as error:
        if circuit is not None:
            _circuit_told(circuit, adapter, error)
        _record(
            log,
            started,
            provider_request_id=request_id,
            outcome=error.outcome,
            http_status=error.http_status,
            error=f"{error.reason}: {error.detail}" if error.detail else error.reason,
        )
        raise
    if isinstance(result, Answer) and not result.sent:
        return result  # The subject lacked what the provider needs: no request, no trial spent.
    if circuit is not None:
        circuit.record_success()
    _record(log, started, **_outcome_of(result, request_id))
    return result


def _circuit_told(circuit: Circuit, adapter: Adapter, error: ProviderError) -> None:
    if isinstance(error, ProviderFailure):
        circuit.record_failure(error.reason)
    elif isinstance(error, TransientProviderError) and error.reason == RATE_LIMITED[1]:
        # "Slow down" says the provider is busy, not broken: every worker waits (its hint, else a
        # backoff) and the circuit is left alone, or a burst of refusals would take the provider
        # out for the whole transient cooldown.
        adapter.http.limiter.pause(error.retry_after or _slow_down_pause(adapter.name))
    elif isinstance(error, TransientProviderError):
        circuit.record_transient(error.reason)
        if error.retry_after and error.http_status:
            # The provider gave a time to come back: every worker waits, not just this one.
            adapter.http.limiter.pause(error.retry_after)
    else:
        circuit.record_success()


def _slow_down_pause(provider: str) -> float:
    """The backoff after a "slow down" without a hint, counted for every worker in the
    providers cache."""
    count = shared_counter_incr(
        caches["providers"], f"slow-downs:{provider}", timeout=SLOW_DOWN_MEMORY
    )
    return min(SLOW_DOWN_FIRST_PAUSE * 2 ** (count - 1), SLOW_DOWN_PAUSE)


def _record(log: dict[str, Any], started: float, **call: Any) -> None:
    """The one place a sent request is classified: counted and timed for /metrics, and buffered
    for the call log."""
    seconds = time.monotonic() - started
    PROVIDER_REQUESTS.labels(log["provider"], call["outcome"]).inc()
    PROVIDER_REQUEST_DURATION.labels(log["provider"]).observe(seconds)
    recorder.record(**log, **call, duration_ms=round(seconds * 1000))


def _outcome_of(result: Answer | Submission | PollResult, request_id: str) -> dict[str, object]:
    if isinstance(result, Answer):
        return {
            "outcome": "found" if result.found else "not_found",
            "http_status": result.http_status,
            "credits_spent": result.credits_spent,
            "credits_remaining": result.credits_remaining,
            "error": result.note,
        }
    if isinstance(result, Submission):
        request_id, outcome = result.request_id, "pending"
    elif result.answers is None:
        outcome = "pending"
    else:
        outcome = "found" if any(a.found for a in result.answers) else "not_found"
    return {
        "outcome": outcome,
        "http_status": result.http_status,
        "credits_remaining": result.credits_remaining,
        "provider_request_id": request_id,
    }
