"""The per-provider circuit, shared through Redis: opened by a provider-level failure for the
cooldown or by a streak of transient failures for a shorter time, half-open with one trial after."""

import time

import pytest
from django.core.cache import caches
from django.test import override_settings

from providers.circuit import CLOSED, HALF_OPEN, OPEN, Circuit, circuit_states
from tests.concurrency import run_concurrently


def test_a_new_circuit_is_closed_and_allows_requests() -> None:
    circuit = Circuit("hunter")

    assert circuit.state().state == CLOSED
    assert circuit.allow()


@override_settings(ENRICHMENT_PROVIDER_COOLDOWN=300)
def test_provider_failure_opens_the_circuit_for_every_worker_with_reason_and_reopen_time() -> None:
    before = time.time()
    Circuit("pdl").record_failure("credits_exhausted")

    # Another worker's view of the same provider.
    state = Circuit("pdl").state()
    assert (state.state, state.reason) == (OPEN, "credits_exhausted")
    assert before + 300 <= state.reopen_at <= time.time() + 300
    assert not Circuit("pdl").allow()
    assert [s.state for s in circuit_states(["pdl", "hunter"])] == [OPEN, CLOSED]


@override_settings(ENRICHMENT_PROVIDER_COOLDOWN=1)
def test_after_the_cooldown_one_trial_goes_through_and_its_success_closes() -> None:
    circuit = Circuit("lusha")
    circuit.record_failure("key_rejected")
    time.sleep(1.05)

    assert circuit.state().state == HALF_OPEN
    assert [circuit.allow(), Circuit("lusha").allow()] == [True, False]
    circuit.record_success()

    assert circuit.state().state == CLOSED
    assert circuit.allow()


@override_settings(ENRICHMENT_PROVIDER_COOLDOWN=1, ENRICHMENT_PROVIDER_TRANSIENT_COOLDOWN=60)
def test_a_failed_trial_opens_the_circuit_again() -> None:
    circuit = Circuit("apollo")
    circuit.record_failure("key_rejected")
    time.sleep(1.05)
    assert circuit.allow()

    circuit.record_transient("provider_error")

    state = circuit.state()
    assert state.state == OPEN
    assert state.reopen_at == pytest.approx(time.time() + 60, abs=2)


@override_settings(
    ENRICHMENT_PROVIDER_TRANSIENT_STREAK=5, ENRICHMENT_PROVIDER_TRANSIENT_COOLDOWN=30
)
def test_five_transient_failures_in_a_row_open_it_for_the_shorter_time() -> None:
    circuit = Circuit("prospeo")
    for _ in range(4):
        circuit.record_transient("provider_error")
    assert circuit.state().state == CLOSED

    circuit.record_transient("provider_timeout")

    state = circuit.state()
    assert (state.state, state.reason) == (OPEN, "transient_streak: provider_timeout")
    assert state.reopen_at == pytest.approx(time.time() + 30, abs=2)


@override_settings(ENRICHMENT_PROVIDER_TRANSIENT_STREAK=5)
def test_a_success_breaks_the_transient_streak() -> None:
    circuit = Circuit("hunter")
    for _ in range(4):
        circuit.record_transient("provider_error")
    circuit.record_success()
    for _ in range(4):
        circuit.record_transient("provider_error")

    assert circuit.state().state == CLOSED


@override_settings(ENRICHMENT_PROVIDER_TRANSIENT_STREAK=5)
def test_the_streak_counts_failures_from_all_workers_at_once() -> None:
    run_concurrently([lambda: Circuit("dropcontact").record_transient("provider_error")] * 5)

    assert Circuit("dropcontact").state().state == OPEN


def _opened_by_another_process(provider: str) -> None:
    """What a worker elsewhere writes when its request met the provider's "out of credits"."""
    now = time.time()
    record = {"reason": "quota_exhausted", "opened_at": now, "reopen_at": now + 300}
    caches["providers"].set(f"circuit:{provider}", record, timeout=None)


@override_settings(ENRICHMENT_PROVIDER_CIRCUIT_REFRESH=0.3)
def test_a_closed_reading_is_trusted_for_the_refresh_then_read_again() -> None:
    assert Circuit("hunter").allow()
    _opened_by_another_process("hunter")

    # This process's reading still says closed: no round trip per request.
    assert Circuit("hunter").allow()
    time.sleep(0.35)
    assert not Circuit("hunter").allow()


@override_settings(ENRICHMENT_PROVIDER_CIRCUIT_REFRESH=0.3, ENRICHMENT_PROVIDER_TRANSIENT_STREAK=5)
def test_a_streak_begun_elsewhere_is_reset_once_this_process_has_read_it() -> None:
    store, streak_key = caches["providers"], "circuit-streak:hunter"
    circuit = Circuit("hunter")
    assert circuit.allow()
    store.set(streak_key, 4, timeout=300)  # another process's four failures in a row

    # Not seen yet: a healthy provider's success writes nothing.
    circuit.record_success()
    assert store.get(streak_key) == 4
    time.sleep(0.35)
    assert circuit.allow()  # this reading sees the streak
    circuit.record_success()

    assert store.get(streak_key) is None


@override_settings(ENRICHMENT_PROVIDER_CIRCUIT_REFRESH=60, ENRICHMENT_PROVIDER_TRANSIENT_STREAK=5)
def test_this_processs_own_failures_are_reset_by_its_successes_at_once() -> None:
    circuit = Circuit("hunter")
    assert circuit.allow()
    for _ in range(4):
        circuit.record_transient("provider_error")
    circuit.record_success()
    circuit.record_transient("provider_error")

    assert circuit.allow()
    assert caches["providers"].get("circuit-streak:hunter") == 1


@override_settings(ENRICHMENT_PROVIDER_CIRCUIT_REFRESH=60)
def test_an_opening_by_this_process_is_seen_at_once_despite_the_refresh() -> None:
    circuit = Circuit("pdl")
    assert circuit.allow()
    circuit.record_failure("credits_exhausted")

    assert not Circuit("pdl").allow()
