"""Providers run as a waterfall per field, in the order ENRICHMENT_PROVIDERS gives."""

import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from enrichment.providers.base import (
    FoundValue,
    PermanentProviderError,
    Provider,
    Subject,
    TransientProviderError,
)
from enrichment_project.metrics import PROVIDER_REQUEST_DURATION, PROVIDER_REQUESTS


@dataclass(frozen=True)
class LookupOutcome:
    values: list[FoundValue]
    provider: str


@cache
def _providers(paths: tuple[str, ...]) -> tuple[Provider, ...]:
    return tuple(import_string(path)() for path in paths)


def providers_for(field: str) -> tuple[Provider, ...]:
    return _providers(tuple(settings.ENRICHMENT_PROVIDERS[field]))


def waterfall_lookup(subject: Subject, field: str) -> LookupOutcome:
    """Asks each provider of the field in turn and stops at the first that finds something.
    A provider error ends the attempt: the caller retries transient ones as a whole."""
    for provider in providers_for(field):
        values = _observed_lookup(provider, subject, field)
        if values:
            return LookupOutcome(values=values, provider=provider.name)
    return LookupOutcome(values=[], provider="")


def _observed_lookup(provider: Provider, subject: Subject, field: str) -> list[FoundValue]:
    """One provider request, counted by outcome and timed."""
    outcome = "error"  # anything unclassified: a bug of the adapter
    start = time.perf_counter()
    try:
        values = provider.lookup(subject, field)
        outcome = "found" if values else "not_found"
        return values
    except TransientProviderError:
        outcome = "transient"
        raise
    except PermanentProviderError:
        outcome = "provider_failure"
        raise
    finally:
        PROVIDER_REQUEST_DURATION.labels(provider.name).observe(time.perf_counter() - start)
        PROVIDER_REQUESTS.labels(provider.name, outcome).inc()
