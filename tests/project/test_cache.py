import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings
from django.core.cache import caches

pytestmark = pytest.mark.skipif(
    not settings.PROVIDERS_REDIS_URL, reason="the providers' cache is Redis only with a Redis URL"
)


def _connections_received() -> int:
    return redis.Redis.from_url(settings.PROVIDERS_REDIS_URL).info("stats")[
        "total_connections_received"
    ]


def _ask() -> None:
    caches["providers"].get("circuit:any")


def test_lookups_share_one_redis_connection() -> None:
    """As a worker's lookups: on a pool's threads, each in a copy of its job's context. Django's
    own backend keeps its cache object in that context, so it opened a connection per lookup
    (40 here), and one per new thread."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: contextvars.copy_context().run(_ask), range(4)))
        before = _connections_received()
        list(pool.map(lambda _: contextvars.copy_context().run(_ask), range(40)))
    for _ in range(10):
        thread = threading.Thread(target=_ask)
        thread.start()
        thread.join()
    # A pool holds as many connections as were in use at once (at most the 4 threads); the stats
    # count this test's own client too. Without a shared client: 51.
    assert _connections_received() - before <= 4 + 1


def test_the_backend_reads_and_writes_as_djangos() -> None:
    store = caches["providers"]
    store.set("cache-test", {"reason": "out_of_credits"}, timeout=10)
    assert store.add("cache-test", 1) is False
    assert store.get_many(["cache-test", "absent"]) == {"cache-test": {"reason": "out_of_credits"}}
    store.delete_many(["cache-test"])
    assert store.get("cache-test") is None


def test_new_redis_connections_do_not_read_package_metadata(monkeypatch) -> None:
    """A burst of lookup threads opens many connections at once; each used to read redis-py's
    version from the installed package's metadata (~0.5 ms of CPU holding the interpreter)."""
    from providers.ratelimit import RedisSchedule

    def metadata_read() -> str:
        raise AssertionError("a connection read the package metadata")

    monkeypatch.setattr(redis.utils, "get_lib_version", metadata_read)
    schedule = RedisSchedule(settings.PROVIDERS_REDIS_URL)
    holding = [schedule._redis.connection_pool.get_connection() for _ in range(3)]
    for connection in holding:
        schedule._redis.connection_pool.release(connection)
    cache_pool = caches["providers"]._cache._get_connection_pool(write=True)
    holding = [cache_pool.get_connection() for _ in range(3)]
    for connection in holding:
        cache_pool.release(connection)
    assert schedule.pauses("metadata-test") == 0
