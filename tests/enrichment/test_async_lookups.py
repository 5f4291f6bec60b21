"""The asynchronous stage (Dropcontact) through its services, against a local server replaying
Dropcontact's documented answers: claimed enrichments are submitted in groups, polled by the
sweep, and settled with the usual charge/release rules; a redelivered job never submits twice."""

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_httpserver import HTTPServer

from credits.models import CreditTransaction
from enrichment.async_lookups import (
    _due_lookups_claim,
    async_lookups_poll,
    async_providers_not_found,
    enrichments_submit_async,
)
from enrichment.models import AsyncLookup, AsyncLookupItem, AsyncLookupStatus, Enrichment, Status
from enrichment.services import enrichments_claim, enrichments_requeue_timed_out
from enrichment_project.celery import app
from persons.models import ContactPoint
from providers import registry
from providers.adapters.dropcontact import DropcontactAdapter
from providers.base import AsyncAdapter
from tests.concurrency import run_concurrently
from tests.enrichment.conftest import (
    assert_ledger_invariants,
    celery_worker,
    request_enrichments,
    wait_until_settled,
)
from tests.factories import PersonFactory
from tests.providers.conftest import (
    API_KEY,
    fixture,
    fresh_provider_state,  # noqa: F401 (autouse)
)

SUBMIT = "/v1/enrich/all"
POLL = "/v1/enrich/all/qzmxkpvlrtdnhwa"
POLL_TASK = "enrichment.poll_async_lookups"
SANDBOX = "sandbox"
# The persons of the recorded poll_ready answer, in its order.
PEOPLE = [
    {"first_name": "Denis", "last_name": "Cohen", "company_name": "Dropcontact"},
    {"first_name": "Ana", "last_name": "Lopez", "company_domain": "acme.example"},
    {"first_name": "Nobody", "last_name": "Known", "company_name": "Nowhere"},
    {
        "first_name": "",
        "last_name": "",
        "company_name": "",
        "linkedin_url": "https://www.linkedin.com/in/paul-martin",
    },
]


@pytest.fixture
def dropcontact(httpserver: HTTPServer, monkeypatch, settings) -> Iterator[AsyncAdapter]:
    """Dropcontact configured as the only email provider, pointed at the local server; the sweep
    finds every live submission due at once."""
    monkeypatch.setenv("DROPCONTACT_API_KEY", API_KEY)
    monkeypatch.setenv("DROPCONTACT_BASE_URL", httpserver.url_for("").rstrip("/"))
    settings.ENRICHMENT_PROVIDERS = {"emails": ["dropcontact"], "phones": ["sandbox"]}
    settings.ENRICHMENT_ASYNC_POLL_SECONDS = 0
    registry.adapter.cache_clear()
    yield registry.adapter("dropcontact")
    registry.adapter.cache_clear()


def answer(httpserver: HTTPServer, path: str, name: str, method: str = "GET") -> None:
    recorded = fixture("dropcontact", name)
    httpserver.expect_ordered_request(path, method=method).respond_with_json(
        recorded["body"], status=recorded["status"]
    )


def posts(httpserver: HTTPServer) -> list[dict]:
    return [request.get_json() for request, _ in httpserver.log if request.method == "POST"]


def claimed(tenant, people: list[dict], token: str = "job-1") -> list[Enrichment]:
    persons = [PersonFactory(organization=tenant.organization, **person) for person in people]
    ids = [str(e.pk) for e in request_enrichments(tenant, persons)]
    by_id = {str(e.pk): e for e in enrichments_claim(enrichment_ids=ids, claim_token=token)}
    return [by_id[pk] for pk in ids]


def by_name(tenant) -> dict[str, Enrichment]:
    enrichments = Enrichment.objects.filter(organization=tenant.organization)
    return {e.person.first_name or "linkedin": e for e in enrichments.select_related("person")}


def test_not_ready_twice_then_ready_charges_the_found_and_releases_the_rest(
    make_tenant, httpserver: HTTPServer, dropcontact
) -> None:
    tenant = make_tenant(credits=10)
    answer(httpserver, SUBMIT, "submit_accepted", method="POST")
    for name in ("poll_not_ready", "poll_not_ready", "poll_ready"):
        answer(httpserver, POLL, name)

    assert enrichments_submit_async(enrichments=claimed(tenant, PEOPLE), adapter=dropcontact) == []
    polled = [async_lookups_poll() for _ in range(3)]

    assert polled == [1, 1, 1]
    lookup = AsyncLookup.objects.get()
    assert (lookup.status, lookup.request_id, lookup.polls) == (
        AsyncLookupStatus.ANSWERED,
        "qzmxkpvlrtdnhwa",
        2,
    )
    settled = by_name(tenant)
    assert {name: (e.status, e.data_found, e.credits_charged) for name, e in settled.items()} == {
        "Denis": (Status.FINISHED, True, 1),
        "Ana": (Status.FINISHED, True, 1),
        "Nobody": (Status.FINISHED, False, 0),
        "linkedin": (Status.FINISHED, True, 1),
    }
    assert settled["Ana"].data == [
        {"value": "ana@acme.example", "type": "work", "quality": "probable"}
    ]
    assert (settled["Denis"].provider, settled["Nobody"].provider) == ("dropcontact", "")
    assert ContactPoint.objects.filter(person__organization=tenant.organization).count() == 3
    assert_ledger_invariants(tenant.organization)
    assert not AsyncLookupItem.objects.filter(live=True).exists()
    assert async_lookups_poll() == 0


def test_groups_are_submitted_up_to_the_batch_limit(
    make_tenant, httpserver: HTTPServer, dropcontact, settings
) -> None:
    class SmallBatches(DropcontactAdapter):
        batch_limit = 2

    httpserver.expect_request(SUBMIT, method="POST").respond_with_json(
        fixture("dropcontact", "submit_accepted")["body"]
    )
    tenant = make_tenant(credits=10)
    people = [{"first_name": f"P{i}", "last_name": "X", "company_name": "Acme"} for i in range(5)]

    enrichments_submit_async(
        enrichments=claimed(tenant, people), adapter=SmallBatches(dropcontact.config)
    )

    sent = [[record["first_name"] for record in body["data"]] for body in posts(httpserver)]
    assert sent == [["P0", "P1"], ["P2", "P3"], ["P4"]]
    assert AsyncLookup.objects.filter(status=AsyncLookupStatus.SUBMITTED).count() == 3


def test_a_redelivered_job_finds_its_enrichments_submitted_and_sends_nothing(
    make_tenant, httpserver: HTTPServer, dropcontact
) -> None:
    answer(httpserver, SUBMIT, "submit_accepted", method="POST")
    tenant = make_tenant(credits=10)
    enrichments = claimed(tenant, PEOPLE[:2], token="job-1")
    enrichments_submit_async(enrichments=enrichments, adapter=dropcontact)

    # The worker died after submitting; the broker redelivers the job, which claims them again.
    again = enrichments_claim(enrichment_ids=[str(e.pk) for e in enrichments], claim_token="job-1")
    assert enrichments_submit_async(enrichments=again, adapter=dropcontact) == []

    assert len(posts(httpserver)) == 1
    assert AsyncLookup.objects.count() == 1
    assert AsyncLookupItem.objects.filter(live=True).count() == 2


def test_a_submission_whose_worker_died_mid_call_is_found_by_the_sweep_and_retried(
    make_tenant, httpserver: HTTPServer, dropcontact, settings
) -> None:
    class DiesAfterSending(DropcontactAdapter):
        def submit(self, subjects, field):
            super().submit(subjects, field)
            raise SystemExit("worker killed before recording the answer")

    httpserver.expect_request(SUBMIT, method="POST").respond_with_json(
        fixture("dropcontact", "submit_accepted")["body"]
    )
    tenant = make_tenant(credits=10)
    enrichments = claimed(tenant, PEOPLE[:1], token="job-1")
    with pytest.raises(SystemExit):
        enrichments_submit_async(
            enrichments=enrichments, adapter=DiesAfterSending(dropcontact.config)
        )
    again = enrichments_claim(enrichment_ids=[str(enrichments[0].pk)], claim_token="job-1")
    enrichments_submit_async(enrichments=again, adapter=dropcontact)
    # Within the submitter's lease the intent is left alone.
    assert async_lookups_poll() == 0
    assert len(posts(httpserver)) == 1

    AsyncLookup.objects.update(poll_after=timezone.now() - timedelta(seconds=1))
    assert async_lookups_poll() == 1

    lookup = AsyncLookup.objects.get()
    assert (lookup.status, lookup.error) == (AsyncLookupStatus.LOST, "async_submission_lost")
    enrichment = Enrichment.objects.get()
    # Back to the waterfall: pending, its claim given back, its reservation held.
    assert (enrichment.status, enrichment.started_at, enrichment.claim_token) == (
        Status.PENDING,
        None,
        "",
    )
    assert not AsyncLookupItem.objects.filter(live=True).exists()
    assert_ledger_invariants(tenant.organization)


def test_past_the_deadline_it_is_retried_with_attempts_left_else_failed(
    make_tenant, httpserver: HTTPServer, dropcontact, settings
) -> None:
    settings.ENRICHMENT_ASYNC_MAX_WAIT = 0
    settings.ENRICHMENT_MAX_ATTEMPTS = 3
    answer(httpserver, SUBMIT, "submit_accepted", method="POST")
    answer(httpserver, POLL, "poll_not_ready")
    tenant = make_tenant(credits=10)
    first, last = claimed(tenant, PEOPLE[:2])
    Enrichment.objects.filter(pk=last.pk).update(attempts=3)
    enrichments_submit_async(
        enrichments=[first, Enrichment.objects.get(pk=last.pk)], adapter=dropcontact
    )

    assert async_lookups_poll() == 1

    assert AsyncLookup.objects.get().status == AsyncLookupStatus.EXPIRED
    first.refresh_from_db()
    last.refresh_from_db()
    assert (first.status, first.started_at, first.attempts) == (Status.PENDING, None, 1)
    assert (last.status, last.error, last.data_found) == (Status.FAILED, "async_max_wait", False)
    assert_ledger_invariants(tenant.organization)


def test_an_answer_ready_at_the_deadline_is_still_settled(
    make_tenant, httpserver: HTTPServer, dropcontact, settings
) -> None:
    settings.ENRICHMENT_ASYNC_MAX_WAIT = 0
    answer(httpserver, SUBMIT, "submit_accepted", method="POST")
    answer(httpserver, POLL, "poll_ready")
    tenant = make_tenant(credits=10)
    enrichments_submit_async(enrichments=claimed(tenant, PEOPLE), adapter=dropcontact)

    async_lookups_poll()

    assert AsyncLookup.objects.get().status == AsyncLookupStatus.ANSWERED
    assert {e.status for e in by_name(tenant).values()} == {Status.FINISHED}


def test_an_answer_of_another_length_than_the_submission_is_retried_not_guessed(
    make_tenant, httpserver: HTTPServer, dropcontact
) -> None:
    answer(httpserver, SUBMIT, "submit_accepted", method="POST")
    answer(httpserver, POLL, "poll_ready")
    tenant = make_tenant(credits=10)
    enrichments_submit_async(enrichments=claimed(tenant, PEOPLE[:3]), adapter=dropcontact)

    async_lookups_poll()

    lookup = AsyncLookup.objects.get()
    assert (lookup.status, lookup.error) == (AsyncLookupStatus.ANSWERED, "async_answer_mismatch")
    assert {(e.status, e.started_at) for e in Enrichment.objects.all()} == {(Status.PENDING, None)}
    assert_ledger_invariants(tenant.organization)


@pytest.mark.parametrize("refusal", ["submit_no_credits_403", "submit_unauthorized_401"])
def test_a_provider_failure_hands_the_group_back_to_the_waterfall(
    make_tenant, httpserver: HTTPServer, dropcontact, refusal
) -> None:
    answer(httpserver, SUBMIT, refusal, method="POST")
    tenant = make_tenant(credits=10)
    enrichments = claimed(tenant, PEOPLE[:2])

    passed_on = enrichments_submit_async(enrichments=enrichments, adapter=dropcontact)

    assert passed_on == enrichments
    assert AsyncLookup.objects.get().status == AsyncLookupStatus.REFUSED
    assert not AsyncLookupItem.objects.filter(live=True).exists()
    # Its circuit is open now: the next group is handed back without a request.
    assert enrichments_submit_async(enrichments=enrichments, adapter=dropcontact) == enrichments
    assert len(posts(httpserver)) == 1


def test_a_transient_refusal_retries_later_and_an_invalid_one_fails(
    make_tenant, httpserver: HTTPServer, dropcontact
) -> None:
    answer(httpserver, SUBMIT, "too_many_requests_429", method="POST")
    answer(httpserver, SUBMIT, "submit_validation_422", method="POST")
    tenant = make_tenant(credits=10)
    slowed, refused = claimed(tenant, PEOPLE[:2])

    assert enrichments_submit_async(enrichments=[slowed], adapter=dropcontact) == []
    assert enrichments_submit_async(enrichments=[refused], adapter=dropcontact) == []

    slowed.refresh_from_db()
    refused.refresh_from_db()
    assert (slowed.status, slowed.started_at) == (Status.PENDING, None)
    assert (refused.status, refused.error) == (Status.FAILED, "invalid_request")
    assert_ledger_invariants(tenant.organization)


def test_not_found_before_another_provider_goes_back_to_the_waterfall_which_skips_it(
    make_tenant, httpserver: HTTPServer, dropcontact, settings
) -> None:
    settings.ENRICHMENT_PROVIDERS = {"emails": ["dropcontact", "hunter"], "phones": ["sandbox"]}
    answer(httpserver, SUBMIT, "submit_accepted", method="POST")
    answer(httpserver, POLL, "poll_ready")
    tenant = make_tenant(credits=10)
    enrichments = claimed(tenant, PEOPLE)
    enrichments_submit_async(enrichments=enrichments, adapter=dropcontact)

    async_lookups_poll()

    settled = by_name(tenant)
    nobody = settled.pop("Nobody")
    assert (nobody.status, nobody.started_at, nobody.provider) == (Status.PENDING, None, "")
    assert {e.status for e in settled.values()} == {Status.FINISHED}
    assert async_providers_not_found(enrichment_ids=[e.pk for e in enrichments]) == {
        nobody.pk: {"dropcontact"}
    }
    assert_ledger_invariants(tenant.organization)


def test_the_requeue_service_leaves_a_live_submission_alone_until_its_deadline(
    make_tenant, httpserver: HTTPServer, dropcontact
) -> None:
    answer(httpserver, SUBMIT, "submit_accepted", method="POST")
    tenant = make_tenant(credits=10)
    enrichments = claimed(tenant, PEOPLE[:1])
    enrichments_submit_async(enrichments=enrichments, adapter=dropcontact)
    long_ago = timezone.now() - timedelta(hours=2)
    Enrichment.objects.update(queued_at=long_ago, started_at=long_ago)

    def requeue() -> list:
        return enrichments_requeue_timed_out(older_than=900, max_attempts=5).requeued

    assert requeue() == []
    AsyncLookup.objects.update(deadline=timezone.now() - timedelta(seconds=1))
    assert requeue() == [enrichments[0].pk]


def test_submitting_a_group_costs_the_same_statements_whatever_its_size(
    make_tenant, httpserver: HTTPServer, dropcontact, django_assert_num_queries
) -> None:
    httpserver.expect_request(SUBMIT, method="POST").respond_with_json(
        fixture("dropcontact", "submit_accepted")["body"]
    )
    tenant = make_tenant(credits=100)
    people = [{"first_name": f"P{i}", "last_name": "X", "company_name": "Acme"} for i in range(40)]
    small, large = claimed(tenant, people[:2], "job-1"), claimed(tenant, people[2:], "job-2")

    with django_assert_num_queries(8) as small_queries:
        enrichments_submit_async(enrichments=small, adapter=dropcontact)
    with django_assert_num_queries(len(small_queries)):
        enrichments_submit_async(enrichments=large, adapter=dropcontact)


@pytest.mark.django_db(transaction=True)
def test_two_submitters_of_the_same_enrichments_at_once_send_one_request(
    make_tenant, httpserver: HTTPServer, dropcontact
) -> None:
    httpserver.expect_request(SUBMIT, method="POST").respond_with_json(
        fixture("dropcontact", "submit_accepted")["body"]
    )
    tenant = make_tenant(credits=10)
    enrichments = claimed(tenant, PEOPLE)

    results = run_concurrently(
        [lambda: enrichments_submit_async(enrichments=enrichments, adapter=dropcontact)] * 2
    )

    assert results == [[], []]
    assert len(posts(httpserver)) == 1
    assert AsyncLookup.objects.count() == 1
    assert AsyncLookupItem.objects.filter(live=True).count() == len(PEOPLE)


# --- The sweep in a real worker, sent as beat sends it ------------------------------------------


@pytest.fixture
def sandbox_waterfall(settings) -> None:
    """The worker's waterfall stays the sandbox: an enrichment retried after a deadline goes back
    to it, while the sweep still finds Dropcontact (configured by its environment) by name."""
    settings.ENRICHMENT_PROVIDERS = {"emails": [SANDBOX], "phones": [SANDBOX]}


def sweep_in_worker() -> None:
    app.send_task(POLL_TASK)


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the sweep did not run"
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_worker_sweep_polls_until_ready_and_charges_once(
    make_tenant, httpserver: HTTPServer, dropcontact, sandbox_waterfall, enrichment_queue
) -> None:
    answer(httpserver, SUBMIT, "submit_accepted", method="POST")
    for name in ("poll_not_ready", "poll_not_ready", "poll_ready"):
        answer(httpserver, POLL, name)
    tenant = make_tenant(credits=10)
    enrichments = claimed(tenant, PEOPLE, token="job-1")
    enrichment_queue()  # the request's job: this test plays it
    enrichments_submit_async(enrichments=enrichments, adapter=dropcontact)
    # The job's worker died and the broker redelivered it.
    redelivered = enrichments_claim(
        enrichment_ids=[str(e.pk) for e in enrichments], claim_token="job-1"
    )
    enrichments_submit_async(enrichments=redelivered, adapter=dropcontact)

    with celery_worker(pool="threads", concurrency=2):
        for polls in (1, 2):
            sweep_in_worker()
            wait_for(lambda polls=polls: AsyncLookup.objects.get().polls == polls)
        sweep_in_worker()
        wait_until_settled(tenant.organization)
        # One more sweep finds nothing to poll.
        sweep_in_worker()
        time.sleep(0.5)

    assert len(posts(httpserver)) == 1
    assert [request.method for request, _ in httpserver.log].count("GET") == 3
    settled = by_name(tenant)
    assert {name: e.credits_charged for name, e in settled.items()} == {
        "Denis": 1,
        "Ana": 1,
        "Nobody": 0,
        "linkedin": 1,
    }
    assert CreditTransaction.objects.filter(kind="charge").count() == 3
    assert_ledger_invariants(tenant.organization)


@pytest.mark.django_db(transaction=True)
def test_worker_sweep_recovers_a_dead_pollers_lease_and_retries_past_the_deadline(
    make_tenant,
    httpserver: HTTPServer,
    dropcontact,
    sandbox_waterfall,
    fast_providers,
    enrichment_queue,
) -> None:
    answer(httpserver, SUBMIT, "submit_accepted", method="POST")
    answer(httpserver, POLL, "poll_not_ready")
    tenant = make_tenant(credits=10)
    enrichments = claimed(tenant, PEOPLE[:2])
    enrichment_queue()  # the request's job: this test plays it
    enrichments_submit_async(enrichments=enrichments, adapter=dropcontact)
    AsyncLookup.objects.update(deadline=timezone.now())
    # A poller claimed the submission and died: its lease holds it.
    _due_lookups_claim()

    with celery_worker(pool="threads", concurrency=2):
        sweep_in_worker()
        time.sleep(0.5)
        assert AsyncLookup.objects.get().status == AsyncLookupStatus.SUBMITTED
        AsyncLookup.objects.update(poll_after=timezone.now())  # the lease ran out
        sweep_in_worker()
        # Polled a last time, still not ready: a transient failure, back to the waterfall,
        # which settles them on its next attempt.
        settled = wait_until_settled(tenant.organization)

    assert AsyncLookup.objects.get().status == AsyncLookupStatus.EXPIRED
    assert [request.method for request, _ in httpserver.log] == ["POST", "GET"]
    assert {(e.status, e.attempts) for e in settled.values()} == {(Status.FINISHED, 2)}
    assert_ledger_invariants(tenant.organization)


@pytest.mark.django_db(transaction=True)
def test_a_batch_reaches_dropcontact_through_the_worker_in_one_submission_and_settles(
    make_tenant, httpserver: HTTPServer, dropcontact, enrichment_queue
) -> None:
    answer(httpserver, SUBMIT, "submit_accepted", method="POST")
    for name in ("poll_not_ready", "poll_ready"):
        answer(httpserver, POLL, name)
    tenant = make_tenant(credits=10)
    people = [PersonFactory(organization=tenant.organization, **person) for person in PEOPLE]

    with celery_worker(pool="threads", concurrency=2):
        request_enrichments(tenant, people)
        wait_for(lambda: AsyncLookup.objects.filter(status=AsyncLookupStatus.SUBMITTED).exists())
        sweep_in_worker()
        wait_for(lambda: AsyncLookup.objects.get().polls == 1)
        sweep_in_worker()
        wait_until_settled(tenant.organization)

    [submitted] = posts(httpserver)
    assert len(submitted["data"]) == len(PEOPLE)
    settled = by_name(tenant)
    assert {name: e.credits_charged for name, e in settled.items()} == {
        "Denis": 1,
        "Ana": 1,
        "Nobody": 0,
        "linkedin": 1,
    }
    assert {e.provider for e in settled.values() if e.data_found} == {"dropcontact"}
    assert_ledger_invariants(tenant.organization)
