"""The single error shape: every failure, DRF's own included, leaves as
`{"error": {"code": ..., "message": ..., "details": {...}}}` and never as a stack trace."""

import logging
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import models
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ErrorCode(models.TextChoices):
    """Every `error.code` the API sends, labelled with its status; the OpenAPI schema publishes
    them as an enum, so a code must be added here before anything can send it (`error_body`
    refuses others)."""

    VALIDATION_ERROR = (
        "VALIDATION_ERROR",
        (
            "400: malformed JSON, wrong types, missing fields, limits or unknown ids; "
            "401: missing, unknown or revoked API key"
        ),
    )
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS", "402: the request costs more than is available"
    FORBIDDEN = "FORBIDDEN", "403: the API key may not do this"
    NOT_FOUND = "NOT_FOUND", "404: no such object in your organization, or an invalid cursor"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED", "405: the path does not take this method"
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE", "406: the Accept header refuses JSON"
    INVALID_STATE = "INVALID_STATE", "409: the object is no longer in a state that allows this"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE", "409: the key's first request still runs"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE", "413: the body is larger than the limit"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE", "415: a body of a type it does not take"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED", "422: the key came with another request"
    RATE_LIMITED = "RATE_LIMITED", "429: too many requests with this API key"
    INTERNAL_ERROR = "INTERNAL_ERROR", "500: unexpected; details.requestId is logged with it"


class ServiceError(Exception):
    """A domain failure a service raises; the handler renders it with its status and code."""

    status_code = status.HTTP_400_BAD_REQUEST
    code: str = ErrorCode.VALIDATION_ERROR

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
    code = ErrorCode.NOT_FOUND


class InvalidState(ServiceError):
    status_code = status.HTTP_409_CONFLICT
    code = ErrorCode.INVALID_STATE


class IdempotencyKeyReused(ServiceError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyKeyInUse(ServiceError):
    status_code = status.HTTP_409_CONFLICT
    code = "IDEMPOTENCY_KEY_IN_USE"


# DRF exceptions whose status the SPEC's table does not name keep their status with a code of ours.
_CODE_BY_STATUS = {
    400: ErrorCode.VALIDATION_ERROR,
    401: ErrorCode.VALIDATION_ERROR,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one error shape; `code` must be an ErrorCode (ValueError otherwise), so no response
    carries a code the schema does not list."""
    return {"error": {"code": ErrorCode(code).value, "message": message, "details": details or {}}}


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
        return Response(
            error_body(ErrorCode.PAYLOAD_TOO_LARGE, message, {"maxBytes": limit}), status=413
        )
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
                ErrorCode.VALIDATION_ERROR, _validation_message(exc.detail), {"fields": exc.detail}
            )
        else:
            code = _CODE_BY_STATUS.get(exc.status_code, ErrorCode.VALIDATION_ERROR)
            body = error_body(code, str(exc.detail))
        return Response(body, status=exc.status_code, headers=headers)
    request = context.get("request")
    return Response(internal_error_body(request), status=500)


def internal_error_body(request: HttpRequest | None) -> dict[str, Any]:
    request_id = getattr(request, "request_id", None)
    logger.exception("Unhandled error (request id %s)", request_id)
    return error_body(
        ErrorCode.INTERNAL_ERROR,
        "An unexpected error occurred; quote the request id when reporting it.",
        {"requestId": request_id},
    )


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body(ErrorCode.NOT_FOUND, "No such resource."), status=404)


def server_error_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(internal_error_body(request), status=500)


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body(ErrorCode.VALIDATION_ERROR, "Bad request."), status=400)
