"""RateLimit-Policy and RateLimit on every authenticated response, from the throttle's own
counters (SPEC Part 2, "Rate-limit and credit headers")."""

import re
import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from organizations.models import ApiKey
from organizations.throttling import ApiKeyRateThrottle
from tests.conftest import Tenant
from tests.enrichment.test_batch_api import assert_error
from tests.persons.helpers import valid_person

BALANCE_URL = "/api/v1/operations/credits/balance"
RATE_LIMIT = re.compile(r'"default";r=(\d+);t=(\d+)')


def quota(response: Any) -> tuple[int, int]:
    """The remaining requests and the seconds until the window resets, as the response says."""
    match = RATE_LIMIT.fullmatch(response["RateLimit"])
    assert match, response["RateLimit"]
    return int(match[1]), int(match[2])


def history_key(tenant: Tenant) -> str:
    """Where the throttle keeps the times of the key's counted requests."""
    api_key = ApiKey.objects.get(organization=tenant.organization)
    return ApiKeyRateThrottle.cache_format % {
        "scope": ApiKeyRateThrottle.scope,
        "ident": api_key.pk,
    }


@pytest.fixture
def limited(tenant: Tenant, settings: Any) -> Tenant:
    settings.API_RATE_LIMIT = "3/min"
    return tenant


def test_remaining_requests_count_down_with_the_policy_on_each_response(limited: Tenant) -> None:
    responses = [limited.client.get(BALANCE_URL) for _ in range(3)]

    assert [r.status_code for r in responses] == [200] * 3
    assert {r["RateLimit-Policy"] for r in responses} == {'"default";q=3;w=60'}
    assert [quota(r)[0] for r in responses] == [2, 1, 0]
    assert all(55 <= quota(r)[1] <= 60 for r in responses)


def test_reset_is_when_the_oldest_counted_request_leaves_the_window(limited: Tenant) -> None:
    # One request counted 45 s ago: it leaves the 60 s window in 15 s.
    ApiKeyRateThrottle.cache.set(history_key(limited), [time.time() - 45], 60)

    remaining, reset = quota(limited.client.get(BALANCE_URL))

    assert remaining == 1
    assert 14 <= reset <= 15


def test_429_carries_retry_after_equal_to_the_reset(limited: Tenant) -> None:
    for _ in range(3):
        limited.client.get(BALANCE_URL)

    refused = limited.client.get(BALANCE_URL)

    assert_error(refused, 429, "RATE_LIMITED")
    remaining, reset = quota(refused)
    assert remaining == 0
    assert refused["RateLimit-Policy"] == '"default";q=3;w=60'
    assert int(refused["Retry-After"]) == reset and 0 < reset <= 60


def test_errors_and_writes_carry_the_headers_too(limited: Tenant) -> None:
    created = limited.client.post("/api/v1/persons", valid_person(), format="json")
    invalid = limited.client.post("/api/v1/persons", {}, format="json")
    missing = limited.client.get("/api/v1/enrichments/not-a-uuid")

    assert [r.status_code for r in (created, invalid, missing)] == [201, 400, 404]
    assert [quota(r)[0] for r in (created, invalid, missing)] == [2, 1, 0]


def test_replays_and_refusals_of_idempotency_count_and_carry_the_headers(limited: Tenant) -> None:
    def create(key: str, first_name: str = "Ada") -> Any:
        body = valid_person(firstName=first_name)
        return limited.client.post("/api/v1/persons", body, format="json", HTTP_IDEMPOTENCY_KEY=key)

    first, replay, reused = create("k"), create("k"), create("k", "Grace")

    assert replay["Idempotent-Replayed"] == "true"
    assert_error(reused, 422, "IDEMPOTENCY_KEY_REUSED")
    assert [quota(r)[0] for r in (first, replay, reused)] == [2, 1, 0]
    assert_error(create("k"), 429, "RATE_LIMITED")


def test_unauthenticated_responses_carry_no_rate_limit(db: None) -> None:
    response = APIClient().get(BALANCE_URL)

    assert_error(response, 401, "VALIDATION_ERROR")
    assert "RateLimit" not in response and "RateLimit-Policy" not in response
