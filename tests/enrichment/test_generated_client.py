"""A Python client generated with openapi-python-client from the schema a live server publishes
drives a batch from the persons to the charges, with a real worker settling it: the schema is
what such a client needs, not only what a linter accepts."""

import importlib
import inspect
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from pytest_django.live_server_helper import LiveServer

from tests.conftest import Tenant

pytestmark = pytest.mark.django_db(transaction=True)

PACKAGE = "generated_enrichment_client"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.fixture(scope="module")
def generated(
    django_db_setup: None, live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    """The client package generated from the live server's /api/schema, imported. (The test
    database comes first so that it is torn down after the live server's connection.)"""
    tmp_path = tmp_path_factory.mktemp("client")
    config = tmp_path / "config.yaml"
    # The generated code is imported, not formatted; the CSV import's text/csv body is sent as
    # a file, the way a user of the generator configures it (it knows no text/csv).
    config.write_text(
        "post_hooks: []\ncontent_type_overrides:\n  text/csv: application/octet-stream\n"
    )
    generate = subprocess.run(
        [
            GENERATOR,
            "generate",
            "--url",
            f"{live_server.url}/api/schema?format=json",
            "--meta",
            "none",
            "--output-path",
            tmp_path / PACKAGE,
            "--config",
            config,
        ],
        capture_output=True,
        text=True,
    )
    output = generate.stdout + generate.stderr
    assert generate.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def operation(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.api.v1.{name}")


def settled(client: Any, batch_id: uuid.UUID, timeout: float = 30) -> Any:
    """The batch object once its `completedAt` is set."""
    retrieve = operation("v1_enrichment_batches_retrieve")
    deadline = time.monotonic() + timeout
    while True:
        batch = retrieve.sync(client=client, batch_id=batch_id)
        if batch.completed_at is not None:
            return batch
        assert time.monotonic() < deadline, "the batch is still pending"
        time.sleep(0.1)


def test_a_generated_client_drives_a_batch_from_persons_to_charges(
    generated: ModuleType, live_server: LiveServer, make_tenant: Any, worker: None
) -> None:
    tenant: Tenant = make_tenant(credits=10)
    models = importlib.import_module(f"{PACKAGE}.models")
    client = generated.AuthenticatedClient(
        base_url=live_server.url, token=tenant.key, raise_on_unexpected_status=True
    )
    create = operation("v1_persons_create")
    batch_create = operation("v1_operations_enrichment_batch_create")

    # The body is a required argument now, not an Unset the client would crash on.
    assert inspect.signature(create.sync).parameters["body"].default is inspect.Parameter.empty
    persons = create.sync(
        client=client,
        body=[
            models.PersonInRequest(first_name="Ada", last_name="Lovelace", company_domain=domain)
            for domain in ("found.example", "found.example", "notfound.example")
        ],
    )
    assert [type(person) for person in persons] == [models.PersonOut] * 3

    unknown = batch_create.sync(
        client=client,
        body=models.BatchEnrichmentInRequest(
            person_ids=[uuid.uuid4()], field=models.FieldEnum.EMAILS
        ),
    )
    assert unknown.error.code == models.ErrorCodeEnum.VALIDATION_ERROR

    response = batch_create.sync_detailed(
        client=client,
        body=models.BatchEnrichmentInRequest(
            person_ids=[person.id for person in persons], field=models.FieldEnum.EMAILS
        ),
        idempotency_key=f"batch-{uuid.uuid4()}",
    )
    assert response.status_code == 200
    assert [e.entity_id for e in response.parsed] == [person.id for person in persons]

    batch = settled(client, uuid.UUID(response.headers["Enrichment-Batch-Id"]))
    assert batch.enrichment_ids == [e.id for e in response.parsed]
    assert (batch.total, batch.pending, batch.finished, batch.found) == (3, 0, 3, 2)
    assert (batch.failed, batch.timeout, batch.cancelled, batch.credits_charged) == (0, 0, 0, 2)
    enrichments = [
        operation("v1_enrichments_retrieve").sync(client=client, enrichment_id=e.id)
        for e in response.parsed
    ]
    assert [e.status for e in enrichments] == [models.StatusEnum.FINISHED] * 3
    assert [e.data_found for e in enrichments] == [True, True, False]
    assert [e.credits_charged for e in enrichments] == [1, 1, 0]

    balance = operation("v1_operations_credits_balance_retrieve").sync(client=client)
    assert (balance.balance, balance.reserved, balance.available) == (8, 0, 8)
    history = operation("v1_operations_credits_history_retrieve").sync(client=client)
    assert sorted(t.kind for t in history.transactions) == [
        models.KindEnum.CHARGE,
        models.KindEnum.CHARGE,
        models.KindEnum.GRANT,
    ]
    assert all(isinstance(t.operation, str) for t in history.transactions)
    assert all(isinstance(t.memo, str) for t in history.transactions)


def test_generated_response_models_type_no_field_the_server_always_sends_as_optional(
    generated: ModuleType,
) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    responses = [
        models.EnrichmentOut,
        models.EnrichmentBatchOut,
        models.FoundValueOut,
        models.PersonOut,
        models.ContactPointOut,
        models.CreditBalance,
        models.CreditHistory,
        models.CreditTransactionOut,
        models.ErrorResponse,
        models.ErrorDetail,
    ]

    optional = {
        model.__name__: [f.name for f in attrs.fields(model) if f.default is generated.types.UNSET]
        for model in responses
    }

    assert optional == {model.__name__: [] for model in responses}
