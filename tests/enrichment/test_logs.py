"""LOG_FORMAT=json: one JSON object per line, and a batch followed by its request id from the
POST, through the jobs it queued (retries included), to its settlement by a real worker."""

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from enrichment.models import Enrichment, Status
from enrichment_project.log_context import ContextFilter
from tests.enrichment.conftest import BATCH_URL, wait_until_settled
from tests.factories import PersonFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every log record of this process (the worker's threads included), written by the JSON
    formatter and context filter of settings.LOGGING."""
    options = dict(settings.LOGGING["formatters"]["json"])
    handler = logging.StreamHandler(stream := io.StringIO())
    handler.setFormatter(import_string(options.pop("()"))(**options))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def read(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_batch_is_followed_by_its_request_id_from_the_post_to_its_settlement(
    make_tenant, worker, json_lines
):
    tenant = make_tenant(credits=100)
    domains = ["found.example", "notfound.example", "fail.example"]  # fail.example is retried
    people = [PersonFactory(organization=tenant.organization, company_domain=d) for d in domains]

    response = tenant.client.post(
        BATCH_URL,
        {"personIds": [str(p.pk) for p in people], "field": "emails"},
        format="json",
        HTTP_X_REQUEST_ID="batch-trace-42",
    )
    assert response.status_code == 200
    ids = {enrichment["id"] for enrichment in response.json()}
    wait_until_settled(tenant.organization)
    time.sleep(0.2)  # the settlement's log line follows its commit

    lines = read(json_lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    about_batch = [
        line for line in lines if ids & {*line.get("enrichment_ids", []), line.get("enrichment_id")}
    ]
    assert {line["request_id"] for line in about_batch} == {"batch-trace-42"}
    assert {line["organization_id"] for line in about_batch} == {str(tenant.organization.pk)}
    queued_by_request = [
        line
        for line in about_batch
        if line["message"].startswith("Queued") and "task_id" not in line
    ]
    assert [set(line["enrichment_ids"]) for line in queued_by_request] == [ids]
    settled = [line for line in about_batch if line["message"].startswith("Settled")]
    assert {pk for line in settled for pk in line["enrichment_ids"]} == ids
    assert all(line["level"] == "INFO" and line["task_id"] for line in settled)
    # The retried enrichment was settled by a later job than the first one, still with the id.
    failed = str(Enrichment.objects.get(status=Status.FAILED).pk)
    first_job = next(line["task_id"] for line in settled if failed not in line["enrichment_ids"])
    last_job = next(line["task_id"] for line in settled if failed in line["enrichment_ids"])
    assert first_job != last_job


def test_json_lines_of_a_request_carry_its_request_and_organization_ids(tenant, json_lines):
    person = PersonFactory(organization=tenant.organization, company_domain="found.example")

    response = tenant.client.post(
        f"/api/v1/operations/enrichment/{person.pk}?field=emails", HTTP_X_REQUEST_ID="one-77"
    )

    assert response.status_code == 200
    [queued] = [line for line in read(json_lines) if line["message"].startswith("Queued")]
    assert queued["level"] == "INFO" and queued["logger"] == "enrichment.queueing"
    assert queued["request_id"] == "one-77"
    assert queued["organization_id"] == str(tenant.organization.pk)
    assert queued["enrichment_ids"] == [response.json()["id"]]
