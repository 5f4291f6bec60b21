"""A circuit per provider, shared by every worker through the providers cache (Redis when one is
configured). A provider-level failure (rejected key, out of credits) opens it for
ENRICHMENT_PROVIDER_COOLDOWN seconds; ENRICHMENT_PROVIDER_TRANSIENT_STREAK transient failures in a
row, across all workers, open it for the shorter ENRICHMENT_PROVIDER_TRANSIENT_COOLDOWN. After the
cooldown it is half-open: one caller at a time gets a trial request; a success closes it, a failure
opens it again.

Each worker process keeps its last reading of a closed circuit for
ENRICHMENT_PROVIDER_CIRCUIT_REFRESH seconds, and a success writes to Redis only while a streak
may be counting (this process saw or recorded a transient failure within the cooldown, which is
the streak's lifetime) or after a trial: a healthy provider's request then costs no circuit round
trip at all, where it cost two (in section f's HTTP drain, with 800 lookup threads a process,
~300 us of worker CPU and ~55 us of Redis CPU per request). The price: another process's opening
is seen up to the refresh later, and a streak begun elsewhere is reset by this process's
successes only once its next reading has seen it."""

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches

from enrichment_project.cache import shared_counter_incr
from providers.base import ProviderError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
TRANSIENT_STREAK_REASON = "transient_streak"

# This process's view, per provider (monotonic times): when it last read the circuit closed, and
# when it last saw or recorded a transient failure. Plain dicts: each update is one store.
_read_closed_at: dict[str, float] = {}
_failure_seen_at: dict[str, float] = {}


@dataclass(frozen=True)
class CircuitState:
    provider: str
    state: str
    reason: str = ""
    opened_at: float | None = None
    reopen_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "state": self.state,
            "reason": self.reason,
            "openedAt": self.opened_at,
            "reopenAt": self.reopen_at,
        }


class ProviderUnavailable(ProviderError):
    """The provider's circuit is open: nothing was sent; ask the next provider."""

    outcome = "skipped"

    def __init__(self, state: CircuitState) -> None:
        super().__init__("provider_unavailable", detail=state.reason)
        self.state = state


class Circuit:
    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._open_key = f"circuit:{provider}"
        self._streak_key = f"circuit-streak:{provider}"
        self._trial_key = f"circuit-trial:{provider}"

    @property
    def _store(self) -> Any:
        return caches["providers"]

    def state(self) -> CircuitState:
        return _state_of(self.provider, self._store.get(self._open_key), time.time())

    def allow(self) -> bool:
        """Whether a request may be sent now. Half-open lets one trial through at a time; a trial
        whose caller vanished without an answer expires after the provider's timeout-ish lease."""
        now = time.monotonic()
        read_closed_at = _read_closed_at.get(self.provider)
        if read_closed_at is not None and (
            now - read_closed_at < settings.ENRICHMENT_PROVIDER_CIRCUIT_REFRESH
        ):
            return True
        records = self._store.get_many([self._open_key, self._streak_key])
        if self._streak_key in records:
            _failure_seen_at[self.provider] = now
        state = _state_of(self.provider, records.get(self._open_key), time.time())
        if state.state == CLOSED:
            _read_closed_at[self.provider] = now
            return True
        _read_closed_at.pop(self.provider, None)
        if state.state == OPEN:
            return False
        return bool(
            self._store.add(self._trial_key, 1, timeout=settings.ENRICHMENT_PROVIDER_TRIAL_LEASE)
        )

    def refuse_if_opened(self) -> None:
        """For a request that waited for a rate-limit slot: the circuit may have opened meanwhile
        (another worker met the provider's "out of credits"), and then nothing is sent."""
        state = self.state()
        if state.state == OPEN:
            raise ProviderUnavailable(state)

    def record_success(self) -> None:
        """An answer from the provider (found or not found): it works. Nothing to clear unless a
        streak may be counting or the circuit was last read other than closed (a trial)."""
        failure_seen_at = _failure_seen_at.get(self.provider)
        streak_may_count = failure_seen_at is not None and (
            time.monotonic() - failure_seen_at < settings.ENRICHMENT_PROVIDER_COOLDOWN
        )
        if streak_may_count or self.provider not in _read_closed_at:
            self._store.delete_many([self._open_key, self._streak_key, self._trial_key])

    def record_failure(self, reason: str) -> None:
        """A provider-level failure: open for the full cooldown."""
        self._open(reason, settings.ENRICHMENT_PROVIDER_COOLDOWN)

    def record_transient(self, reason: str) -> None:
        _failure_seen_at[self.provider] = time.monotonic()
        if self.state().state == HALF_OPEN:
            # The trial failed: no second streak needed to know the provider is still down.
            self._open(TRANSIENT_STREAK_REASON, settings.ENRICHMENT_PROVIDER_TRANSIENT_COOLDOWN)
            return
        # Another worker's answer (or the circuit opening) may clear the streak meanwhile.
        streak = shared_counter_incr(
            self._store, self._streak_key, timeout=settings.ENRICHMENT_PROVIDER_COOLDOWN
        )
        if streak >= settings.ENRICHMENT_PROVIDER_TRANSIENT_STREAK:
            self._open(
                f"{TRANSIENT_STREAK_REASON}: {reason}",
                settings.ENRICHMENT_PROVIDER_TRANSIENT_COOLDOWN,
            )

    def _open(self, reason: str, cooldown: float) -> None:
        _read_closed_at.pop(self.provider, None)
        now = time.time()
        record = {"reason": reason, "opened_at": now, "reopen_at": now + cooldown}
        # Kept until a success closes it: after reopen_at it reads as half-open.
        self._store.set(self._open_key, record, timeout=None)
        self._store.delete_many([self._streak_key, self._trial_key])


def circuit_views_forget() -> None:
    """Drops this process's view of every circuit (tests that reset the shared store)."""
    _read_closed_at.clear()
    _failure_seen_at.clear()


def circuit_states(providers: list[str]) -> list[CircuitState]:
    """Every named provider's circuit, in one cache round trip (for the admin and /readyz)."""
    records = caches["providers"].get_many([f"circuit:{name}" for name in providers])
    now = time.time()
    return [_state_of(name, records.get(f"circuit:{name}"), now) for name in providers]


def _state_of(provider: str, record: dict[str, Any] | None, now: float) -> CircuitState:
    if not record:
        return CircuitState(provider=provider, state=CLOSED)
    return CircuitState(
        provider=provider,
        state=OPEN if now < record["reopen_at"] else HALF_OPEN,
        reason=record["reason"],
        opened_at=record["opened_at"],
        reopen_at=record["reopen_at"],
    )
