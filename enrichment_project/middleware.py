import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Gives every request an id (the client's X-Request-ID when it is sane) that error logs and
    the response's X-Request-ID header carry, so a 500 can be traced from the user's report."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        client_id = request.headers.get("X-Request-ID", "")
        request.request_id = client_id if _CLIENT_REQUEST_ID.match(client_id) else uuid.uuid4().hex
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
