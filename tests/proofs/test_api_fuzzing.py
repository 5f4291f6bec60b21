"""Schemathesis fuzzes every operation of the OpenAPI schema the service publishes, in-process
through the WSGI app, with a valid key and ids of stored objects mixed into the generated ones:
no request may get a server error or show another organization's data, and every response to a
valid request must be documented by the schema. Below them, the inputs the fuzzer found wrong
or cannot forge."""

import base64
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
import schemathesis
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django import Settings
from schemathesis import Case, CheckContext, GenerationMode, Response, checks

from enrichment_project.wsgi import application
from tests.conftest import Tenant
from tests.enrichment.test_batch_api import assert_error
from tests.proofs.conftest import FUZZ_CASES, Stocked

SCHEMA = schemathesis.openapi.from_wsgi("/api/schema", application)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
CONFORMANCE = [checks.status_code_conformance, checks.response_schema_conformance]


def fuzz_params() -> list:
    """Each operation fuzzed twice: with invalid requests, which must be refused without a
    server error, and with valid ones, which must get responses the schema documents."""
    params = []
    for operation in OPERATIONS:
        params.append(
            pytest.param(operation, GenerationMode.NEGATIVE, [], id=f"{operation.label} invalid")
        )
        params.append(
            pytest.param(
                operation,
                GenerationMode.POSITIVE,
                CONFORMANCE,
                id=f"{operation.label} valid",
            )
        )
    return params


@st.composite
def cases_with_stored_ids(
    draw: st.DrawFn,
    operation: schemathesis.APIOperation,
    generation_mode: GenerationMode,
    mine: Stocked,
    other: Stocked,
) -> Case:
    """A generated case whose ids are those of the caller's stored objects, left as generated,
    or those of another organization's objects."""
    case = draw(operation.as_strategy(generation_mode))
    stocked = draw(st.sampled_from([mine, None, other]))
    if stocked is None:
        return case
    ids = {
        "person_id": [str(person.pk) for person in stocked.persons],
        "enrichment_id": [str(enrichment.pk) for enrichment in stocked.enrichments],
        "batch_id": [str(batch.pk) for batch in stocked.batches],
    }
    for name in case.path_parameters or {}:
        if name in ids:  # other ids (webhook endpoints, deliveries) stay as generated
            case.path_parameters[name] = draw(st.sampled_from(ids[name]))
    person_ids = st.sampled_from(ids["person_id"])
    if isinstance(case.body, dict) and isinstance(case.body.get("personIds"), list):
        case.body["personIds"] = draw(st.lists(person_ids, min_size=1, max_size=4))
    if isinstance(case.body, dict) and isinstance(case.body.get("tasks"), list):
        for task in case.body["tasks"]:
            if isinstance(task, dict):
                task["entityId"] = draw(person_ids)
    return case


@pytest.mark.parametrize(("operation", "generation_mode", "conformance"), fuzz_params())
def test_fuzzed_requests_get_documented_responses_and_never_a_server_error(
    operation: schemathesis.APIOperation,
    generation_mode: GenerationMode,
    conformance: list[Callable],
    make_stocked_tenant: Callable[..., Stocked],
    wsgi_requests_keep_the_test_transaction: None,
    settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    # Shrinking a failing case can send more requests than a key may send in a minute.
    settings.API_RATE_LIMIT = "1000000/min"
    # Enough for one phone enrichment, not two: some requests get 402.
    mine = make_stocked_tenant(credits=15)
    other = make_stocked_tenant()

    def no_other_tenant_data(ctx: CheckContext, response: Response, case: Case) -> None:
        sent = f"{response.request.url} {response.request.body!r}"
        leaked = [pk for pk in other.ids if pk in response.text and pk not in sent]
        assert not leaked, f"another organization's ids in the response: {leaked}"

    counts = request.config.stash.setdefault(FUZZ_CASES, {})
    counts[request.node.name] = 0

    @hypothesis_settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=cases_with_stored_ids(operation, generation_mode, mine, other))
    def fuzz(case: Case) -> None:
        counts[request.node.name] += 1
        # Each case starts from the stocked data: what it wrote is rolled back after it.
        savepoint = transaction.savepoint()
        try:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {mine.tenant.key}"},
                checks=[checks.not_a_server_error, no_other_tenant_data, *conformance],
            )
        finally:
            transaction.savepoint_rollback(savepoint)

    fuzz()


def test_credit_history_refuses_an_offset_beyond_what_the_database_can_skip(tenant: Tenant) -> None:
    response = tenant.client.get("/api/v1/operations/credits/history", {"offset": 2**63})

    assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("position", ["not-a-date", "2026-13-45T00:00:00Z", "\x00"])
@pytest.mark.parametrize("url", ["/api/v1/persons", "/api/v1/enrichments"])
def test_a_cursor_edited_by_the_client_is_refused_like_any_invalid_cursor(
    tenant: Tenant, url: str, position: str
) -> None:
    """A cursor is base64 of a query string a client can decode, edit and encode again."""
    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()

    response = tenant.client.get(url, {"cursor": cursor})

    assert_error(response, 404, "NOT_FOUND")
