"""The waterfall through real HTTP adapters, end to end: a real worker asks Hunter then PDL, both
served by a real local HTTP server replaying their documented answers. Not found moves on, a
provider out of credits is skipped for everyone, a retried enrichment never asks again a provider
that said "not found", a provider's own rate limit is kept, and no key reaches a log line."""

import collections
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from celery.signals import worker_process_shutdown, worker_shutdown
from django.core.cache import caches
from django.db import connection
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from enrichment.models import Enrichment, GlobalEnrichment, Status
from enrichment.selectors import lookup_key, subject_of
from enrichment.services import (
    enrichments_claim,
    enrichments_complete_from_shared_answers,
    enrichments_settle_lookups,
)
from enrichment.waterfall import LookupOutcome
from persons.models import ContactPoint
from providers import registry
from providers.base import FoundValue
from providers.calls import provider_calls_flush, recorder
from providers.circuit import OPEN, Circuit
from providers.models import ProviderCall
from providers.ratelimit import rate_limit_schedule
from tests.enrichment.conftest import (
    assert_ledger_invariants,
    request_enrichments,
    wait_until_settled,
)
from tests.factories import PersonFactory
from tests.providers.conftest import fixture

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

HUNTER = "/v2/email-finder"
PDL = "/v5/person/enrich"
KEYS = {"HUNTER": "hk-live-0c4e8a2f6b1d9e3a7c5f", "PDL": "pk-live-5d2b8f1e7a3c9d4b6e0a"}


@pytest.fixture
def providers_served(httpserver: HTTPServer, monkeypatch, settings) -> Iterator[HTTPServer]:
    """Hunter then PDL for emails, both pointed at the local server with their own keys; no
    circuit, pause, window or buffered call carried over from another test."""
    for name, key in KEYS.items():
        monkeypatch.setenv(f"{name}_API_KEY", key)
        monkeypatch.setenv(f"{name}_BASE_URL", httpserver.url_for("").rstrip("/"))
        # The worker fixture's 0.2 s provider timeout is for the sandbox; HTTP gets room.
        monkeypatch.setenv(f"{name}_TIMEOUT", "5")
    monkeypatch.setenv("PDL_RATE_LIMIT", "1000/second")
    settings.ENRICHMENT_PROVIDERS = {"emails": ["hunter", "pdl"], "phones": ["sandbox"]}
    caches["providers"].clear()
    rate_limit_schedule().reset()
    recorder.flush()
    registry.adapter.cache_clear()
    yield httpserver
    registry.adapter.cache_clear()


def replay(httpserver: HTTPServer, path: str, provider: str, name: str) -> None:
    answer = fixture(provider, name)
    httpserver.expect_request(path).respond_with_json(
        answer["body"], status=answer["status"], headers=answer["headers"]
    )


def requests_to(httpserver: HTTPServer, path: str) -> list[Request]:
    return [request for request, _ in httpserver.log if request.path == path]


def calls_written(calls: QuerySet[ProviderCall], count: int) -> QuerySet[ProviderCall]:
    """`calls` once at least `count` are written: a job writes its calls just after its
    settlement commits, so a test that saw the settlement may read them a moment early."""
    deadline = time.monotonic() + 10
    while calls.count() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return calls


def calls_of(enrichment: Enrichment, count: int) -> list[tuple[str, str]]:
    calls = ProviderCall.objects.filter(reference_id=enrichment.pk).order_by("created_at", "id")
    return list(calls_written(calls, count).values_list("provider", "outcome"))


def test_not_found_at_hunter_moves_on_to_pdl_which_finds_and_is_charged_once(
    make_tenant, providers_served: HTTPServer, worker, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    replay(providers_served, HUNTER, "hunter", "not_found_404")
    replay(providers_served, PDL, "pdl", "found")
    tenant = make_tenant(credits=100)
    people = PersonFactory.create_batch(3, organization=tenant.organization)

    request_enrichments(tenant, people)
    settled = wait_until_settled(tenant.organization)

    for enrichment in settled.values():
        assert (enrichment.status, enrichment.data_found, enrichment.provider) == (
            Status.FINISHED,
            True,
            "pdl",
        )
        assert (enrichment.attempts, enrichment.credits_charged) == (1, 1)
        assert {"value", "type", "quality"} == set(enrichment.data[0])
        assert calls_of(enrichment, 2) == [("hunter", "not_found"), ("pdl", "found")]
        points = ContactPoint.objects.filter(person=enrichment.person)
        assert {(p.value, p.quality, p.provider) for p in points} == {
            (found["value"], "probable", "pdl") for found in enrichment.data
        }
        shared = GlobalEnrichment.objects.get(pk=enrichment.global_enrichment_id)
        assert (shared.provider, shared.data) == ("pdl", enrichment.data)
    body = tenant.client.get(f"/api/v1/enrichments/{enrichment.pk}").json()
    assert (body["provider"], body["attempts"], body["data"][0]["quality"]) == (
        "pdl",
        1,
        "probable",
    )
    assert (
        len(requests_to(providers_served, HUNTER)) == len(requests_to(providers_served, PDL)) == 3
    )
    assert_ledger_invariants(tenant.organization)
    assert_no_key_in(caplog)


@pytest.mark.parametrize(
    ("pdl_finally", "found"),
    [("found", True), ("not_found_404", False)],
    ids=["found", "not_found"],
)
def test_a_retried_enrichment_never_asks_again_the_provider_that_said_not_found(
    make_tenant, providers_served: HTTPServer, worker, pdl_finally: str, found: bool
) -> None:
    replay(providers_served, HUNTER, "hunter", "not_found_404")
    error = fixture("pdl", "server_error_500")
    # The first PDL request fails transiently; the retry gets the final answer.
    providers_served.expect_oneshot_request(PDL).respond_with_json(error["body"], status=500)
    replay(providers_served, PDL, "pdl", pdl_finally)
    tenant = make_tenant(credits=100)

    request_enrichments(tenant, [PersonFactory(organization=tenant.organization)])
    [enrichment] = wait_until_settled(tenant.organization).values()

    assert (enrichment.status, enrichment.data_found, enrichment.attempts) == (
        Status.FINISHED,
        found,
        2,
    )
    assert enrichment.providers_not_found == ["hunter"]
    assert enrichment.provider == ("pdl" if found else "")
    assert enrichment.credits_charged == (1 if found else 0)
    assert len(requests_to(providers_served, HUNTER)) == 1
    assert calls_of(enrichment, 3) == [
        ("hunter", "not_found"),
        ("pdl", "transient"),
        ("pdl", "found" if found else "not_found"),
    ]
    # Found: charged once; not found: the reservation released (reserved back to 0).
    assert_ledger_invariants(tenant.organization)
    account = tenant.organization.credit_account
    account.refresh_from_db()
    assert (account.balance, account.reserved) == (100 - enrichment.credits_charged, 0)


def test_hunter_running_out_of_credits_mid_run_opens_its_circuit_and_pdl_answers_the_rest(
    make_tenant, providers_served: HTTPServer, worker, caplog, monkeypatch
) -> None:
    caplog.set_level(logging.DEBUG)
    # At most this many Hunter requests are in flight at once: the first burst finds, the next
    # meets the used-up quota.
    monkeypatch.setenv("HUNTER_RATE_LIMIT", "5/second")
    registry.adapter.cache_clear()
    answered_by_hunter = 5
    found, used_up = fixture("hunter", "found_valid"), fixture("hunter", "quota_used_up_429")
    # Providers echo what they were sent; the key must still be redacted everywhere.
    used_up["body"]["errors"][0]["details"] += f" for key {KEYS['HUNTER']}"
    served = collections.Counter[int]()
    lock = threading.Lock()

    def hunter(request: Request) -> Response:
        with lock:
            answer = found if served[200] < answered_by_hunter else used_up
            served[answer["status"]] += 1
        return Response(
            json.dumps(answer["body"]),
            status=answer["status"],
            content_type="application/json",
        )

    providers_served.expect_request(HUNTER).respond_with_handler(hunter)
    replay(providers_served, PDL, "pdl", "found")
    tenant = make_tenant(credits=100)
    people = PersonFactory.create_batch(30, organization=tenant.organization)

    request_enrichments(tenant, people)
    settled = wait_until_settled(tenant.organization)

    by_provider = collections.Counter(e.provider for e in settled.values())
    assert by_provider == {"hunter": answered_by_hunter, "pdl": 30 - answered_by_hunter}
    assert {(e.status, e.data_found, e.credits_charged) for e in settled.values()} == {
        (Status.FINISHED, True, 1)
    }
    assert_ledger_invariants(tenant.organization)
    account = tenant.organization.credit_account
    account.refresh_from_db()
    assert (account.balance, account.reserved) == (70, 0)
    assert Circuit("hunter").state().state == OPEN
    assert Circuit("hunter").state().reason == "quota_exhausted"
    # Only the requests already sent when the quota ran out met the 429 (one burst at most):
    # the lookups still waiting for a slot saw the circuit open and asked PDL instead.
    assert 1 <= served[429] <= 5
    failures = ProviderCall.objects.filter(provider="hunter", outcome="provider_failure")
    assert failures.count() == served[429]
    assert all("[redacted]" in call.error for call in failures)
    assert_no_key_in(caplog)


def test_the_service_stays_under_a_providers_own_rate_limit(
    make_tenant, providers_served: HTTPServer, worker, monkeypatch, settings
) -> None:
    settings.ENRICHMENT_PROVIDERS = {"emails": ["hunter"], "phones": ["sandbox"]}
    per_second, persons = 10, 40
    monkeypatch.setenv("HUNTER_RATE_LIMIT", f"{per_second}/second")
    registry.adapter.cache_clear()
    answer, refused = fixture("hunter", "found_valid"), fixture("hunter", "rate_limited_403")
    accepted: collections.deque[float] = collections.deque()
    refusals = 0
    lock = threading.Lock()

    def hunter(request: Request) -> Response:
        # Hunter's own moving window: above `per_second` in the last second it says "slow down".
        nonlocal refusals
        with lock:
            now = time.monotonic()
            while accepted and accepted[0] <= now - 1:
                accepted.popleft()
            if len(accepted) >= per_second:
                refusals += 1
                body, status, headers = refused["body"], 403, {"Retry-After": "1"}
            else:
                accepted.append(now)
                body, status, headers = answer["body"], 200, {}
        return Response(
            json.dumps(body),
            status=status,
            headers=headers,
            content_type="application/json",
        )

    providers_served.expect_request(HUNTER).respond_with_handler(hunter)
    tenant = make_tenant(credits=100)
    started = time.monotonic()

    request_enrichments(
        tenant, PersonFactory.create_batch(persons, organization=tenant.organization)
    )
    settled = wait_until_settled(tenant.organization, timeout=60)

    elapsed = time.monotonic() - started
    assert {(e.status, e.provider) for e in settled.values()} == {(Status.FINISHED, "hunter")}
    # A handful at most: the service counts a request when it takes the slot, the provider when
    # it arrives, and on a loaded machine (make test runs two suites at once) some arrive late.
    assert refusals <= 6, f"{refusals} requests refused by the provider"
    # 40 requests at 10/s: the first 10 go at once, the rest are spread over 3 s at least.
    assert elapsed >= (persons - per_second) / per_second - 0.2
    assert_ledger_invariants(tenant.organization)


def assert_no_key_in(caplog: pytest.LogCaptureFixture) -> None:
    """The run's whole log output, every logger at DEBUG (httpx and the worker's included), as
    the project's handlers write it."""
    assert caplog.records
    for key in KEYS.values():
        assert key not in caplog.text
        assert not [r.name for r in caplog.records if key in r.getMessage()]


def settle_wave(tenant, persons: int) -> int:
    """The statements of one settled wave of `persons` found answers: the settlement, the
    shared answers, and the call log written after it."""
    claimed = enrichments_claim(
        enrichment_ids=[
            str(e.pk)
            for e in request_enrichments(
                tenant, PersonFactory.create_batch(persons, organization=tenant.organization)
            )
        ],
        claim_token="wave",
    )
    lookups = []
    for enrichment in claimed:
        answer: Future[LookupOutcome] = Future()
        value = FoundValue(value=f"{enrichment.pk.hex}@stripe.com", type="work", quality="verified")
        answer.set_result(LookupOutcome(values=(value,), provider="pdl"))
        lookups.append((enrichment, answer))
        recorder.record(
            provider="pdl",
            outcome="found",
            at=timezone.now(),
            duration_ms=1,
            reference_id=enrichment.pk,
        )
    with CaptureQueriesContext(connection) as captured:
        enrichments_settle_lookups(lookups=lookups)
        assert provider_calls_flush() == persons
    assert Enrichment.objects.filter(status=Status.FINISHED, data_found=True).count() >= persons
    return len(captured)


@pytest.mark.django_db
def test_a_settled_waves_statements_do_not_grow_with_its_enrichments(make_tenant) -> None:
    recorder.flush()
    tenant = make_tenant(credits=1_000)

    assert settle_wave(tenant, 1) == settle_wave(tenant, 20)


def test_with_every_provider_failing_the_enrichment_waits_then_fails_no_provider_available(
    make_tenant, providers_served: HTTPServer, worker, settings
) -> None:
    settings.ENRICHMENT_PROVIDER_COOLDOWN = 0.3
    replay(providers_served, HUNTER, "hunter", "unauthorized_401")
    replay(providers_served, PDL, "pdl", "unauthorized_401")
    tenant = make_tenant(credits=100)

    request_enrichments(tenant, [PersonFactory(organization=tenant.organization)])
    [enrichment] = wait_until_settled(tenant.organization).values()

    attempts = settings.ENRICHMENT_MAX_ATTEMPTS
    assert (enrichment.status, enrichment.error, enrichment.provider, enrichment.attempts) == (
        Status.FAILED,
        "no_provider_available",
        "",
        attempts,
    )
    # Each attempt came once a circuit reopened, for its one trial request; the other circuit,
    # opened a moment apart, may still have been closed to trials then.
    hunter, pdl = (
        len(requests_to(providers_served, HUNTER)),
        len(requests_to(providers_served, PDL)),
    )
    assert min(hunter, pdl) >= 1
    assert attempts <= hunter + pdl <= 2 * attempts
    assert enrichment.providers_not_found == []
    assert_ledger_invariants(tenant.organization)
    account = tenant.organization.credit_account
    account.refresh_from_db()
    assert (account.balance, account.reserved) == (100, 0)


def test_an_enrichment_waits_for_a_provider_whose_circuit_is_open_instead_of_failing(
    make_tenant, providers_served: HTTPServer, worker, settings
) -> None:
    settings.ENRICHMENT_PROVIDERS = {"emails": ["hunter"], "phones": ["sandbox"]}
    settings.ENRICHMENT_PROVIDER_COOLDOWN = 0.5
    rejected = fixture("hunter", "unauthorized_401")
    providers_served.expect_oneshot_request(HUNTER).respond_with_json(rejected["body"], status=401)
    replay(providers_served, HUNTER, "hunter", "found_valid")
    tenant = make_tenant(credits=100)

    request_enrichments(tenant, [PersonFactory(organization=tenant.organization)])
    [enrichment] = wait_until_settled(tenant.organization).values()

    assert (enrichment.status, enrichment.provider, enrichment.attempts) == (
        Status.FINISHED,
        "hunter",
        2,
    )
    assert enrichment.credits_charged == 1
    calls = calls_written(ProviderCall.objects.order_by("created_at"), 2)
    first, second = [call.created_at for call in calls]
    # The retry came once the circuit could let a trial through, not at the 50 ms backoff.
    assert (second - first).total_seconds() >= 0.5
    assert_ledger_invariants(tenant.organization)


@pytest.mark.django_db
def test_a_shared_answer_stored_before_qualities_existed_reads_as_unknown(make_tenant) -> None:
    tenant = make_tenant(credits=10)
    person = PersonFactory(organization=tenant.organization)
    GlobalEnrichment.objects.create(
        lookup_key=lookup_key(subject_of(person)),
        field="emails",
        data=[{"value": "ada@company.example", "type": "work"}],
        provider="hunter",
    )
    [enrichment] = request_enrichments(tenant, [person])

    assert enrichments_complete_from_shared_answers(enrichments=[enrichment]) == []

    enrichment.refresh_from_db()
    assert (enrichment.status, enrichment.provider, enrichment.credits_charged) == (
        Status.FINISHED,
        "hunter",
        1,
    )
    assert enrichment.data == [
        {"value": "ada@company.example", "type": "work", "quality": "unknown"}
    ]
    assert ContactPoint.objects.get(person=person).quality == "unknown"


@pytest.mark.django_db
@pytest.mark.parametrize("signal", [worker_process_shutdown, worker_shutdown])
def test_a_worker_process_writes_its_buffered_calls_when_it_shuts_down(signal) -> None:
    recorder.flush()
    recorder.record(provider="pdl", outcome="found", at=timezone.now(), duration_ms=3)

    signal.send(sender=None, pid=0, exitcode=0)

    assert (ProviderCall.objects.count(), recorder.pending()) == (1, 0)
