"""Providers run as a waterfall per field, in the order ENRICHMENT_PROVIDERS gives, until one
finds data. A provider that is unavailable (open circuit) or fails as a whole (rejected key, out of
credits) is skipped; a transient or permanent error ends the attempt. Providers that already
answered "not found" for the enrichment in an earlier attempt are not asked again."""

import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings

from providers import registry
from providers.base import (
    AsyncAdapter,
    FoundValue,
    ProviderError,
    ProviderFailure,
    Subject,
    TransientProviderError,
)
from providers.circuit import OPEN, Circuit
from providers.services import ProviderUnavailable, provider_lookup

NO_PROVIDER_AVAILABLE = "no_provider_available"


@dataclass(frozen=True)
class LookupOutcome:
    """A finished lookup: the values of the provider whose answer was used, or none anywhere
    (`provider` is then "")."""

    values: tuple[FoundValue, ...]
    provider: str


class WaterfallStopped(Exception):
    """The attempt ended without an outcome. `not_found` lists every provider that has answered
    "not found" so far (earlier attempts included), for the retry to skip; `retry_after` is the
    least delay worth waiting (a provider's hint, a circuit's reopening), 0 without one."""

    def __init__(
        self,
        reason: str,
        *,
        not_found: tuple[str, ...],
        transient: bool,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.not_found = not_found
        self.transient = transient
        self.retry_after = retry_after


class AsyncHandOff(Exception):
    """The next provider to ask answers asynchronously (submit, then poll): the enrichment goes
    to it with the others of its job (enrichment.async_lookups), which resume the waterfall after
    it when it says "not found". `not_found` is what the waterfall learnt before it."""

    def __init__(self, adapter: AsyncAdapter, *, not_found: tuple[str, ...]) -> None:
        super().__init__(adapter.name)
        self.adapter = adapter
        self.not_found = not_found


def waterfall_lookup(
    *,
    subject: Subject,
    field: str,
    reference_id: uuid.UUID | None,
    not_found: Collection[str] = (),
) -> LookupOutcome:
    """Asks each provider of the field in turn, except those in `not_found`, and stops at the
    first that finds something. Raises WaterfallStopped when a provider errs, or when a provider
    that was not asked (unavailable, failing) might still know; AsyncHandOff when the next one to
    ask is asynchronous and available."""
    answered = list(not_found)
    skipped_until: list[float] = []
    for entry in settings.ENRICHMENT_PROVIDERS.get(field, ["sandbox"]):
        adapter = registry.adapter(entry)
        if adapter.name in answered:
            continue
        if isinstance(adapter, AsyncAdapter):
            circuit = Circuit(adapter.name).state()
            if circuit.state == OPEN:
                skipped_until.append(circuit.reopen_at or 0.0)
                continue
            raise AsyncHandOff(adapter, not_found=tuple(answered))
        try:
            answer = provider_lookup(
                adapter=adapter, subject=subject, field=field, reference_id=reference_id
            )
        except ProviderUnavailable as error:
            skipped_until.append(error.state.reopen_at or 0.0)
            continue
        except ProviderFailure:
            # Its circuit is open now, for the cooldown.
            skipped_until.append(time.time() + settings.ENRICHMENT_PROVIDER_COOLDOWN)
            continue
        except ProviderError as error:
            raise _stopped(error, answered) from error
        if answer.found:
            return LookupOutcome(values=answer.values, provider=adapter.name)
        answered.append(adapter.name)
    if skipped_until:
        raise WaterfallStopped(
            NO_PROVIDER_AVAILABLE,
            not_found=tuple(answered),
            transient=True,
            retry_after=max(min(skipped_until) - time.time(), 0.0),
        )
    return LookupOutcome(values=(), provider="")


def _stopped(error: ProviderError, answered: list[str]) -> WaterfallStopped:
    """A transient error is retried (after the provider's hint, when it gave one); any other is
    permanent: the provider refused this request itself."""
    transient = isinstance(error, TransientProviderError)
    return WaterfallStopped(
        error.reason,
        not_found=tuple(answered),
        transient=transient,
        retry_after=(error.retry_after or 0.0) if transient else 0.0,
    )
