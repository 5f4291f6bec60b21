"""The error shape in the OpenAPI schema: one component, documented under every status an
operation can answer with, so clients can rely on the schema for failures too."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from enrichment_project.fields import UUID4_SCHEMA


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField(
        help_text="VALIDATION_ERROR, INSUFFICIENT_CREDITS, NOT_FOUND, INVALID_STATE, "
        "PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, RATE_LIMITED or INTERNAL_ERROR."
    )
    message = serializers.CharField(help_text="Human readable.")
    details = serializers.DictField(help_text="Machine-readable specifics; may be empty.")


class ErrorResponse(serializers.Serializer):
    error = ErrorDetail()


ERROR_DESCRIPTIONS = {
    400: "Malformed JSON, wrong types, missing fields, constraint violations or unknown ids.",
    401: "Missing, unknown or revoked API key.",
    402: "The organization cannot cover the new enrichments; details has required and available.",
    404: "No such object in the caller's organization, or an invalid pagination cursor.",
    409: "The object is no longer in a state that allows this.",
    413: "The request body is larger than the limit; details has maxBytes.",
    415: "The request body is not JSON.",
    429: "Too many requests with this API key; retry after the Retry-After header's seconds.",
    500: "Unexpected; details has the requestId under which it was logged.",
}
# Any request to the API can meet these, and any request with a JSON body the second ones.
ANY_REQUEST_ERRORS = (401, 429, 500)
JSON_BODY_ERRORS = (400, 413, 415)


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error shape under `statuses` and under those any request can meet, for
    `extend_schema(responses={200: ..., **error_responses(404)})`."""
    return {
        status: OpenApiResponse(ErrorResponse, description=ERROR_DESCRIPTIONS[status])
        for status in sorted({*statuses, *ANY_REQUEST_ERRORS})
    }


def uuid4_path_parameter(name: str) -> OpenApiParameter:
    return OpenApiParameter(name, UUID4_SCHEMA, OpenApiParameter.PATH)
