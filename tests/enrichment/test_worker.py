"""The pipeline end to end with a real Celery worker consuming from the broker (not eager mode);
`make test` runs it against Redis and against RabbitMQ."""

import logging
import threading
import time
import uuid
from collections.abc import Sequence

import pytest
from django.db import IntegrityError, connection, transaction

from credits.models import CreditTransaction
from credits.services import Charge, credit_account_lock, credits_charge
from enrichment import tasks
from enrichment.models import Enrichment, Status
from enrichment.queueing import enqueue_enrichments
from enrichment.services import (
    enrichment_complete,
    enrichments_claim,
    enrichments_requeue_timed_out,
)
from enrichment.waterfall import LookupOutcome
from persons.models import ContactPoint
from providers.base import FoundValue
from tests.concurrency import run_concurrently
from tests.enrichment.conftest import (
    assert_ledger_invariants,
    celery_worker,
    request_enrichments,
    wait_until_settled,
)
from tests.factories import PersonFactory

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def test_batch_ends_finished_with_contact_points_and_exact_charges(make_tenant, worker):
    tenant = make_tenant(credits=100)
    people = [
        PersonFactory(organization=tenant.organization, company_domain=domain)
        for domain in ("found.example", "notfound.example")
    ]

    request_enrichments(tenant, people, field="phones")
    settled = wait_until_settled(tenant.organization)

    found, not_found = settled["found.example"], settled["notfound.example"]
    assert (found.status, found.data_found, found.credits_charged) == (Status.FINISHED, True, 10)
    assert found.data and found.provider == "sandbox"
    charge = CreditTransaction.objects.get(pk=found.credit_transaction_id)
    assert (charge.kind, charge.amount, charge.reference_id) == ("charge", -10, found.pk)
    phones = ContactPoint.objects.filter(person=found.person, kind="phone")
    assert [p.value for p in phones] == [value["value"] for value in found.data]
    assert (not_found.status, not_found.data_found, not_found.data) == (Status.FINISHED, False, [])
    assert not_found.credits_charged == 0 and not_found.credit_transaction_id is None
    account = tenant.organization.credit_account
    account.refresh_from_db()
    assert (account.balance, account.reserved) == (90, 0)
    assert_ledger_invariants(tenant.organization)


def test_every_magic_domain_ends_in_its_documented_state(make_tenant, worker, settings):
    tenant = make_tenant(credits=100)
    domains = [
        "found.example",
        "notfound.example",
        "fail.example",
        "invalid.example",
        "slow.example",
    ]
    people = [PersonFactory(organization=tenant.organization, company_domain=d) for d in domains]

    request_enrichments(tenant, people)
    settled = wait_until_settled(tenant.organization)

    outcome = {
        domain: (e.status, e.data_found, e.error, e.attempts, e.credits_charged)
        for domain, e in settled.items()
    }
    max_attempts = settings.ENRICHMENT_MAX_ATTEMPTS
    assert outcome == {
        "found.example": (Status.FINISHED, True, "", 1, 1),
        "notfound.example": (Status.FINISHED, False, "", 1, 0),
        "fail.example": (Status.FAILED, False, "provider_unavailable", max_attempts, 0),
        "invalid.example": (Status.FAILED, False, "provider_rejected_request", 1, 0),
        "slow.example": (Status.FAILED, False, "provider_timeout", max_attempts, 0),
    }
    assert_ledger_invariants(tenant.organization)


def test_duplicate_delivery_of_the_same_job_charges_once(make_tenant, worker, settings):
    settings.ENRICHMENT_SANDBOX_LATENCY_MS = 100
    tenant = make_tenant(credits=100)
    people = PersonFactory.create_batch(
        5, organization=tenant.organization, company_domain="found.example"
    )

    ids = [e.pk for e in request_enrichments(tenant, people)]
    for _ in range(3):  # the same job published again while the first copy runs
        enqueue_enrichments(ids)
    wait_until_settled(tenant.organization)
    time.sleep(0.5)  # let the duplicates run to their end too

    assert CreditTransaction.objects.filter(kind="charge").count() == 5
    assert all(e.credits_charged == 1 for e in Enrichment.objects.all())
    assert_ledger_invariants(tenant.organization)


def test_settling_twice_charges_once_and_the_ledger_refuses_a_second_charge(make_tenant):
    tenant = make_tenant(credits=10)
    [enrichment] = request_enrichments(tenant, [PersonFactory(organization=tenant.organization)])
    found = [FoundValue(value="a@b.example", type="work", quality="verified")]

    first = enrichment_complete(enrichment=enrichment, values=found, provider="sandbox")
    second = enrichment_complete(enrichment=enrichment, values=found, provider="sandbox")

    assert first is not None and second is None
    with pytest.raises(IntegrityError), transaction.atomic():
        account = credit_account_lock(organization_id=tenant.organization.pk)
        account.reserved = 1  # pretend there is a reservation left, to reach the constraint
        charge = Charge(amount=1, operation="enrichment.emails", reference_id=enrichment.pk)
        credits_charge(account=account, charges=[charge])
    assert CreditTransaction.objects.filter(kind="charge").count() == 1
    assert_ledger_invariants(tenant.organization)


def test_a_job_whose_worker_died_is_recovered_by_the_requeue_service(
    make_tenant, fast_providers, enrichment_queue
):
    tenant = make_tenant(credits=10)
    people = PersonFactory.create_batch(
        3, organization=tenant.organization, company_domain="found.example"
    )
    ids = [e.pk for e in request_enrichments(tenant, people)]
    # A worker took the job and died before settling: claimed, never finished, message gone.
    enrichments_claim(enrichment_ids=[str(pk) for pk in ids], claim_token="dead-worker")
    enrichment_queue()
    long_ago = "now() - interval '2 hours'"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE enrichment_enrichment SET queued_at = {long_ago}, started_at = {long_ago}"
        )

    report = enrichments_requeue_timed_out(older_than=900, max_attempts=3)
    assert sorted(report.requeued) == sorted(ids) and report.timed_out == []
    with celery_worker(pool="solo"):
        settled = wait_until_settled(tenant.organization)

    assert {e.status for e in settled.values()} == {Status.FINISHED}
    assert {e.attempts for e in Enrichment.objects.all()} == {2}
    assert_ledger_invariants(tenant.organization)


class _RecordedMessages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_job_stops_at_its_soft_time_limit_and_leaves_its_unanswered_claims_to_the_lease(
    make_tenant, fast_providers, enrichment_queue, settings
):
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0.5
    settings.ENRICHMENT_SANDBOX_LATENCY_MS = 2000  # a lookup outlasting the limit
    tenant = make_tenant(credits=10)
    [person] = PersonFactory.create_batch(
        1, organization=tenant.organization, company_domain="found.example"
    )
    [enrichment] = request_enrichments(tenant, [person])

    # The worker sets up its own logging: the warning is read on the task module's logger.
    warnings = _RecordedMessages()
    logging.getLogger("enrichment.tasks").addHandler(warnings)
    with celery_worker(pool="threads", concurrency=2):
        stopped = "Job stopped at its time limit with 1 lookups unanswered"
        deadline = time.monotonic() + 10
        while not any(message.startswith(stopped) for message in warnings.messages):
            assert time.monotonic() < deadline, "the job did not stop at its time limit"
            time.sleep(0.05)
        # The lookup's late answer is not settled by the job that gave up on it.
        time.sleep(2.5)
    logging.getLogger("enrichment.tasks").removeHandler(warnings)
    enrichment.refresh_from_db()
    assert (enrichment.status, enrichment.attempts) == (Status.PENDING, 1)
    assert enrichment.started_at is not None

    # Once the lease (the hard limit) has run out, the re-queue service takes the claim back.
    settings.ENRICHMENT_SANDBOX_LATENCY_MS = 0
    settings.CELERY_TASK_TIME_LIMIT = 1
    time.sleep(1)
    report = enrichments_requeue_timed_out(older_than=0, max_attempts=3)
    assert report.requeued == [enrichment.pk]
    with celery_worker(pool="solo"):
        settled = wait_until_settled(tenant.organization)
    assert (settled["found.example"].status, settled["found.example"].attempts) == (
        Status.FINISHED,
        2,
    )
    assert_ledger_invariants(tenant.organization)


def _settled_waves(make_tenant, monkeypatch, delays: Sequence[float]) -> list[list[float]]:
    """Runs one job whose lookups answer after `delays` seconds; the delays, grouped by the
    settlement (the finished_at) that ended them."""
    tenant = make_tenant(credits=10)
    people = PersonFactory.create_batch(
        len(delays), organization=tenant.organization, company_domain="found.example"
    )
    enrichments = request_enrichments(tenant, people)
    delay_of = dict(zip([e.pk for e in enrichments], delays, strict=True))
    undelayed = tasks._lookup

    def delayed(enrichment: Enrichment) -> LookupOutcome:
        time.sleep(delay_of[enrichment.pk])
        return undelayed(enrichment)

    monkeypatch.setattr(tasks, "_lookup", delayed)
    with celery_worker(pool="threads", concurrency=1):
        wait_until_settled(tenant.organization)
    waves = {}
    for enrichment in Enrichment.objects.filter(organization=tenant.organization):
        waves.setdefault(enrichment.finished_at, []).append(delay_of[enrichment.pk])
    assert_ledger_invariants(tenant.organization)
    return sorted(sorted(wave) for wave in waves.values())


def test_answers_within_the_wave_window_settle_together_and_a_later_one_on_its_own(
    make_tenant, fast_providers, enrichment_queue, settings, monkeypatch
):
    settings.ENRICHMENT_WAVE_WINDOW = 0.3
    # Three answers within the window of the first, and one well after it.
    waves = _settled_waves(make_tenant, monkeypatch, (0, 0.05, 0.1, 0.8))

    assert waves == [[0, 0.05, 0.1], [0.8]]


@pytest.mark.parametrize(
    ("wave_max", "expected_waves"),
    [(2.0, [[0, 0.2, 0.4, 0.6]]), (0.3, [[0, 0.2], [0.4, 0.6]])],
    ids=["while-answers-keep-coming", "never-past-its-maximum"],
)
def test_a_wave_takes_answers_for_as_long_as_each_window_brings_one(
    make_tenant, fast_providers, enrichment_queue, settings, monkeypatch, wave_max, expected_waves
):
    # Each answer comes within the window of the one before; the last two come after the
    # window of the first, which a wave of one window would have left to another settlement.
    settings.ENRICHMENT_WAVE_WINDOW = 0.35
    settings.ENRICHMENT_WAVE_MAX = wave_max

    waves = _settled_waves(make_tenant, monkeypatch, (0, 0.2, 0.4, 0.6))

    assert waves == expected_waves


def test_cancel_racing_the_worker_either_cancels_uncharged_or_finishes_charged(
    make_tenant, worker, settings
):
    settings.ENRICHMENT_SANDBOX_LATENCY_MS = 20
    tenant = make_tenant(credits=1000)
    people = PersonFactory.create_batch(
        40, organization=tenant.organization, company_domain="found.example"
    )
    enrichments = request_enrichments(tenant, people)
    outcomes = []

    def cancel_all() -> None:
        try:
            for enrichment in enrichments:
                url = f"/api/v1/enrichments/{enrichment.pk}/cancel"
                outcomes.append(tenant.client.post(url).status_code)
        finally:
            connection.close()

    canceller = threading.Thread(target=cancel_all)
    canceller.start()
    canceller.join()
    wait_until_settled(tenant.organization)

    assert set(outcomes) <= {200, 409}
    for enrichment in Enrichment.objects.all():
        if enrichment.status == Status.CANCELLED:
            assert enrichment.credits_charged == 0
        else:
            assert enrichment.status == Status.FINISHED and enrichment.credits_charged == 1
    cancelled = Enrichment.objects.filter(status=Status.CANCELLED).count()
    assert outcomes.count(200) == cancelled
    print(f"cancel race: {cancelled} cancelled, {40 - cancelled} finished first")
    assert_ledger_invariants(tenant.organization)


def test_two_requeue_runs_at_once_never_handle_a_row_twice(make_tenant, enrichment_queue):
    tenant = make_tenant(credits=1000)
    people = PersonFactory.create_batch(60, organization=tenant.organization)
    ids = [e.pk for e in request_enrichments(tenant, people)]
    exhausted = ids[:30]
    Enrichment.objects.filter(pk__in=exhausted).update(attempts=3)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE enrichment_enrichment SET queued_at = now() - interval '1 hour'")
    enrichment_queue()

    def requeue():
        return enrichments_requeue_timed_out(older_than=900, max_attempts=3)

    reports = run_concurrently([requeue, requeue])

    requeued = [pk for report in reports for pk in report.requeued]
    timed_out = [pk for report in reports for pk in report.timed_out]
    assert sorted(requeued) == sorted(ids[30:]) and len(set(requeued)) == 30
    assert sorted(timed_out) == sorted(exhausted)
    assert sorted(pk for job in enrichment_queue() for pk in job) == sorted(
        str(pk) for pk in ids[30:]
    )
    assert Enrichment.objects.filter(status=Status.TIMEOUT).count() == 30
    assert_ledger_invariants(tenant.organization)


def test_unknown_enrichment_ids_in_a_job_are_ignored(make_tenant, worker):
    tenant = make_tenant(credits=10)
    people = PersonFactory.create_batch(
        2, organization=tenant.organization, company_domain="found.example"
    )
    ids = [e.pk for e in request_enrichments(tenant, people)]
    enqueue_enrichments([uuid.uuid4(), *ids])

    settled = wait_until_settled(tenant.organization)

    assert {e.status for e in settled.values()} == {Status.FINISHED}


def test_worker_settlement_completes_the_batch_and_its_counts_follow(make_tenant, worker):
    tenant = make_tenant(credits=100)
    people = [
        PersonFactory(organization=tenant.organization, company_domain=domain)
        for domain in ("found.example", "notfound.example", "invalid.example")
    ]

    response = tenant.client.post(
        "/api/v1/operations/enrichment/batch",
        {"personIds": [str(p.pk) for p in people], "field": "phones"},
        format="json",
    )
    wait_until_settled(tenant.organization)
    batch = tenant.client.get(f"/api/v1/enrichment-batches/{response['Enrichment-Batch-Id']}")

    assert batch.json() | {"createdAt": None, "completedAt": None} == {
        "id": response["Enrichment-Batch-Id"],
        "createdAt": None,
        "field": "phones",
        "total": 3,
        "pending": 0,
        "finished": 2,
        "found": 1,
        "failed": 1,
        "timeout": 0,
        "cancelled": 0,
        "creditsCharged": 10,
        "completedAt": None,
        "enrichmentIds": [item["id"] for item in response.json()],
    }
    assert batch.json()["completedAt"] >= batch.json()["createdAt"]
    assert_ledger_invariants(tenant.organization)
