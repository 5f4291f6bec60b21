"""The single error shape: every failure, DRF's own included, leaves as
`{"error": {"code": ..., "message": ..., "details": {...}}}` and never as a stack trace."""

import logging
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A domain failure a service raises; the handler renders it with its status and code."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "VALIDATION_ERROR"

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


class ValidationFailed(ServiceError):
    pass


class NotFound(ServiceError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "NOT_FOUND"


class InvalidState(ServiceError):
    status_code = status.HTTP_409_CONFLICT
    code = "INVALID_STATE"


class IdempotencyKeyReused(ServiceError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyKeyInUse(ServiceError):
    status_code = status.HTTP_409_CONFLICT
    code = "IDEMPOTENCY_KEY_IN_USE"


# DRF exceptions whose status the SPEC's table does not name keep their status with a code of ours.
_CODE_BY_STATUS = {
    400: "VALIDATION_ERROR",
    401: "VALIDATION_ERROR",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _validation_message(detail: Any) -> str:
    """The first concrete message of a nested DRF error detail, for the human-readable line."""
    while isinstance(detail, dict | list) and detail:
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return str(detail) if detail else "Invalid request."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, ServiceError):
        body = error_body(exc.code, exc.message, exc.details)
        return Response(body, status=exc.status_code, headers=exc.headers)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        message = f"The request body is larger than {limit} bytes."
        return Response(error_body("PAYLOAD_TOO_LARGE", message, {"maxBytes": limit}), status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(math.ceil(exc.wait))
        if isinstance(exc, exceptions.ValidationError):
            body = error_body(
                "VALIDATION_ERROR", _validation_message(exc.detail), {"fields": exc.detail}
            )
        else:
            code = _CODE_BY_STATUS.get(exc.status_code, "VALIDATION_ERROR")
            body = error_body(code, str(exc.detail))
        return Response(body, status=exc.status_code, headers=headers)
    request = context.get("request")
    return Response(internal_error_body(request), status=500)


def internal_error_body(request: HttpRequest | None) -> dict[str, Any]:
    request_id = getattr(request, "request_id", None)
    logger.exception("Unhandled error (request id %s)", request_id)
    return error_body(
        "INTERNAL_ERROR",
        "An unexpected error occurred; quote the request id when reporting it.",
        {"requestId": request_id},
    )


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("NOT_FOUND", "No such resource."), status=404)


def server_error_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(internal_error_body(request), status=500)


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("VALIDATION_ERROR", "Bad request."), status=400)
