"""The OpenAPI schema as generated clients see it: the error shape under every status an
operation can answer with, and the house conventions applied to every operation in one place
(summaries from docstrings, required response fields, response headers, the Idempotency-Key
parameter), so a new endpoint comes out right without schema work of its own."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from enrichment_project.errors import ErrorCode
from enrichment_project.fields import UUID4_SCHEMA


class ErrorDetail(serializers.Serializer):
    code = serializers.ChoiceField(choices=ErrorCode.choices)
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


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's introspection with the conventions of this API."""

    def _docstring_paragraphs(self) -> list[str]:
        # The method's docstring, else the view's: what drf-spectacular makes the description.
        return [" ".join(p.split()) for p in super().get_description().split("\n\n") if p.strip()]

    def get_summary(self) -> str | None:
        """The first paragraph of the docstring, unless `extend_schema(summary=...)` says."""
        paragraphs = self._docstring_paragraphs()
        return paragraphs[0] if paragraphs else None

    def get_description(self) -> str:
        return "\n\n".join(self._docstring_paragraphs()[1:])

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "response" and schema.get("properties"):
            # DRF renders every readable field, model defaults or not (drf-spectacular leaves
            # those with a default optional, and generated clients then type them `Unset`).
            schema["required"] = sorted(schema["properties"])
        return schema

    def _get_request_body(self, direction: str = "request") -> dict[str, Any] | None:
        body = super()._get_request_body(direction)
        if body is not None and self.method == "POST":
            # Every POST here that takes a body refuses a request without one (a POST that
            # takes none declares `request=None`); PATCH bodies may be left out.
            body["required"] = True
        return body


# --- Postprocessing: declarations made once for every operation ------------------------------

UNSAFE_METHODS = ("POST", "PATCH")
# Responses the idempotency layer does not keep, so never replays (SPEC Part 2).
NOT_KEPT_STATUSES = (400, 401, 429)
# What the idempotency layer answers by itself, added to what the view documents.
IDEMPOTENCY_ERRORS = {
    400: "Idempotency-Key: not 1 to 255 printable ASCII characters.",
    409: "IDEMPOTENCY_KEY_IN_USE: the first request with this Idempotency-Key is still being "
    "processed; send it again after the Retry-After header's seconds.",
    422: "IDEMPOTENCY_KEY_REUSED: this Idempotency-Key came with another method, path or body.",
}
IDEMPOTENCY_KEY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: a repeat with the same key, method, path and body "
    "within 24 hours gets the first response again (with `Idempotent-Replayed: true`) and does "
    "nothing again. 1 to 255 printable ASCII characters.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        # Printable ASCII; no space at either end, as HTTP would strip it.
        "pattern": "^[!-~]([ -~]*[!-~])?$",
    },
}
BATCH_POST = ("POST", "/api/v1/operations/enrichment/batch")
# The requests that reserve credits: the batch, one person, and the bulk batch.
RESERVING_POSTS = (
    BATCH_POST,
    ("POST", "/api/v1/operations/enrichment/{person_id}"),
    ("POST", "/api/v1/operations/enrichment/bulk"),
)


@dataclass(frozen=True)
class Answer:
    """One documented response of one operation, which header declarations are matched to."""

    method: str
    path: str
    status: int
    operation: dict[str, Any]

    @property
    def authenticated(self) -> bool:
        # A 500 can come before the request was counted against the key's limit.
        return bool(self.operation.get("security")) and self.status not in (401, 500)

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300

    @property
    def unsafe(self) -> bool:
        return self.method in UNSAFE_METHODS

    def of(self, *operations: tuple[str, str]) -> bool:
        return (self.method, self.path) in operations


@dataclass(frozen=True)
class ResponseHeader:
    name: str
    description: str
    schema: dict[str, Any]
    carried_by: Callable[[Answer], bool]
    # Whether every response it is declared on carries it.
    required: bool = True

    def declaration(self) -> dict[str, Any]:
        return {"description": self.description, "required": self.required, "schema": self.schema}


SECONDS = {"type": "integer", "minimum": 0}
CREDITS = {"type": "integer", "minimum": 0}
# The one table of response headers, keyed by their component name.
RESPONSE_HEADERS = {
    "RequestId": ResponseHeader(
        "X-Request-ID",
        "The request's id, logged with any error: the client's own X-Request-ID when it is 1 to "
        "64 letters, digits, '.', '_' or '-', else a new one.",
        {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
        lambda answer: True,
    ),
    "RateLimitPolicy": ResponseHeader(
        "RateLimit-Policy",
        "The API key's quota: q requests per window of w seconds (IETF httpapi RateLimit "
        'fields), e.g. `"default";q=1200;w=60`.',
        {"type": "string"},
        lambda answer: answer.authenticated,
    ),
    "RateLimit": ResponseHeader(
        "RateLimit",
        'What is left of the quota: r requests, for t more seconds, e.g. `"default";r=1199;t=59`.',
        {"type": "string"},
        lambda answer: answer.authenticated,
    ),
    "RetryAfter": ResponseHeader(
        "Retry-After",
        "Seconds to wait before sending another request with this API key.",
        SECONDS,
        lambda answer: answer.status == 429,
    ),
    "RetryAfterKeyInUse": ResponseHeader(
        "Retry-After",
        "With IDEMPOTENCY_KEY_IN_USE: seconds to wait before sending the request again.",
        SECONDS,
        lambda answer: answer.unsafe and answer.status == 409,
        required=False,
    ),
    "IdempotentReplayed": ResponseHeader(
        "Idempotent-Replayed",
        "`true` when this is the kept response to an earlier request with the same "
        "Idempotency-Key: nothing was done again.",
        {"type": "string", "enum": ["true"]},
        # 422 answers a repeat with another request: it is never the kept response.
        lambda answer: answer.unsafe and answer.status not in (*NOT_KEPT_STATUSES, 422),
        required=False,
    ),
    "EnrichmentBatchId": ResponseHeader(
        "Enrichment-Batch-Id",
        "The enrichment batch this request recorded: `GET /api/v1/enrichment-batches/{id}`.",
        {"type": "string", "format": "uuid"},
        lambda answer: answer.succeeded and answer.of(BATCH_POST),
    ),
    "CreditsReserved": ResponseHeader(
        "Credits-Reserved",
        "Credits this request reserved for its new enrichments.",
        CREDITS,
        lambda answer: answer.succeeded and answer.of(*RESERVING_POSTS),
    ),
    "CreditsAvailable": ResponseHeader(
        "Credits-Available",
        "The organization's available credits after this request.",
        {"type": "integer"},
        lambda answer: answer.succeeded and answer.of(*RESERVING_POSTS),
    ),
}


def _operations(result: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in result["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _declare_idempotency(method: str, operation: dict[str, Any]) -> None:
    if method not in UNSAFE_METHODS:
        return
    # The table's declaration replaces one a view may have made itself.
    operation["parameters"] = [
        *(
            parameter
            for parameter in operation.get("parameters", [])
            if (parameter.get("in"), parameter.get("name", "").lower())
            != ("header", "idempotency-key")
        ),
        {"$ref": "#/components/parameters/IdempotencyKey"},
    ]
    responses = operation["responses"]
    for status, description in IDEMPOTENCY_ERRORS.items():
        response = responses.setdefault(
            str(status),
            {
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
                },
                "description": "",
            },
        )
        response["description"] = " ".join(filter(None, (response["description"], description)))
    operation["responses"] = dict(sorted(responses.items()))


def _declare_headers(method: str, path: str, operation: dict[str, Any]) -> None:
    for status, response in operation["responses"].items():
        answer = Answer(method, path, int(status), operation)
        headers = response.setdefault("headers", {})
        for component, header in RESPONSE_HEADERS.items():
            if header.carried_by(answer):
                headers[header.name] = {"$ref": f"#/components/headers/{component}"}


# What drf-spectacular puts in a parameter's enum schema; a schema with more (a default) keeps
# its copy, as the siblings of a reference would be ignored.
_PLAIN_ENUM_KEYS = {"type", "enum", "minLength"}


def _enum_components(schemas: dict[str, Any]) -> dict[frozenset, list[str]]:
    by_values: dict[frozenset, list[str]] = {}
    for name, schema in schemas.items():
        if "enum" in schema:
            by_values.setdefault(frozenset(schema["enum"]), []).append(name)
    return by_values


def _reference_enum_components(
    operation: dict[str, Any], enums: dict[frozenset, list[str]]
) -> None:
    """drf-spectacular gives query parameters inline copies of enums; each becomes a reference
    to the component with the same values, so a client generates one type, not one each."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        names = enums.get(frozenset(schema.get("enum", ())), [])
        if len(names) == 1 and set(schema) <= _PLAIN_ENUM_KEYS:
            parameter["schema"] = {"$ref": f"#/components/schemas/{names[0]}"}


def _type_nullable_compositions(node: Any, schemas: dict[str, Any]) -> None:
    """OpenAPI 3.0 gives `nullable` a meaning only next to `type`; drf-spectacular puts it next
    to a `oneOf`/`allOf` (a URL field that may be blank, a nullable nested object). The type
    all the branches share goes next to it."""
    if isinstance(node, list):
        for item in node:
            _type_nullable_compositions(item, schemas)
        return
    if not isinstance(node, dict):
        return
    if node.get("nullable") and "type" not in node:
        branches = [b for key in ("oneOf", "anyOf", "allOf") for b in node.get(key, [])]
        types = {
            schemas[b["$ref"].rsplit("/", 1)[1]].get("type") if "$ref" in b else b.get("type")
            for b in branches
        }
        if len(types) == 1 and None not in types:
            node["type"] = types.pop()
    for value in node.values():
        _type_nullable_compositions(value, schemas)


def postprocess_schema(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Runs after drf-spectacular's enum hook, which names the enum components."""
    schemas = result["components"]["schemas"]
    enums = _enum_components(schemas)
    for method, path, operation in _operations(result):
        _reference_enum_components(operation, enums)
        _declare_idempotency(method, operation)
        _declare_headers(method, path, operation)
    _type_nullable_compositions(result, schemas)
    result["components"]["parameters"] = {"IdempotencyKey": IDEMPOTENCY_KEY_PARAMETER}
    result["components"]["headers"] = {
        component: header.declaration() for component, header in RESPONSE_HEADERS.items()
    }
    return result
