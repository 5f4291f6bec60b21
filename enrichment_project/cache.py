"""Django's Redis cache with one client per process, shared by every thread; and the counter
every process shares through a cache (the circuits' transient streaks, the "slow down" backoff).

Django keeps a cache object per thread, and with it a connection pool per thread; it also builds a
`redis.Redis` for every call. A worker's hundreds of lookup threads each asked the providers' cache
(the circuits) before every request, so each thread opened a Redis connection of its own (a TCP
handshake, a `CLIENT SETINFO` round trip, a package-metadata lookup for the library's version) and
every call paid the client's construction. redis-py's client and pool are thread-safe: one of each
per process serves all threads, with as many connections as are in use at once."""

import os
import threading
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property
from redis.driver_info import DriverInfo

# What every Redis connection of ours tells the server (CLIENT SETINFO), built once. Left to
# redis-py, each new connection reads the library's version from the installed package's metadata:
# ~0.5 ms of CPU holding the interpreter, paid by each of the connections a burst of lookup threads
# opens at once, while the other threads of the process wait for their rate-limit slots.
REDIS_DRIVER_INFO = DriverInfo(lib_version=redis.__version__)


class _SharedClient(RedisCacheClient):
    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **{"driver_info": REDIS_DRIVER_INFO, **options})
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            # Two threads may both build one here: the one overwritten serves one call and goes.
            client = self._clients[index] = self._client(
                connection_pool=self._get_connection_pool(write)
            )
        return client


_clients: dict[tuple[int, tuple[str, ...], str], _SharedClient] = {}
_clients_lock = threading.Lock()


class SharedRedisCache(RedisCache):
    """A drop-in for `django.core.cache.backends.redis.RedisCache` (same LOCATION and OPTIONS)."""

    @cached_property
    def _cache(self) -> _SharedClient:
        # Keyed by process too: a client inherited through a fork would share the parent's sockets.
        key = (os.getpid(), tuple(self._servers), repr(sorted(self._options.items())))
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = _SharedClient(self._servers, **self._options)
            return client


def shared_counter_incr(store: Any, key: str, *, timeout: float) -> int:
    """Adds one to a counter every process shares through `store` (a Django cache), which
    expires `timeout` seconds after it was created; returns the new count. A counter deleted
    or expired between its creation and its increment starts again at 1."""
    store.add(key, 0, timeout=timeout)
    try:
        return store.incr(key)
    except ValueError:
        store.add(key, 1, timeout=timeout)
        return 1
