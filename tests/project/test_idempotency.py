"""Idempotency-Key on every POST and PATCH (SPEC Part 2, "Idempotency")."""

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from credits.models import CreditAccount
from enrichment.models import Enrichment, Status
from enrichment.services import enrichment_cancel
from enrichment_project.idempotency import Fingerprint, idempotency_key_claim
from enrichment_project.urls import urlpatterns as project_urls
from organizations.models import IdempotencyKey
from organizations.services import api_key_create
from organizations.tasks import purge_expired_idempotency_keys
from persons.models import Person
from tests.concurrency import run_concurrently
from tests.conftest import Tenant
from tests.enrichment.conftest import BATCH_URL
from tests.enrichment.test_batch_api import assert_error
from tests.factories import PersonFactory
from tests.persons.helpers import valid_person

PERSONS_URL = "/api/v1/persons"
# Added per response by outer middleware: a replay carries today's values, not the kept ones.
PER_REQUEST_HEADERS = {"X-Request-ID", "RateLimit", "RateLimit-Policy", "Idempotent-Replayed"}


class ExplodingApi(APIView):
    """A view no one told about idempotency, failing after it did its work."""

    calls = 0

    def post(self, request: Request) -> Response:
        ExplodingApi.calls += 1
        raise RuntimeError("failed after the work was done")


class StreamingApi(APIView):
    def post(self, request: Request) -> StreamingHttpResponse:
        return StreamingHttpResponse(iter([b"a,b\n", b"1,2\n"]), content_type="text/csv")


urlpatterns = [
    *project_urls,
    path("api/v1/test/explode", ExplodingApi.as_view()),
    path("api/v1/test/stream", StreamingApi.as_view()),
]


def post(client: APIClient, url: str, body: Any, key: str | None, **extra: str) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(url, body, format="json", **headers, **extra)


def kept_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in PER_REQUEST_HEADERS}


def reserved(tenant: Tenant) -> int:
    return CreditAccount.objects.get(organization=tenant.organization).reserved


def test_replayed_batch_returns_the_kept_response_and_reserves_nothing_more(
    tenant: Tenant,
) -> None:
    person = PersonFactory(organization=tenant.organization)
    body = {"personIds": [str(person.pk)], "field": "phones"}
    first = post(tenant.client, BATCH_URL, body, "batch-1")
    [enrichment] = Enrichment.objects.filter(organization=tenant.organization)
    # Cancelled, the enrichment is no longer reusable: running the batch again would create and
    # reserve a new one.
    enrichment_cancel(organization=tenant.organization, enrichment_id=enrichment.pk)

    replay = post(tenant.client, BATCH_URL, body, "batch-1")

    assert first.status_code == replay.status_code == 200
    assert "Idempotent-Replayed" not in first
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert replay.json()[0]["status"] == "pending"  # as answered then
    assert kept_headers(replay) == kept_headers(first)
    assert Enrichment.objects.filter(organization=tenant.organization).count() == 1
    assert Enrichment.objects.get().status == Status.CANCELLED
    assert reserved(tenant) == 0


def test_replayed_person_creation_creates_nothing_and_keeps_status_201(tenant: Tenant) -> None:
    first = post(tenant.client, PERSONS_URL, valid_person(), "create-ada")
    replay = post(tenant.client, PERSONS_URL, valid_person(), "create-ada")

    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert Person.objects.filter(organization=tenant.organization).count() == 1


def test_replayed_patch_does_not_undo_a_later_change(tenant: Tenant) -> None:
    person = PersonFactory(organization=tenant.organization, title="Engineer")
    url = f"{PERSONS_URL}/{person.pk}"
    first = tenant.client.patch(url, {"title": "CTO"}, format="json", HTTP_IDEMPOTENCY_KEY="p-1")
    tenant.client.patch(url, {"title": "CEO"}, format="json")

    replay = tenant.client.patch(url, {"title": "CTO"}, format="json", HTTP_IDEMPOTENCY_KEY="p-1")

    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json() and replay.json()["title"] == "CTO"
    assert replay["Idempotent-Replayed"] == "true"
    person.refresh_from_db()
    assert person.title == "CEO"


@pytest.mark.parametrize(
    ("url", "body", "method"),
    [
        pytest.param(PERSONS_URL, valid_person(firstName="Grace"), "post", id="another body"),
        pytest.param(PERSONS_URL + "?x=1", valid_person(), "post", id="another query string"),
        pytest.param(BATCH_URL, {"personIds": [], "field": "emails"}, "post", id="another path"),
        pytest.param(PERSONS_URL, valid_person(), "patch", id="another method"),
    ],
)
def test_key_reused_with_another_request_is_422_and_changes_nothing(
    tenant: Tenant, url: str, body: Any, method: str
) -> None:
    post(tenant.client, PERSONS_URL, valid_person(), "shared")
    kept = IdempotencyKey.objects.values().get()

    other = getattr(tenant.client, method)(url, body, format="json", HTTP_IDEMPOTENCY_KEY="shared")

    error = assert_error(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert error["details"] == {"method": "POST", "path": PERSONS_URL}
    assert Person.objects.count() == 1
    assert IdempotencyKey.objects.values().get() == kept


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="256 characters"),
        pytest.param("tab\there", id="control character"),
        pytest.param("caf\u00e9", id="not ASCII"),
        pytest.param(" padded", id="space at an end"),
    ],
)
def test_invalid_key_is_400_and_nothing_runs(tenant: Tenant, key: str) -> None:
    response = post(tenant.client, PERSONS_URL, valid_person(), key)

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"header": "Idempotency-Key"}
    assert not Person.objects.exists() and not IdempotencyKey.objects.exists()


@pytest.mark.parametrize(
    "key",
    [pytest.param("k" * 255, id="255 characters"), pytest.param('! ~"\\{}', id="punctuation")],
)
def test_longest_and_oddest_valid_keys_are_kept(tenant: Tenant, key: str) -> None:
    assert post(tenant.client, PERSONS_URL, valid_person(), key).status_code == 201
    assert post(tenant.client, PERSONS_URL, valid_person(), key)["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.get().key == key


def test_400_is_not_kept_so_the_fixed_request_can_use_the_key(tenant: Tenant) -> None:
    refused = post(tenant.client, PERSONS_URL, {"firstName": ""}, "fix-me")
    fixed = post(tenant.client, PERSONS_URL, valid_person(), "fix-me")

    assert_error(refused, 400, "VALIDATION_ERROR")
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed
    assert Person.objects.count() == 1


def test_401_is_not_kept(tenant: Tenant) -> None:
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant.key}x")

    assert_error(post(stranger, PERSONS_URL, valid_person(), "k"), 401, "VALIDATION_ERROR")
    assert_error(post(APIClient(), PERSONS_URL, valid_person(), "k"), 401, "VALIDATION_ERROR")
    # The key is judged only for an authenticated request.
    assert_error(post(APIClient(), PERSONS_URL, valid_person(), ""), 401, "VALIDATION_ERROR")
    assert not IdempotencyKey.objects.exists()
    assert post(tenant.client, PERSONS_URL, valid_person(), "k").status_code == 201


def test_429_is_not_kept(tenant: Tenant, settings: Any) -> None:
    settings.API_RATE_LIMIT = "1/min"
    tenant.client.get("/api/v1/operations/credits/balance")

    throttled = post(tenant.client, PERSONS_URL, valid_person(), "later")

    assert_error(throttled, 429, "RATE_LIMITED")
    assert not IdempotencyKey.objects.exists() and not Person.objects.exists()
    settings.API_RATE_LIMIT = "10/min"
    assert post(tenant.client, PERSONS_URL, valid_person(), "later").status_code == 201


def test_oversized_body_is_413_and_not_kept(tenant: Tenant, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    refused = post(tenant.client, PERSONS_URL, valid_person(title="x" * 100), "big")

    assert_error(refused, 413, "PAYLOAD_TOO_LARGE")
    assert not IdempotencyKey.objects.exists()


@pytest.mark.urls("tests.project.test_idempotency")
def test_500_is_kept_and_the_view_does_not_run_again(tenant: Tenant) -> None:
    ExplodingApi.calls = 0
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant.key}")

    first = post(client, "/api/v1/test/explode", {}, "boom")
    replay = post(client, "/api/v1/test/explode", {}, "boom")

    assert_error(first, 500, "INTERNAL_ERROR")
    assert replay.status_code == 500 and replay.content == first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert ExplodingApi.calls == 1


@pytest.mark.urls("tests.project.test_idempotency")
def test_streamed_response_is_not_kept(tenant: Tenant) -> None:
    answer = post(tenant.client, "/api/v1/test/stream", {}, "csv")

    assert b"".join(answer.streaming_content) == b"a,b\n1,2\n"
    assert not IdempotencyKey.objects.exists()


def test_same_key_in_two_organizations_is_two_requests(make_tenant: Any) -> None:
    one, two = make_tenant(), make_tenant()

    assert post(one.client, PERSONS_URL, valid_person(), "same").status_code == 201
    answer = post(two.client, PERSONS_URL, valid_person(), "same")

    assert answer.status_code == 201 and "Idempotent-Replayed" not in answer
    assert Person.objects.filter(organization=two.organization).count() == 1
    assert IdempotencyKey.objects.count() == 2


def test_key_is_shared_by_the_api_keys_of_one_organization(tenant: Tenant) -> None:
    colleague = APIClient()
    issued = api_key_create(organization=tenant.organization, username="colleague")
    colleague.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")

    first = post(tenant.client, PERSONS_URL, valid_person(), "team")
    replay = post(colleague, PERSONS_URL, valid_person(), "team")

    assert replay["Idempotent-Replayed"] == "true" and replay.content == first.content
    assert Person.objects.count() == 1


def test_expired_key_is_ignored_then_purged(tenant: Tenant) -> None:
    post(tenant.client, PERSONS_URL, valid_person(), "old")
    retention = timedelta(seconds=settings.IDEMPOTENCY_KEY_RETENTION)
    IdempotencyKey.objects.update(created_at=timezone.now() - retention - timedelta(seconds=1))

    again = post(tenant.client, PERSONS_URL, valid_person(firstName="Grace"), "old")
    post(tenant.client, PERSONS_URL, valid_person(), "just-expired")
    IdempotencyKey.objects.filter(key="just-expired").update(created_at=timezone.now() - retention)

    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert Person.objects.count() == 3
    assert purge_expired_idempotency_keys() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["old"]


def test_purge_runs_on_the_beat_schedule() -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE["purge-expired-idempotency-keys"]
    assert schedule["task"] == purge_expired_idempotency_keys.name


def test_claim_whose_process_died_is_taken_over_after_its_lease(tenant: Tenant) -> None:
    request = APIRequestFactory().post(PERSONS_URL, valid_person(), format="json")
    fingerprint = Fingerprint.of(request)
    other = Fingerprint(fingerprint.method, fingerprint.path, "0" * 64)
    for key, held_by in (("same", fingerprint), ("other", other)):
        idempotency_key_claim(organization_id=tenant.organization.pk, key=key, fingerprint=held_by)
    assert_error(
        post(tenant.client, PERSONS_URL, valid_person(), "same"), 409, "IDEMPOTENCY_KEY_IN_USE"
    )
    IdempotencyKey.objects.update(lease_expires_at=timezone.now())

    taken_over = post(tenant.client, PERSONS_URL, valid_person(), "same")
    refused = post(tenant.client, PERSONS_URL, valid_person(), "other")

    assert taken_over.status_code == 201
    assert_error(refused, 422, "IDEMPOTENCY_KEY_REUSED")  # not a retry of the dead request
    assert Person.objects.count() == 1


def test_a_key_costs_the_request_two_statements_and_a_replay_three(tenant: Tenant) -> None:
    people = PersonFactory.create_batch(3, organization=tenant.organization)
    tenant.client.get("/api/v1/operations/credits/balance")  # records the key's last use

    def statements(key: str | None, person: Any) -> int:
        body = {"personIds": [str(person.pk)], "field": "emails"}
        with CaptureQueriesContext(connection) as queries:
            assert post(tenant.client, BATCH_URL, body, key).status_code == 200
        return len(queries)

    plain = statements(None, people[0])
    keyed = statements("counted", people[1])
    replayed = statements("counted", people[1])

    assert keyed == plain + 2  # the claim and the kept response
    assert replayed == 3  # authentication, the claim attempt, the kept response


# --- Racing requests, each on its own database connection -----------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_requests_run_once(make_tenant: Any) -> None:
    tenant = make_tenant()
    clients = []
    for _ in range(8):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant.key}")
        clients.append(client)

    responses = run_concurrently(
        [lambda c=client: post(c, PERSONS_URL, valid_person(), "race") for client in clients]
    )

    executed = [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r]
    others = [r for r in responses if r not in executed]
    assert len(executed) == 1
    for response in others:
        if response.status_code == 201:
            assert response.content == executed[0].content
        else:
            assert_error(response, 409, "IDEMPOTENCY_KEY_IN_USE")
            assert response["Retry-After"] == "1"
    assert Person.objects.filter(organization=tenant.organization).count() == 1


@pytest.mark.django_db(transaction=True)
def test_repeat_while_the_first_runs_is_409_then_replayed(make_tenant: Any) -> None:
    tenant = make_tenant(credits=100)
    person = PersonFactory(organization=tenant.organization)
    body = {"personIds": [str(person.pk)], "field": "emails"}
    locked, release = threading.Event(), threading.Event()

    def hold_credit_row() -> None:
        # The batch waits for this lock inside its transaction, after its key was claimed.
        with transaction.atomic():
            CreditAccount.objects.select_for_update().get(organization=tenant.organization)
            locked.set()
            release.wait(timeout=30)

    def first_request() -> Any:
        locked.wait(timeout=30)
        return post(tenant.client, BATCH_URL, body, "slow")

    results: list[Any] = []
    background = threading.Thread(
        target=lambda: results.extend(run_concurrently([hold_credit_row, first_request]))
    )
    background.start()
    deadline = time.monotonic() + 30
    while not IdempotencyKey.objects.filter(key="slow").exists():
        assert time.monotonic() < deadline, "the first request never claimed its key"
        time.sleep(0.01)

    second_client = APIClient()
    second_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant.key}")
    in_flight = post(second_client, BATCH_URL, body, "slow")
    release.set()
    background.join()
    replay = post(second_client, BATCH_URL, body, "slow")

    assert_error(in_flight, 409, "IDEMPOTENCY_KEY_IN_USE")
    assert in_flight["Retry-After"] == "1"
    _, answered = results
    assert answered.status_code == 200
    assert replay["Idempotent-Replayed"] == "true" and replay.content == answered.content
    assert Enrichment.objects.filter(organization=tenant.organization).count() == 1


def test_schema_documents_the_key_and_its_refusals_on_every_post_and_patch(db: None) -> None:
    schema = APIClient().get("/api/schema", HTTP_ACCEPT="application/json").json()
    operations = [
        operation
        for path_item in schema["paths"].values()
        for method, operation in path_item.items()
        if method in ("post", "patch")
    ]

    assert len(operations) >= 5
    for operation in operations:
        parameters = [
            schema["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
            for p in operation["parameters"]
        ]
        headers = [p["name"] for p in parameters if p["in"] == "header"]
        assert headers == ["Idempotency-Key"], operation["operationId"]
        assert {"400", "409", "422"} <= set(operation["responses"]), operation["operationId"]
