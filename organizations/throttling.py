import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from organizations.models import ApiKey

if TYPE_CHECKING:  # rest_framework.views imports this module through the settings
    from rest_framework.views import APIView


@dataclass(frozen=True)
class RateLimitState:
    """What the throttle decided for one request: its quota and what is left of it."""

    limit: int
    window: int
    remaining: int
    reset: int  # whole seconds until the oldest counted request leaves the window


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key, counted in the shared cache (Redis in production) so every web
    process sees the same count. The rate is read per request so settings can change it.

    The window slides: each request counts for `duration` seconds after it was made. The state it
    checked is left on the request (`request.rate_limit`) for the RateLimit headers, and 429's
    Retry-After comes from the same figure, so the two never disagree."""

    scope = "api_key"

    def get_rate(self) -> str:
        return settings.API_RATE_LIMIT

    def get_cache_key(self, request: Request, view: "APIView") -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None  # refused by authentication before any work
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}

    def allow_request(self, request: Request, view: "APIView") -> bool:
        allowed = super().allow_request(request, view)
        if self.key is not None:
            # On the Django request, so the middleware that writes the headers sees it.
            request._request.rate_limit = RateLimitState(
                limit=self.num_requests,
                window=self.duration,
                remaining=max(self.num_requests - len(self.history), 0),
                reset=self._reset_seconds(),
            )
        return allowed

    def wait(self) -> float:
        return self._reset_seconds()

    def _reset_seconds(self) -> int:
        # At least 1: a client told to wait 0 seconds retries at once and is refused again.
        if not self.history:
            return self.duration
        return max(math.ceil(self.history[-1] + self.duration - self.now), 1)
