"""The OpenAPI schema as real clients and linters see it: Redocly's recommended rules pass,
drf-spectacular has nothing to warn about, and the conventions of enrichment_project.openapi
hold for every operation, present and future."""

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import get_resolver

from enrichment_project.errors import _CODE_BY_STATUS, ErrorCode, ServiceError, error_body
from enrichment_project.openapi import postprocess_schema

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="session")
def redocly() -> Path:
    """Redocly CLI at the version tests/tools/package-lock.json pins, installed there."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("The schema lint needs Node.js 20.19+ and npm on the PATH.")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=TOOLS,
        check=True,
        capture_output=True,
    )
    return TOOLS / "node_modules" / ".bin" / "redocly"


@pytest.fixture
def schema(db: None) -> dict[str, Any]:
    response = Client().get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_schema_has_no_redocly_errors_under_the_recommended_rules(
    redocly: Path, schema: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "schema.json").write_text(json.dumps(schema))

    lint = subprocess.run(
        [redocly, "lint", "schema.json", "--extends=recommended", "--format=json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
    )

    report = json.loads(lint.stdout)
    errors = [
        f"{problem['ruleId']} at {problem['location'][0]['pointer']}: {problem['message']}"
        for problem in report["problems"]
        if problem["severity"] == "error"
    ]
    assert errors == []
    assert report["totals"]["errors"] == 0
    assert lint.returncode == 0


def test_drf_spectacular_validates_the_schema_without_a_warning(db: None, tmp_path: Path) -> None:
    # --fail-on-warn turns any warning or error of the generator into a RuntimeError.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


def test_every_operation_has_a_summary_of_its_own(schema: dict[str, Any]) -> None:
    summaries = {(method, path): op.get("summary") for method, path, op in operations(schema)}

    assert [key for key, summary in summaries.items() if not summary] == []
    assert len(set(summaries.values())) == len(summaries)


def test_the_summary_is_the_first_docstring_paragraph_and_the_rest_the_description(
    schema: dict[str, Any],
) -> None:
    create = schema["paths"]["/api/v1/persons"]["post"]

    assert create["summary"] == (
        "Creates one person, or an array of up to 1,000 at once (all or none). Returns what "
        "was sent, in the same shape and order."
    )
    assert "description" not in create


def test_the_schema_names_the_servers(schema: dict[str, Any]) -> None:
    assert schema["servers"] == [{"url": "/", "description": "The host that serves this schema"}]


def test_error_code_enum_lists_every_code_the_api_sends(schema: dict[str, Any]) -> None:
    get_resolver().url_patterns  # noqa: B018 - imports every view and so every service
    raised, pending = set(), [ServiceError]
    while pending:
        error_class = pending.pop()
        raised.add(error_class.code)
        pending.extend(error_class.__subclasses__())
    published = schema["components"]["schemas"]["ErrorCodeEnum"]["enum"]

    assert schema["components"]["schemas"]["ErrorDetail"]["properties"]["code"] == {
        "$ref": "#/components/schemas/ErrorCodeEnum"
    }
    assert set(published) == set(ErrorCode.values)
    assert raised | set(_CODE_BY_STATUS.values()) <= set(published)
    for code in ("METHOD_NOT_ALLOWED", "FORBIDDEN", "NOT_ACCEPTABLE", "IDEMPOTENCY_KEY_REUSED"):
        assert code in published


def test_an_error_code_the_schema_does_not_list_cannot_be_sent() -> None:
    with pytest.raises(ValueError):
        error_body("NOT_A_DOCUMENTED_CODE", "message")


def test_response_objects_require_every_field_they_always_send(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    responses = {
        component["$ref"].rsplit("/", 1)[1]
        for _method, _path, operation in operations(schema)
        for response in operation["responses"].values()
        for content in response.get("content", {}).values()
        for component in [content["schema"]]
        if "$ref" in component
    }
    optional = {
        name: sorted(set(components[name]["properties"]) - set(components[name]["required"]))
        for name in responses
        if "properties" in components[name]
    }

    assert {name: fields for name, fields in optional.items() if fields} == {}
    assert "status" in components["EnrichmentOut"]["required"]
    assert {"operation", "memo"} <= set(components["CreditTransactionOut"]["required"])


def test_every_post_body_is_required_and_patch_bodies_are_not(schema: dict[str, Any]) -> None:
    bodies = {
        (method, path): operation["requestBody"].get("required", False)
        for method, path, operation in operations(schema)
        if "requestBody" in operation
    }

    assert bodies[("POST", "/api/v1/persons")] is True
    assert [key for key, required in bodies.items() if key[0] == "POST" and not required] == []
    assert bodies[("PATCH", "/api/v1/persons/{person_id}")] is False


def test_query_parameters_reference_the_enum_components_instead_of_copying_them(
    schema: dict[str, Any],
) -> None:
    components = [set(s["enum"]) for s in schema["components"]["schemas"].values() if "enum" in s]
    # A parameter's own enum (the export's `separator`) is fine; a copy of a component's is not.
    inline = [
        (method, path, parameter["name"])
        for method, path, operation in operations(schema)
        for parameter in operation.get("parameters", [])
        if set(parameter.get("schema", {}).get("enum", ())) in components
    ]
    field_parameters = [
        parameter["schema"]
        for _method, _path, operation in operations(schema)
        for parameter in operation.get("parameters", [])
        if parameter.get("name") == "field"
    ]

    assert inline == []
    assert len(field_parameters) == 3
    assert all(p == {"$ref": "#/components/schemas/FieldEnum"} for p in field_parameters)
    enums = [s["enum"] for s in schema["components"]["schemas"].values() if "enum" in s]
    assert enums.count(["emails", "phones"]) == 1


@pytest.mark.parametrize("path", ["/api/v1/persons", "/api/v1/enrichments"])
def test_list_limits_carry_their_range(schema: dict[str, Any], path: str) -> None:
    [limit] = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == "limit"]

    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}


def test_every_nullable_schema_has_a_type(schema: dict[str, Any]) -> None:
    untyped = []

    def walk(node: Any, pointer: str) -> None:
        if isinstance(node, dict):
            if node.get("nullable") and "type" not in node:
                untyped.append(pointer)
            for key, value in node.items():
                walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{pointer}/{index}")

    walk(schema, "#")

    assert untyped == []
    linkedin = schema["components"]["schemas"]["PersonInRequest"]["properties"]["linkedinUrl"]
    assert linkedin["type"] == "string"


def response_headers(operation: dict[str, Any], status: str) -> dict[str, str]:
    """Header name -> the component it references."""
    headers = operation["responses"][status].get("headers", {})
    return {name: ref["$ref"].rsplit("/", 1)[1] for name, ref in headers.items()}


def test_every_response_declares_x_request_id_and_authenticated_ones_the_rate_limit(
    schema: dict[str, Any],
) -> None:
    for _method, _path, operation in operations(schema):
        for status in operation["responses"]:
            headers = response_headers(operation, status)
            assert headers["X-Request-ID"] == "RequestId"
            authenticated = status not in ("401", "500")
            assert ("RateLimit" in headers) is authenticated
            assert ("RateLimit-Policy" in headers) is authenticated
    assert schema["components"]["headers"]["RequestId"]["required"] is True


def test_retry_after_is_declared_on_429_always_and_on_409_of_posts_and_patches(
    schema: dict[str, Any],
) -> None:
    for method, _path, operation in operations(schema):
        for status in operation["responses"]:
            retry_after = response_headers(operation, status).get("Retry-After")
            if status == "429":
                assert retry_after == "RetryAfter"
            elif status == "409" and method in ("POST", "PATCH"):
                assert retry_after == "RetryAfterKeyInUse"
            else:
                assert retry_after is None
    headers = schema["components"]["headers"]
    assert headers["RetryAfter"]["required"] is True
    assert headers["RetryAfterKeyInUse"]["required"] is False


def test_every_post_and_patch_takes_an_idempotency_key_and_documents_its_answers(
    schema: dict[str, Any],
) -> None:
    key_ref = {"$ref": "#/components/parameters/IdempotencyKey"}
    for method, _path, operation in operations(schema):
        unsafe = method in ("POST", "PATCH")
        assert (key_ref in operation.get("parameters", [])) is unsafe
        if unsafe:
            assert {"400", "409", "422"} <= set(operation["responses"])
            assert "IDEMPOTENCY_KEY_REUSED" in operation["responses"]["422"]["description"]
            assert "IDEMPOTENCY_KEY_IN_USE" in operation["responses"]["409"]["description"]
            replayed = {
                status
                for status in operation["responses"]
                if "Idempotent-Replayed" in response_headers(operation, status)
            }
            assert replayed == set(operation["responses"]) - {"400", "401", "422", "429"}
    key = schema["components"]["parameters"]["IdempotencyKey"]
    assert (key["in"], key["name"], key["required"]) == ("header", "Idempotency-Key", False)
    assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (1, 255)


def test_batch_headers_are_declared_on_the_operations_that_send_them(
    schema: dict[str, Any],
) -> None:
    batch = schema["paths"]["/api/v1/operations/enrichment/batch"]["post"]
    one = schema["paths"]["/api/v1/operations/enrichment/{person_id}"]
    credits = {"Credits-Reserved", "Credits-Available"}

    assert {"Enrichment-Batch-Id", *credits} <= set(response_headers(batch, "200"))
    assert credits <= set(response_headers(one["post"], "200"))
    assert "Enrichment-Batch-Id" not in response_headers(one["post"], "200")
    assert not credits & set(response_headers(one["get"], "200"))
    assert not credits & set(response_headers(batch, "402"))


def test_the_bulk_batch_gets_its_headers_and_one_idempotency_key_from_the_table() -> None:
    """The bulk batch (SPEC Part 2) gets its headers and the idempotency parameter from the
    table alone, by its method and path."""
    bare = {"content": {"application/json": {"schema": {"type": "object"}}}, "description": ""}
    # As a view that declared the key itself would: the table's declaration replaces it.
    own_key = {"in": "header", "name": "Idempotency-Key", "schema": {"type": "string"}}
    schema = {
        "paths": {
            "/api/v1/operations/enrichment/bulk": {
                "post": {
                    "parameters": [own_key],
                    "security": [{"apiKey": []}],
                    "responses": {"200": dict(bare)},
                }
            }
        },
        "components": {"schemas": {}},
    }

    bulk = postprocess_schema(result=schema)["paths"]["/api/v1/operations/enrichment/bulk"]

    assert set(response_headers(bulk["post"], "200")) == {
        "X-Request-ID",
        "RateLimit-Policy",
        "RateLimit",
        "Idempotent-Replayed",
        "Credits-Reserved",
        "Credits-Available",
    }
    assert bulk["post"]["parameters"] == [{"$ref": "#/components/parameters/IdempotencyKey"}]
