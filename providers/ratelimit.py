"""A provider's rate limits, shared by every worker process and host through Redis (the
`limits` library's moving windows), or per process when no Redis is configured. A lookup waits on
its own thread for a free slot in every window instead of sending a request the provider would
refuse; a "slow down" answer pauses the provider for everyone until its Retry-After/reset time."""

import os
import random
import time
from functools import cache

from django.conf import settings
from django.core.cache import caches
from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from providers.base import RateLimitWait

# Waiters for the same slot wake a little apart, so they do not all retry at once.
_JITTER_SECONDS = 0.02
# A freed slot is taken this much later than the window says: the provider counts a request when
# it arrives, some time after the slot was counted here, and that time varies (a burst's requests
# arrive later than a lone one's), so a slot taken the instant it frees can land inside the
# provider's window of the request that freed it.
_MARGIN_SECONDS = 0.05


@cache
def _storage(url: str, pid: int) -> Storage:
    # One connection pool per process, created after the fork (the pid is part of the key).
    return storage_from_string(url)


def rate_limit_storage() -> Storage:
    return _storage(settings.PROVIDERS_RATE_LIMIT_STORAGE_URL, os.getpid())


def parse_rate_limit(text: str) -> list[RateLimitItem]:
    """`15/second;500/minute` -> its windows, shortest first; raises ValueError when malformed."""
    return sorted(parse_many(text), key=lambda item: item.get_expiry()) if text else []


class RateLimiter:
    def __init__(self, name: str, rate_limit: str, *, max_wait: float | None = None) -> None:
        self.name = name
        self.items = parse_rate_limit(rate_limit)
        self.max_wait = settings.ENRICHMENT_PROVIDER_MAX_WAIT if max_wait is None else max_wait
        self._pause_key = f"pause:{name}"

    def acquire(self) -> float:
        """Blocks the calling thread until every window has room, takes one slot in each, and
        returns the seconds waited (0 when there was room at once). When the wait would exceed
        `max_wait`, raises a transient error with `retry_after` instead, so the lookup is retried
        later rather than hold a thread for long."""
        started = time.monotonic()
        slept = False
        while True:
            wait = self._wait_needed()
            if wait <= 0:
                return time.monotonic() - started if slept else 0.0
            waited = time.monotonic() - started
            if waited + wait > self.max_wait:
                raise RateLimitWait(retry_after=wait)
            time.sleep(wait + _MARGIN_SECONDS + random.uniform(0, _JITTER_SECONDS))
            slept = True

    def pause(self, seconds: float) -> None:
        """Nobody sends to this provider for `seconds` (its own "slow down" hint)."""
        until = time.time() + seconds
        store = caches["providers"]
        if (store.get(self._pause_key) or 0) < until:
            store.set(self._pause_key, until, timeout=int(seconds) + 1)

    def _wait_needed(self) -> float:
        now = time.time()
        paused_until = caches["providers"].get(self._pause_key) or 0
        if paused_until > now:
            return paused_until - now
        strategy = MovingWindowRateLimiter(rate_limit_storage())
        for item in self.items:
            if not strategy.test(item, self.name):
                return max(strategy.get_window_stats(item, self.name).reset_time - now, 0.001)
        # Shortest window first: a slot lost to a race in a later window is the cheapest one.
        for item in self.items:
            if not strategy.hit(item, self.name):
                return max(strategy.get_window_stats(item, self.name).reset_time - now, 0.001)
        return 0
