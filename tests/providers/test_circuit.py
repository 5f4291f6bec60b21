"""The per-provider circuit, shared through Redis: opened by a provider-level failure for the
cooldown or by a streak of transient failures for a shorter time, half-open with one trial after."""

import time

import pytest
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
