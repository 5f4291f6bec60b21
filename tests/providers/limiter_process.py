"""Run as a separate process by the rate-limit tests: THREADS threads of it take COUNT slots each of
a provider's limit, and it prints the times they were granted them, one JSON list."""

import json
import sys
import threading
import time

import django

if __name__ == "__main__":
    django.setup()
    from providers.ratelimit import RateLimiter

    name, rate_limit, count, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    limiter = RateLimiter(name, rate_limit, max_wait=60)
    granted: list[float] = []

    def take() -> None:
        for _ in range(count):
            limiter.acquire()
            granted.append(time.time())

    takers = [threading.Thread(target=take) for _ in range(threads)]
    for taker in takers:
        taker.start()
    for taker in takers:
        taker.join()
    print(json.dumps(granted))
