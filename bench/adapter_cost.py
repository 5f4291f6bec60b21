"""`python -m bench.adapter_cost` (`make bench-adapter-cost`): the CPU one Hunter lookup costs on
each side of the loopback, one thread, requests one after another against the fake Hunter of
section f (its own process, no latency, no limit). Each layer is timed alone, so section f's
0 ms ratio can be read against what its parts cost: the worker's CPU per request (this process's
`process_time`) and the provider's (its own, from its counts).

The layers, from the bottom: httpx alone (a client, keep-alive, the adapter's query); the
limiter's slot (one Lua round trip to Redis); the adapter's lookup (the slot, the request, the
answer mapped); and the whole provider call (the circuit asked before and told after, the call
counted for /metrics and buffered for the call log). Beside httpx, the same GET with urllib3, the
floor another client library gives; and both again from 50 threads with a client each, as the
worker's lookup threads send (concurrency multiplies what a request costs)."""

import os
import threading
import time
from collections.abc import Callable, Sequence

import django

from bench.environment import configure_process, fresh_backends

REQUESTS = 2000
WARM_UP = 100
PROVIDER_KEY = "bench-key"
THREADS = 50


def _measure(
    label: str, calls: Sequence[Callable[[], object]], provider_cpu: Callable[[], float]
) -> None:
    """`calls`: one per thread, each making its share of the requests one after another; a single
    call is made on this thread."""
    share = REQUESTS // len(calls)
    # What was sent, not REQUESTS: a thread count that does not divide it sends a little less.
    sent = share * len(calls)

    def send(call: Callable[[], object], count: int = share) -> None:
        for _ in range(count):
            call()

    for call in calls:
        send(call, max(WARM_UP // len(calls), 1))
    threads = [threading.Thread(target=send, args=(call,)) for call in calls[1:]]
    provider_before, worker_before = provider_cpu(), time.process_time()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    send(calls[0])
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    worker = (time.process_time() - worker_before) / sent
    provider = (provider_cpu() - provider_before) / sent
    print(
        f"  {label:<36} worker {worker * 1e6:5.0f} us  provider {provider * 1e6:5.0f} us"
        f"  wall {elapsed / sent * 1e6:5.0f} us"
    )


def main() -> None:
    fresh_backends()
    configure_process()
    django.setup()
    # After Django: these import the project.
    import httpx
    import urllib3
    from django.core.management import call_command

    from bench.fake_provider import PATH
    from bench.processes import fake_hunter_process
    from providers.base import Subject
    from providers.ratelimit import RateLimiter
    from providers.registry import adapter
    from providers.services import provider_lookup

    call_command("migrate", verbosity=0)
    with fake_hunter_process(latency_ms=0, limit=1_000_000, api_key=PROVIDER_KEY) as provider:
        os.environ |= {
            "HUNTER_API_KEY": PROVIDER_KEY,
            "HUNTER_BASE_URL": provider.url,
            "HUNTER_RATE_LIMIT": "1000000/second",
        }
        hunter = adapter("hunter")
        subject = Subject(first_name="Ada", last_name="Lovelace", company_domain="example.com")
        params = {"domain": "example.com", "first_name": "Ada", "last_name": "Lovelace"}
        limiter = RateLimiter("hunter", "1000000/second")

        def httpx_get() -> Callable[[], object]:
            client = httpx.Client(base_url=provider.url, headers={"X-API-KEY": PROVIDER_KEY})
            return lambda: client.get(PATH, params=params)

        def urllib3_get() -> Callable[[], object]:
            pool = urllib3.connection_from_url(
                provider.url, maxsize=1, headers={"X-API-KEY": PROVIDER_KEY}, retries=False
            )
            return lambda: pool.request("GET", PATH, fields=params)

        print(f"CPU per request, {REQUESTS} requests one after another, one thread")
        _measure("httpx GET alone", [httpx_get()], provider.cpu_seconds)
        _measure("urllib3 GET alone", [urllib3_get()], provider.cpu_seconds)
        _measure("rate-limit slot alone", [limiter.acquire], provider.cpu_seconds)
        _measure(
            "adapter lookup (slot + request)",
            [lambda: hunter.lookup(subject, "emails")],
            provider.cpu_seconds,
        )
        _measure(
            "provider call (+ circuit, call log)",
            [
                lambda: provider_lookup(
                    adapter=hunter, subject=subject, field="emails", reference_id=None
                )
            ],
            provider.cpu_seconds,
        )
        print(f"CPU per request, {REQUESTS} requests from {THREADS} threads, a client each")
        for label, make_get in (("httpx GET", httpx_get), ("urllib3 GET", urllib3_get)):
            _measure(
                f"{label}, {THREADS} threads",
                [make_get() for _ in range(THREADS)],
                provider.cpu_seconds,
            )


if __name__ == "__main__":
    main()
