"""Reads of the provider call log and circuits for staff (the admin's providers page): figures per
provider over a window, computed by PostgreSQL in one query whatever the number of providers."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Aggregate, Count, FloatField, OuterRef, Q, Subquery
from django.db.models.functions import JSONObject
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from providers.circuit import CircuitState, circuit_states
from providers.models import ProviderCall
from providers.registry import provider_names_configured

STATS_WINDOW = timedelta(hours=24)
Outcome = ProviderCall.Outcome
ERROR_OUTCOMES = (Outcome.TRANSIENT, Outcome.PROVIDER_FAILURE, Outcome.INVALID_REQUEST)


class Percentile(Aggregate):
    """PostgreSQL's continuous percentile of the expression (interpolated between rows)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float, **extra: Any) -> None:
        if not 0 <= fraction <= 1:
            raise ValueError("a percentile's fraction lies between 0 and 1")
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass(frozen=True)
class Reported:
    """Something the log recorded, with the time of the call that recorded it."""

    value: Any
    at: datetime


@dataclass(frozen=True)
class ProviderStats:
    provider: str
    configured: bool
    circuit: CircuitState
    requests: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p95_ms: float | None = None
    last_error: Reported | None = None
    credits_remaining: Reported | None = None

    @property
    def found_rate(self) -> float | None:
        """Found among the answers (found or not found); errors and pending async calls are no
        answer about the person, so they are left out. None before any answer."""
        found = self.outcomes.get(Outcome.FOUND, 0)
        answered = found + self.outcomes.get(Outcome.NOT_FOUND, 0)
        return found / answered if answered else None


def provider_stats(
    *, now: datetime | None = None, window: timedelta = STATS_WINDOW
) -> list[ProviderStats]:
    """Per provider over `window` up to `now`: requests, outcomes, p50/p95 latency, the last error
    and the last remaining quota the provider reported, with its circuit. The configured providers
    come first (even without calls), then any other provider with calls in the window. One SQL
    query and one cache round trip."""
    since = (now or timezone.now()) - window
    recent = ProviderCall.objects.filter(created_at__gte=since)
    # Walks the (provider, -created_at) index back from the newest call of the group's provider.
    newest = recent.filter(provider=OuterRef("provider")).order_by("-created_at", "-id")

    def latest(condition: Q, column: str) -> Subquery:
        reported = JSONObject(v=column, at="created_at")
        return Subquery(newest.filter(condition).values(json=reported)[:1])

    rows = (
        recent.order_by()
        .values("provider")
        .annotate(
            requests=Count("pk"),
            p50=Percentile("duration_ms", 0.5),
            p95=Percentile("duration_ms", 0.95),
            last_error=latest(Q(outcome__in=ERROR_OUTCOMES), "error"),
            credits_remaining=latest(Q(credits_remaining__isnull=False), "credits_remaining"),
            **{
                f"outcome_{outcome}": Count("pk", filter=Q(outcome=outcome))
                for outcome in Outcome.values
            },
        )
    )
    by_provider = {row["provider"]: row for row in rows}
    configured = provider_names_configured()
    names = configured + sorted(set(by_provider) - set(configured))
    return [
        _stats(name, name in configured, circuit, by_provider.get(name))
        for name, circuit in zip(names, circuit_states(names), strict=True)
    ]


def _stats(
    name: str, configured: bool, circuit: CircuitState, row: dict[str, Any] | None
) -> ProviderStats:
    if row is None:
        return ProviderStats(provider=name, configured=configured, circuit=circuit)
    return ProviderStats(
        provider=name,
        configured=configured,
        circuit=circuit,
        requests=row["requests"],
        outcomes={outcome: row[f"outcome_{outcome}"] for outcome in Outcome.values},
        p50_ms=row["p50"],
        p95_ms=row["p95"],
        last_error=_reported(row["last_error"]),
        credits_remaining=_reported(row["credits_remaining"]),
    )


def _reported(value: dict[str, Any] | None) -> Reported | None:
    return Reported(value=value["v"], at=parse_datetime(value["at"])) if value else None
