"""The shared rate limiter against this suite's Redis: several windows at once, waiting rather
than refusing, a provider's "slow down" pausing everyone, and two processes never exceeding the
limit together."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import override_settings

from providers import ratelimit
from providers.base import TransientProviderError
from providers.ratelimit import RateLimiter, parse_rate_limit


def _name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def _granted(limiter: RateLimiter, count: int) -> list[float]:
    times = []
    for _ in range(count):
        limiter.acquire()
        times.append(time.monotonic())
    return times


def test_limiter_counts_in_redis_when_the_broker_is_redis() -> None:
    assert settings.PROVIDERS_RATE_LIMIT_STORAGE_URL.startswith("redis://")


def test_a_window_s_slots_are_spread_over_it_and_a_full_window_waits_for_the_next() -> None:
    limiter = RateLimiter(_name(), "2/second", max_wait=5)

    times = _granted(limiter, 3)

    # Half a second apart (the window's pace), not both at once.
    assert 0.45 <= times[1] - times[0] < 0.8
    # The first send frees its slot one second (and the margin) after it.
    assert times[2] - times[0] >= 1.0


def test_every_window_is_honoured_the_longer_one_too() -> None:
    limiter = RateLimiter(_name(), "10/second;3/2 second", max_wait=0.5)
    _granted(limiter, 3)

    with pytest.raises(TransientProviderError) as raised:
        limiter.acquire()

    # Only the 2-second window is full; waiting for it exceeds max_wait.
    assert raised.value.reason == "rate_limited_locally"
    assert 1.0 < raised.value.retry_after <= 2.0


def _storage_url(storage: str) -> str:
    return settings.PROVIDERS_RATE_LIMIT_STORAGE_URL if storage == "redis" else storage


class _OneLateWakeUp:
    """The module's clock, whose first sleep overruns by 0.2 s (a busy process's thread); before
    it, `meanwhile` runs (other lookups reserving their slots)."""

    monotonic = staticmethod(time.monotonic)

    def __init__(self, meanwhile: Callable[[], None] = lambda: None) -> None:
        self.meanwhile = meanwhile
        self.late = True

    def sleep(self, seconds: float) -> None:
        if self.late:
            self.meanwhile()
        time.sleep(seconds + (0.2 if self.late else 0.0))
        self.late = False


def _waited_after_a_late_wake(
    storage: str, monkeypatch, meanwhile: Callable[[RateLimiter], None] = lambda limiter: None
) -> float:
    """A 2/second limiter's second lookup, whose thread wakes 0.2 s after its slot at 0.5 s."""
    with override_settings(PROVIDERS_RATE_LIMIT_STORAGE_URL=_storage_url(storage)):
        limiter = RateLimiter(_name(), "2/second", max_wait=5)
        limiter.acquire()
        monkeypatch.setattr(ratelimit, "time", _OneLateWakeUp(lambda: meanwhile(limiter)))
        return limiter.acquire()


@pytest.mark.parametrize("storage", ["redis", "memory://"])
def test_a_lookup_woken_late_sends_at_once_when_the_window_still_has_room(
    storage: str, monkeypatch
) -> None:
    # Its slot was half a second away and it woke at 0.7 s: the window [0.7, 1.7) holds only
    # this send, so it goes now rather than leave the slot unused.
    waited = _waited_after_a_late_wake(storage, monkeypatch)

    assert 0.6 < waited < 0.95


@pytest.mark.parametrize("storage", ["redis", "memory://"])
def test_a_lookup_woken_late_takes_another_slot_when_later_sends_would_share_its_window(
    storage: str, monkeypatch
) -> None:
    def two_more_reserved(limiter: RateLimiter) -> None:
        for _ in range(2):
            ratelimit.rate_limit_schedule().reserve(limiter.name, limiter.windows, 5)

    # Its slot at 0.5 s, then others at 1.05 and 1.55 s: sent at 0.7 s, [0.7, 1.7) would hold
    # three. It takes the next slot: a second and the margin after the one at 1.05 s.
    waited = _waited_after_a_late_wake(storage, monkeypatch, two_more_reserved)

    assert waited >= 2.05


@pytest.mark.parametrize("storage", ["redis", "memory://"])
def test_a_late_send_is_logged_when_it_was_sent_so_later_slots_count_from_then(
    storage: str,
) -> None:
    with override_settings(PROVIDERS_RATE_LIMIT_STORAGE_URL=_storage_url(storage)):
        schedule, name = ratelimit.rate_limit_schedule(), _name()
        windows = [ratelimit.Window(2, 1.0)]
        first_at = time.monotonic() + schedule.reserve(name, windows, 5).wait
        late = schedule.reserve(name, windows, 5)  # at 0.5 s
        schedule.reserve(name, windows, 5)  # at 1.05 s
        time.sleep(late.wait + 0.2)
        sent_at = time.monotonic()
        assert schedule.send_late(name, windows, late)
        # A second window's worth after the late send, not after its slot (1.55 s).
        fourth_at = time.monotonic() + schedule.reserve(name, windows, 5).wait

    assert fourth_at - first_at > 1.7
    assert fourth_at - sent_at >= 1.0


def test_a_wait_beyond_max_wait_is_a_transient_error_instead_of_a_long_sleep() -> None:
    limiter = RateLimiter(_name(), "1/minute", max_wait=1)
    limiter.acquire()

    started = time.monotonic()
    with pytest.raises(TransientProviderError) as raised:
        limiter.acquire()

    assert time.monotonic() - started < 0.5
    assert raised.value.retry_after > 55


def test_a_pause_holds_every_limiter_of_the_provider() -> None:
    name = _name()
    RateLimiter(name, "").pause(1.0)
    # Another worker's limiter for the same provider, with no window of its own.
    other = RateLimiter(name, "", max_wait=5)

    started = time.monotonic()
    other.acquire()

    assert time.monotonic() - started >= 0.95


@pytest.mark.parametrize("storage", ["redis", "memory://"])
def test_a_pause_voids_the_slots_already_reserved_after_it(storage: str) -> None:
    with override_settings(PROVIDERS_RATE_LIMIT_STORAGE_URL=_storage_url(storage)):
        limiter = RateLimiter(_name(), "2/second", max_wait=5)
        limiter.acquire()
        granted: list[float] = []
        # Reserves the next slot, half a second away, and sleeps until it.
        waiting = threading.Thread(target=lambda: granted.append(_granted(limiter, 1)[0]))
        waiting.start()
        time.sleep(0.1)

        paused_at = time.monotonic()
        limiter.pause(1.0)
        waiting.join()

    assert granted[0] - paused_at >= 0.95


def test_a_waiting_lookup_does_not_hold_up_another_providers_lookup() -> None:
    busy = RateLimiter(_name(), "1/second", max_wait=5)
    free = RateLimiter(_name(), "1/second", max_wait=5)
    busy.acquire()
    done: dict[str, float] = {}

    def take(limiter: RateLimiter, key: str) -> None:
        limiter.acquire()
        done[key] = time.monotonic()

    started = time.monotonic()
    threads = [
        threading.Thread(target=take, args=(busy, "busy")),
        threading.Thread(target=take, args=(free, "free")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert done["free"] - started < 0.3
    assert done["busy"] - started >= 0.9


def _granted_in_processes(
    name: str, rate_limit: str, *, processes: int, threads: int, per_thread: int
) -> list[float]:
    """The grant times of `processes` processes of `threads` threads each taking `per_thread`
    slots of the same provider's limit, sorted."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "enrichment_project.settings"}
    env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    arguments = [name, rate_limit, str(per_thread), str(threads)]
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.providers.limiter_process", *arguments],
            stdout=subprocess.PIPE,
            env=env,
            cwd=settings.BASE_DIR,
        )
        for _ in range(processes)
    ]
    return sorted(t for process in running for t in json.loads(process.communicate(timeout=60)[0]))


def _busiest(granted: list[float], window: float) -> int:
    """The most grants in any `window` seconds starting at a grant."""
    return max(sum(1 for t in granted if start <= t < start + window) for start in granted)


# The times are read in each process after its grant, so a loaded machine delays some of them:
# a window is shortened by that much when counting, and twice the limit in it would still fail.
_READ_DELAY = 0.15


def test_two_processes_together_never_exceed_the_limit() -> None:
    limit, per_process = 5, 10
    granted = _granted_in_processes(
        _name(), f"{limit}/second", processes=2, threads=1, per_thread=per_process
    )

    assert len(granted) == 2 * per_process
    assert _busiest(granted, 1 - _READ_DELAY) == limit
    assert granted[-1] - granted[0] >= (2 * per_process / limit) - 1 - 0.05


def test_many_waiting_threads_in_several_processes_are_paced_not_released_in_bursts() -> None:
    limit, processes, threads, per_thread = 40, 3, 10, 4
    granted = _granted_in_processes(
        _name(), f"{limit}/second", processes=processes, threads=threads, per_thread=per_thread
    )

    assert len(granted) == processes * threads * per_thread
    assert _busiest(granted, 1 - _READ_DELAY) <= limit
    # A quarter of a second holds about a quarter of the limit (plus what late reads bunch up),
    # where a moving window alone would grant the whole limit at once.
    assert _busiest(granted, 0.25) <= limit // 4 + 5
    assert granted[-1] - granted[0] >= len(granted) / limit - 1


@override_settings(PROVIDERS_RATE_LIMIT_STORAGE_URL="memory://")
def test_without_redis_the_limit_holds_per_process() -> None:
    limiter = RateLimiter(_name(), "10/second;2/minute", max_wait=1)
    _granted(limiter, 2)

    with pytest.raises(TransientProviderError) as raised:
        limiter.acquire()

    assert raised.value.retry_after > 55


def test_rate_limit_notation_is_parsed_shortest_window_first() -> None:
    assert [str(item) for item in parse_rate_limit("500/minute;15/second")] == [
        "15 per 1 second",
        "500 per 1 minute",
    ]
    with pytest.raises(ValueError):
        parse_rate_limit("fast")
