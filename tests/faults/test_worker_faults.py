"""Real workers under faults: killed, handed every job twice, cut off from the broker and
from PostgreSQL. Every enrichment still ends in a final state, nothing is charged twice, and the
ledger checks out."""

import time
from collections.abc import Callable

import pytest
from django.db import connection
from pytest_django import Settings

from enrichment.models import Enrichment, Status
from enrichment.queueing import enqueue_enrichments
from tests.conftest import Tenant
from tests.faults.conftest import (
    ON_RABBITMQ,
    PrivateBroker,
    RequeueService,
    StartWorker,
    add_persons,
    assert_settled_and_charged_once,
    double_charges,
    jobs_for,
    poll_until,
    report,
    request_enrichments,
    wait_for_work_in_flight,
    wait_until,
    wait_until_settled,
)

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

ENRICHMENTS = 300
# Every lookup takes this long, so a few hundred enrichments keep the workers busy for seconds.
LATENCY = {"ENRICHMENT_SANDBOX_LATENCY_MS": 200}
# Faults injected per scenario, each into work in flight.
FAULT_ROUNDS = 3


def test_sigkilled_workers_lose_no_work_and_charge_nothing_twice(
    make_tenant: Callable[..., Tenant], start_worker: StartWorker, settings: Settings
) -> None:
    worker = start_worker(**LATENCY)
    tenant = make_tenant(credits=10_000)
    request_enrichments(tenant, add_persons(tenant, ENRICHMENTS))

    for _ in range(FAULT_ROUNDS):
        wait_for_work_in_flight(tenant.organization)
        worker.kill()
        worker = start_worker(**LATENCY)
    settled = wait_until_settled(tenant.organization, timeout=90, requeue=True)

    states = assert_settled_and_charged_once(tenant.organization)
    assert not Enrichment.objects.filter(attempts__gt=settings.ENRICHMENT_MAX_ATTEMPTS).exists()
    report(
        "sigkill",
        jobs=jobs_for(ENRICHMENTS),
        enrichments=ENRICHMENTS,
        faults=f"{FAULT_ROUNDS} SIGKILLs of the worker's process group",
        requeued=settled.requeued,
        timed_out=settled.timed_out,
        final_states=states,
        double_charges=double_charges(),
        settled_after_last_kill=f"{settled.seconds:.1f}s",
    )


@pytest.mark.skipif(
    not ON_RABBITMQ,
    reason="Redis hands a dead worker's jobs out again only after its visibility timeout (an "
    "hour); the re-queue service recovers them sooner, as the SIGKILL test shows",
)
def test_rabbitmq_redelivers_a_killed_workers_jobs_without_the_requeue_service(
    make_tenant: Callable[..., Tenant], start_worker: StartWorker
) -> None:
    worker = start_worker(**LATENCY)
    tenant = make_tenant(credits=10_000)
    request_enrichments(tenant, add_persons(tenant, ENRICHMENTS))

    wait_for_work_in_flight(tenant.organization)
    worker.kill()  # its connection closes with it: RabbitMQ re-queues what it held
    start_worker(**LATENCY)
    # No re-queue service: only the broker can bring the killed worker's jobs back.
    settled = wait_until_settled(tenant.organization, timeout=60)

    states = assert_settled_and_charged_once(tenant.organization)
    assert states == {Status.FINISHED: ENRICHMENTS}
    report(
        "RabbitMQ redelivery",
        jobs=jobs_for(ENRICHMENTS),
        enrichments=ENRICHMENTS,
        faults="1 SIGKILL of the worker's process group, no re-queue service",
        final_states=states,
        double_charges=double_charges(),
        settled_after_kill=f"{settled.seconds:.1f}s",
    )


def test_every_job_delivered_twice_is_done_once(
    make_tenant: Callable[..., Tenant], start_worker: StartWorker, settings: Settings
) -> None:
    start_worker(**LATENCY)
    tenant = make_tenant(credits=10_000)
    persons = add_persons(tenant, ENRICHMENTS)
    chunk = settings.ENRICHMENT_TASK_CHUNK_SIZE
    for start in range(0, ENRICHMENTS, chunk):
        # The copy is queued right behind its job, so two worker processes run them side by side.
        enqueue_enrichments(request_enrichments(tenant, persons[start : start + chunk]))
    settled = wait_until_settled(tenant.organization)

    states = assert_settled_and_charged_once(tenant.organization)
    # A copy skips what the other copy holds: no enrichment was looked up twice.
    assert set(Enrichment.objects.values_list("attempts", flat=True)) == {1}
    report(
        "duplicate delivery",
        jobs=2 * jobs_for(ENRICHMENTS),
        enrichments=ENRICHMENTS,
        faults=f"{jobs_for(ENRICHMENTS)} jobs published twice",
        final_states=states,
        double_charges=double_charges(),
        settled_in=f"{settled.seconds:.1f}s",
    )


def test_worker_resumes_by_itself_after_the_broker_restarts(
    make_tenant: Callable[..., Tenant],
    start_worker: StartWorker,
    private_broker: PrivateBroker,
) -> None:
    worker = start_worker(**LATENCY)
    tenant = make_tenant(credits=10_000)
    persons = add_persons(tenant, ENRICHMENTS + 5)
    request_enrichments(tenant, persons[:ENRICHMENTS])
    wait_for_work_in_flight(tenant.organization)

    private_broker.stop()  # a crash: what it held only in memory is gone with it
    time.sleep(2)
    private_broker.start()
    # Fresh work published once the broker is back: done only if the same worker consumes again.
    probe = request_enrichments(tenant, persons[ENRICHMENTS:])
    recovery = wait_until(
        lambda: not Enrichment.objects.filter(pk__in=probe, status=Status.PENDING).exists(),
        timeout=60,
        what=f"the worker to consume again after the {private_broker.name} restart",
    )
    settled = wait_until_settled(tenant.organization, timeout=90, requeue=True)

    assert worker.alive
    states = assert_settled_and_charged_once(tenant.organization)
    report(
        f"{private_broker.name} restart",
        jobs=jobs_for(ENRICHMENTS) + 1,
        enrichments=ENRICHMENTS + len(probe),
        faults=f"1 {private_broker.name} crash (2 s down, {private_broker.crash}) and restart",
        requeued=settled.requeued,
        timed_out=settled.timed_out,
        final_states=states,
        double_charges=double_charges(),
        recovery_after_broker_restart=f"{recovery:.1f}s",
        all_settled_after=f"{recovery + settled.seconds:.1f}s",
    )


def terminate_other_backends() -> int:
    """Cuts every other connection to the test database: the workers' connections die mid-query."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_worker_survives_its_database_connections_being_killed(
    make_tenant: Callable[..., Tenant], start_worker: StartWorker
) -> None:
    worker = start_worker(**LATENCY)
    tenant = make_tenant(credits=10_000)
    request_enrichments(tenant, add_persons(tenant, ENRICHMENTS))

    terminated = []
    for _ in range(FAULT_ROUNDS):
        wait_for_work_in_flight(tenant.organization)
        terminated.append(terminate_other_backends())
    settled = wait_until_settled(tenant.organization, timeout=90, requeue=True)

    assert worker.alive
    states = assert_settled_and_charged_once(tenant.organization)
    report(
        "database connections killed",
        jobs=jobs_for(ENRICHMENTS),
        enrichments=ENRICHMENTS,
        faults=f"{FAULT_ROUNDS} rounds of pg_terminate_backend, {sum(terminated)} connections cut",
        requeued=settled.requeued,
        timed_out=settled.timed_out,
        final_states=states,
        double_charges=double_charges(),
        settled_after_last_cut=f"{settled.seconds:.1f}s",
    )


def test_a_job_that_kills_its_worker_at_every_attempt_ends_within_its_attempts(
    make_tenant: Callable[..., Tenant], start_worker: StartWorker, settings: Settings
) -> None:
    # Jobs run on threads, so a poison job (out of memory every time) takes its whole worker
    # process down; a supervisor starts it again. A lookup long enough to kill the worker in the
    # middle of every attempt; two attempts keep it short.
    max_attempts = settings.ENRICHMENT_MAX_ATTEMPTS = 2
    env = {"ENRICHMENT_SANDBOX_LATENCY_MS": 1000, "ENRICHMENT_MAX_ATTEMPTS": max_attempts}
    worker = start_worker(**env)
    tenant = make_tenant(credits=10)
    [enrichment_id] = request_enrichments(tenant, add_persons(tenant, 1))
    enrichment = Enrichment.objects.filter(pk=enrichment_id)
    requeue = RequeueService()

    # Kills the worker at each claim until no claim follows; one kill more than the attempts
    # allow is enough to tell. RabbitMQ hands the job to the new worker at once; on Redis the
    # re-queue service does, once the claim's lease has run out.
    kills = 0
    while kills <= max_attempts and poll_until(
        lambda killed=kills: requeue.run_due() or enrichment.get().attempts > killed, timeout=30
    ):
        worker.kill()
        worker = start_worker(**env)
        kills += 1
    assert enrichment.get().attempts <= max_attempts
    settled = wait_until_settled(tenant.organization, requeue=True)

    assert worker.alive
    assert (enrichment.get().status, enrichment.get().attempts) == (Status.TIMEOUT, max_attempts)
    states = assert_settled_and_charged_once(tenant.organization)
    report(
        "worker killed at every attempt",
        jobs=1,
        faults=f"{kills} SIGKILLs of the worker",
        final_states=states,
        double_charges=double_charges(),
        settled_after_last_kill=f"{settled.seconds:.1f}s",
    )
