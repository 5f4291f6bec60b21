from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from organizations.models import ApiKey

if TYPE_CHECKING:  # rest_framework.views imports this module through the settings
    from rest_framework.views import APIView


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key, counted in the shared cache (Redis in production) so every web
    process sees the same count. The rate is read per request so settings can change it."""

    scope = "api_key"

    def get_rate(self) -> str:
        return settings.API_RATE_LIMIT

    def get_cache_key(self, request: Request, view: "APIView") -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None  # refused by authentication before any work
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
