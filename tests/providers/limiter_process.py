"""Run as a separate process by the rate-limit tests: takes N slots of a provider's limit and
prints the times it was granted them, one JSON list."""

import json
import sys
import time

import django

if __name__ == "__main__":
    django.setup()
    from providers.ratelimit import RateLimiter

    name, rate_limit, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limiter = RateLimiter(name, rate_limit, max_wait=60)
    granted = []
    for _ in range(count):
        limiter.acquire()
        granted.append(time.time())
    print(json.dumps(granted))
