"""Limits on what one request can cost, constant-time key checks, and Django's deployment
checks with production settings. (Per-key throttling and the 413 body cap are proven in
tests/project/test_api_surface.py.)"""

import hmac
import os
import secrets
import subprocess
import sys
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from enrichment.models import Field
from organizations.models import ApiKey
from organizations.services import hash_api_key
from persons.models import Person
from tests.conftest import Tenant
from tests.enrichment.conftest import BATCH_URL
from tests.enrichment.test_batch_api import assert_error
from tests.factories import PersonFactory
from tests.persons.helpers import valid_person

BALANCE_URL = "/api/v1/operations/credits/balance"


@pytest.fixture
def crowded(tenant: Tenant) -> list[str]:
    """The ids of one person more than a batch may name, all of the tenant's organization."""
    count = settings.ENRICHMENT_BATCH_MAX_PERSONS + 1
    people = PersonFactory.build_batch(count, organization=tenant.organization)
    return [str(person.pk) for person in Person.objects.bulk_create(people)]


@pytest.mark.parametrize(
    ("url", "body"),
    [
        pytest.param(
            BATCH_URL, lambda ids: {"personIds": ids, "field": "emails"}, id="batch of 101 ids"
        ),
        pytest.param(
            "/api/v1/persons",
            lambda ids: [valid_person()] * (settings.PERSONS_BULK_MAX + 1),
            id="bulk of 1001 persons",
        ),
        pytest.param(
            "/api/v1/operations/enrichment/batch/query",
            lambda ids: {
                "tasks": [{"entityId": pk, "field": field} for pk in ids for field in Field.values][
                    :201
                ]
            },
            id="batch query of 201 tasks",
        ),
    ],
)
def test_oversized_requests_are_refused_before_any_work(
    tenant: Tenant, crowded: list[str], url: str, body: Any
) -> None:
    # The first request of a key records its use; the refused one must write nothing at all.
    tenant.client.get(BALANCE_URL)

    with CaptureQueriesContext(connection) as queries:
        response = tenant.client.post(url, body(crowded), format="json")

    assert_error(response, 400, "VALIDATION_ERROR")
    # Plain reads only (authentication's): no write, no lock, not even a transaction.
    statements = [query["sql"].lstrip().upper() for query in queries.captured_queries]
    assert [sql for sql in statements if not sql.startswith("SELECT") or " FOR " in sql] == []


def test_api_key_hashes_are_compared_in_constant_time(tenant: Tenant) -> None:
    # The same prefix finds the key's row: only the hash comparison can refuse this secret.
    forged = f"{tenant.key}x"
    forged_client = APIClient()
    forged_client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")

    with mock.patch(
        "organizations.services.hmac.compare_digest", wraps=hmac.compare_digest
    ) as compare_digest:
        assert tenant.client.get(BALANCE_URL).status_code == 200
        assert_error(forged_client.get(BALANCE_URL), 401, "VALIDATION_ERROR")

    stored = ApiKey.objects.get(organization=tenant.organization).key_hash
    assert compare_digest.call_args_list == [
        mock.call(stored, hash_api_key(tenant.key)),
        mock.call(stored, hash_api_key(forged)),
    ]


def test_deployment_checks_pass_with_production_settings() -> None:
    environment = os.environ | {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(45),  # 60 characters
        "HTTPS_ONLY": "true",
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
