import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from enrichment_project.log_context import log_context_bound
from enrichment_project.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Gives every request an id (the client's X-Request-ID when it is sane) that every log line
    of the request, the jobs it queues and the response's X-Request-ID header carry, so a 500 or
    a batch can be traced from the user's report."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        client_id = request.headers.get("X-Request-ID", "")
        request.request_id = client_id if _CLIENT_REQUEST_ID.match(client_id) else uuid.uuid4().hex
        with log_context_bound(request_id=request.request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


class RateLimitHeadersMiddleware:
    """Writes the IETF httpapi draft's RateLimit-Policy and RateLimit fields on every response
    whose request the API key throttle counted (every authenticated API request), from the state
    the throttle checked. Outside the idempotency middleware: a replay shows today's quota."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        state = getattr(request, "rate_limit", None)
        if state is not None:
            response["RateLimit-Policy"] = f'"default";q={state.limit};w={state.window}'
            response["RateLimit"] = f'"default";r={state.remaining};t={state.reset}'
        return response


class MetricsMiddleware:
    """Counts and times every request by its URL pattern (never the path itself, which holds
    ids): `api/v1/enrichments/<uuid:pk>`, or `unmatched` for a 404 no pattern matched."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        route = match.route if match is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUEST_DURATION.labels(method, route).observe(time.perf_counter() - start)
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        return response


# Anything else a client sends is one label value, so a scanner cannot grow the series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
