"""The suite: fresh backends, then sections a-f, each figure paired run by run with a baseline
measured in the same run. Sizes can be lowered for a quick look (BENCH_RUNS=1); BENCH_SECTIONS
(e.g. `e`) runs some sections only (c needs b)."""

import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client

from bench import fixtures
from bench.drain import Drain, deliveries_drained, drain_enrichments, drain_noop
from bench.environment import RESULTS
from bench.fixtures import Tenant, batch_id, block_of, enrichment_id, person_id
from bench.http_load import BATCH_PATH, batch_body, post_concurrently
from bench.processes import (
    celery_worker,
    fake_hunter_process,
    free_port,
    gunicorn,
    local_receiver,
)
from bench.receiver import ReceiverClient
from bench.report import Report, Target, machine
from bench.sql import (
    Statement,
    ids_returned_in_pgbench,
    pgbench_run,
    pgbench_script,
    statements_captured,
)
from credits.models import CreditTransaction
from enrichment.models import Enrichment, Status
from enrichment.selectors import subject_of
from enrichment.services import Settlement, enrichments_claim, enrichments_settle
from enrichment.waterfall import waterfall_lookup
from webhooks.events import ENRICHMENT_BATCH_COMPLETED, ENRICHMENT_COMPLETED, EVENT_TYPES
from webhooks.services import webhook_endpoint_create

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
SECTIONS = os.environ.get("BENCH_SECTIONS", "abcdef")
BATCH_SIZE = 100
CLIENT_LEVELS = (1, 4, 16)
# Divisible by every client level, so each level posts the same batches.
BATCHES_PER_RUN = 96
GUNICORN_WORKERS = 4
DRAIN_SIZE = 2000
# Section b's drains: long enough that one 1,000 ms answer is a small part of them. A drain of
# 2,000 lasts ~2 s at 0 ms here, less than one 1,000 ms latency plus the claims made before any
# answer can return, so its ratio measured the drain's start and end rather than latency hiding.
LATENCY_DRAIN_SIZE = 10_000
DRAIN_ORGANIZATIONS = 20
SLOW_SANDBOX_MS = 200
# Section b's slow providers: a fast API, and one answering in a second as real ones often do.
SLOW_LATENCIES_MS = (SLOW_SANDBOX_MS, 1000)
# Worker processes, as the README deploys them: two per core, each running jobs on threads
# (BENCH_WORKER_PROCESSES measures another layout, e.g. 1 with CELERY_WORKER_POOL=prefork).
WORKER_PROCESSES = int(os.environ.get("BENCH_WORKER_PROCESSES", 2 * (os.cpu_count() or 1)))
WARM_UP_TASKS = 200
# pgbench's settlements in all, shared by its clients (as many as the workers' job threads).
SETTLEMENTS = 480
# pgbench's settlement clients number their blocks from here, clear of the batch runs' blocks.
SETTLEMENT_FIRST_BATCH = 500
# Clients numbered from here own the blocks of the captured requests, clear of pgbench's clients.
CAPTURE_CLIENT = 900
WEBHOOK_DRAIN_SIZE = 1000
# Section e's workers, as docker-compose.yml's `worker` and `webhook-worker` run them.
ENRICHMENT_WORKER_OPTIONS = (
    "-Q",
    f"{settings.ENRICHMENT_QUEUE},{settings.CELERY_TASK_DEFAULT_QUEUE}",
)
WEBHOOK_WORKER_OPTIONS = ("-Q", settings.WEBHOOK_QUEUE, "-P", "threads", "-c", "1")
WEBHOOK_WORKER_NICE = 19

# Section f: the fake Hunter's limit and the service's (HUNTER_RATE_LIMIT), in requests/s; at 0 ms
# both are raised out of the way, so the drain shows the adapter layer's own cost.
PROVIDER_LIMIT = 200
UNLIMITED = 100_000
PROVIDER_KEY = "bench-key"

TARGETS = [
    Target("batch POST, 100 new persons, 4 clients vs SQL baseline", "a.new.4.rate", 0.5),
    Target("drain at 0 ms vs no-op drain, 1 organization", "b.0ms.1.rate", 0.5),
    Target("drain at 0 ms vs no-op drain, 20 organizations", "b.0ms.20.rate", 0.5),
    *(
        Target(
            f"drain at {latency} ms vs drain at 0 ms, {_orgs}",
            f"b.{latency}ms.{organizations}.rate",
            0.8,
            every_run=0.7,
        )
        for latency in SLOW_LATENCIES_MS
        for organizations, _orgs in ((1, "1 organization"), (20, "20 organizations"))
    ),
    Target("0 ms drain with a webhook subscriber vs without", "e.0ms.subscribed.rate", 0.9),
    Target("200 ms drain with a webhook subscriber vs without", "e.200ms.subscribed.rate", 0.9),
    Target("HTTP drain at 200 ms vs the provider's limit", "f.200ms.rate", 0.9),
    Target("refusals by the provider per request, 200 ms", "f.200ms.refused", 0.005, at_most=True),
    Target("HTTP drain at 0 ms vs sandbox drain at 0 ms", "f.0ms.rate", 0.7),
    *(
        Target(
            f"HTTP drain at {latency} ms vs HTTP drain at 0 ms, no limit",
            f"f.{latency}ms.unlimited.rate",
            0.8,
            every_run=0.7,
        )
        for latency in SLOW_LATENCIES_MS
    ),
    Target("statements, 100 new persons vs 1", "d.new", 1.0, exact=True),
    Target("statements, 100 reused persons vs 1", "d.reused", 1.0, exact=True),
]


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main() -> None:
    progress("migrating the fresh bench database")
    call_command("migrate", verbosity=0)
    report = Report(
        {
            "machine": machine(),
            "runs": RUNS,
            "gunicorn_workers": GUNICORN_WORKERS,
            "worker_processes": WORKER_PROCESSES,
            "worker_pool": settings.CELERY_WORKER_POOL,
            "worker_concurrency": settings.CELERY_WORKER_CONCURRENCY,
            "provider_concurrency": settings.ENRICHMENT_PROVIDER_CONCURRENCY,
            "task_chunk_size": settings.ENRICHMENT_TASK_CHUNK_SIZE,
            "conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"],
        }
    )
    if "a" in SECTIONS or "d" in SECTIONS:
        scripts = statement_counts(report)
        if "a" in SECTIONS:
            batch_endpoint(report, scripts)
    if "b" in SECTIONS:
        drains = worker_drains(report)
        if "c" in SECTIONS:
            settlement(report, drains)
    if "e" in SECTIONS:
        webhook_drains(report)
    if "f" in SECTIONS:
        adapter_drains(report)
    targets = [target for target in TARGETS if target.key in report.figures]
    print(report.table(targets))
    report.write(targets)
    print(f"\nwritten to {RESULTS / 'latest.json'}")


# --- a and d: the batch endpoint --------------------------------------------------------------


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number > 1)}"


def _persons(block: int, size: int = BATCH_SIZE) -> list[uuid.UUID]:
    return [person_id(block, index) for index in range(size)]


def _client_blocks(clients: int) -> list[list[int]]:
    per_client = BATCHES_PER_RUN // clients
    return [[block_of(c, batch) for batch in range(1, per_client + 1)] for c in range(clients)]


@dataclass(frozen=True)
class BatchScripts:
    tenant: Tenant
    new: str
    reused: str


def statement_counts(report: Report) -> BatchScripts:
    """Section d, in-process: the statements of a new and a reused request for 1 and 100
    persons. The 100-person ones become the pgbench scripts of section a."""
    progress("d. statement counts")
    fixtures.state_reset()
    tenant = fixtures.tenant_create("bench-batch")
    one, hundred = block_of(CAPTURE_CLIENT, 1), block_of(CAPTURE_CLIENT, 2)
    blocks = {block for level in CLIENT_LEVELS for row in _client_blocks(level) for block in row}
    fixtures.persons_create(tenant, [*sorted(blocks), hundred], BATCH_SIZE)
    fixtures.persons_create(tenant, [one], 1)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {tenant.api_key}")
    # The key's last-use bookkeeping is written at most once a minute; keep it out of the counts.
    client.get("/api/v1/operations/credits/balance")

    def post(block: int, size: int) -> tuple[list[Statement], HttpResponse]:
        with statements_captured() as captured:
            response = client.post(
                BATCH_PATH, batch_body(_persons(block, size)), content_type="application/json"
            )
        assert response.status_code == 200, response.content
        return captured, response

    new_one, _ = post(one, 1)
    new_hundred, created = post(hundred, BATCH_SIZE)
    reused_one, _ = post(one, 1)
    reused_hundred, reused = post(hundred, BATCH_SIZE)
    for key, label, many, single in (
        ("d.new", "new persons, 100", new_hundred, new_one),
        ("d.reused", "reused persons, 100", reused_hundred, reused_one),
    ):
        report.record(
            key,
            section="d",
            label=label,
            unit="statements",
            value=len(many),
            baseline=len(single),
            baseline_label="1 person:",
        )
    # pgbench inserts predictable enrichment and batch ids in place of the random ones of the
    # capture; the reused request's batch items point at the enrichments the new one created.
    new_ids = {
        uuid.UUID(item["id"]).hex: enrichment_id(hundred, index).hex
        for index, item in enumerate(created.json())
    }

    def batch_ids(response: HttpResponse, index: int) -> dict[str, str]:
        return {uuid.UUID(response["Enrichment-Batch-Id"]).hex: batch_id(hundred, index).hex}

    return BatchScripts(
        tenant=tenant,
        new=pgbench_script(new_hundred, hundred, new_ids | batch_ids(created, 0)),
        reused=pgbench_script(reused_hundred, hundred, new_ids | batch_ids(reused, 1)),
    )


def batch_endpoint(report: Report, scripts: BatchScripts) -> None:
    """Section a: gunicorn serving the app, then pgbench on the same blocks, run by run."""
    port = free_port()
    with gunicorn(port, GUNICORN_WORKERS):
        # Each gunicorn worker imports some modules on its first requests.
        warm_up = [[batch_body(_persons(block_of(CAPTURE_CLIENT, 2)))] * 8] * GUNICORN_WORKERS
        post_concurrently(port, scripts.tenant.api_key, warm_up)
        for _ in range(RUNS):
            for clients in CLIENT_LEVELS:
                progress(f"a. batch POST, {_count(clients, 'client')}")
                blocks = _client_blocks(clients)
                bodies = [[batch_body(_persons(block)) for block in row] for row in blocks]
                fixtures.state_reset()
                new = post_concurrently(port, scripts.tenant.api_key, bodies)
                reused = post_concurrently(port, scripts.tenant.api_key, bodies)
                fixtures.state_reset()
                per_client = len(blocks[0])
                sql_new = pgbench_run(scripts.new, clients, per_client)
                sql_reused = pgbench_run(scripts.reused, clients, per_client)
                for kind, http, sql in (("new", new, sql_new), ("reused", reused, sql_reused)):
                    for metric, unit, attribute in (
                        ("rate", "batches/s", "per_second"),
                        ("p50", "ms p50", "p50_ms"),
                        ("p99", "ms p99", "p99_ms"),
                    ):
                        report.record(
                            f"a.{kind}.{clients}.{metric}",
                            section="a",
                            label=f"{kind} persons, {_count(clients, 'client')}",
                            unit=unit,
                            value=getattr(http, attribute),
                            baseline=getattr(sql, attribute),
                            baseline_label="pgbench",
                        )


# --- b and c: the worker ----------------------------------------------------------------------


@contextmanager
def _worker(
    sandbox_ms: int,
    options: Sequence[str] = (),
    name: str = "",
    providers: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """The sandbox latency is read when a worker starts: one worker per latency. The no-op tasks
    run on the measured worker itself, so the baseline has exactly its pool and concurrency.
    `providers` is the providers' environment of section f's workers."""
    env = {"ENRICHMENT_SANDBOX_LATENCY_MS": str(sandbox_ms), **(providers or {})}
    with ExitStack() as workers:
        for process in range(WORKER_PROCESSES):
            worker_name = f"{name or f'enrich-{sandbox_ms}ms'}-{process}"
            workers.enter_context(
                celery_worker(worker_name, env, include="bench.noop_tasks", options=options)
            )
        # The first tasks after a start run several times slower; keep them out of the figures.
        drain_noop(WARM_UP_TASKS)
        yield


def worker_drains(report: Report) -> list[Drain]:
    """Section b. Returns the 0 ms drains of one organization, whose settlements section c
    compares with the credit row's capacity."""
    single = fixtures.tenant_create("bench-drain")
    single_requests = _drain_requests(single, CAPTURE_CLIENT + 1, LATENCY_DRAIN_SIZE)
    many_requests = []
    for index in range(DRAIN_ORGANIZATIONS):
        tenant = fixtures.tenant_create(f"bench-drain-{index}")
        many_requests += _drain_requests(
            tenant, CAPTURE_CLIENT + 2 + index, LATENCY_DRAIN_SIZE // DRAIN_ORGANIZATIONS
        )
    workloads = {1: single_requests, DRAIN_ORGANIZATIONS: many_requests}
    noop: list[float] = []
    at_zero: dict[int, list[float]] = {organizations: [] for organizations in workloads}
    settling: list[Drain] = []
    with _worker(0):
        for run in range(RUNS):
            progress("b. worker drains, no-op and 0 ms")
            fixtures.state_reset()
            noop.append(drain_noop(DRAIN_SIZE))
            for organizations, requests in workloads.items():
                fixtures.state_reset()
                drain = drain_enrichments(requests)
                at_zero[organizations].append(drain.per_second)
                if organizations == 1:
                    settling.append(drain)
                report.record(
                    f"b.0ms.{organizations}.rate",
                    section="b",
                    label=f"0 ms sandbox, {_count(organizations, 'org')}",
                    unit="enrich./s",
                    value=drain.per_second,
                    baseline=noop[run],
                    baseline_label="no-op tasks/s",
                )
    for latency in SLOW_LATENCIES_MS:
        with _worker(latency):
            for run in range(RUNS):
                progress(f"b. worker drains, {latency} ms")
                for organizations, requests in workloads.items():
                    fixtures.state_reset()
                    report.record(
                        f"b.{latency}ms.{organizations}.rate",
                        section="b",
                        label=f"{latency} ms sandbox, {_count(organizations, 'org')}",
                        unit="enrich./s",
                        value=drain_enrichments(requests).per_second,
                        baseline=at_zero[organizations][run],
                        baseline_label="0 ms:",
                    )
    return settling


def _drain_requests(tenant: Tenant, client: int, size: int) -> list[tuple[Tenant, list[uuid.UUID]]]:
    """`size` new persons of the tenant, as batch requests of at most 100."""
    blocks = [block_of(client, batch) for batch in range(1, -(-size // BATCH_SIZE) + 1)]
    fixtures.persons_create(tenant, blocks, BATCH_SIZE)
    persons = [person for block in blocks for person in _persons(block)][:size]
    return [(tenant, persons[at : at + BATCH_SIZE]) for at in range(0, size, BATCH_SIZE)]


def settlement(report: Report, drains: Sequence[Drain]) -> None:
    """Section c: the settlement transaction of the 0 ms drain (its median wave size), replayed
    by pgbench on one account row with as many clients as the workers run jobs at once."""
    wave = max(round(statistics.median(drain.rows_per_settlement for drain in drains)), 1)
    clients = WORKER_PROCESSES * settings.CELERY_WORKER_CONCURRENCY
    per_client = max(SETTLEMENTS // clients, 1)
    tenant = fixtures.tenant_create("bench-settle")
    captured_block = block_of(CAPTURE_CLIENT + 100, 1)
    batches = range(SETTLEMENT_FIRST_BATCH, SETTLEMENT_FIRST_BATCH + per_client)
    blocks = [block_of(c, batch) for c in range(clients) for batch in batches]
    fixtures.persons_create(tenant, [captured_block, *blocks], wave)
    fixtures.state_reset()
    fixtures.pending_enrichments_create(tenant, [captured_block], wave)
    claimed = enrichments_claim(
        enrichment_ids=[str(enrichment_id(captured_block, index)) for index in range(wave)],
        claim_token="bench",
    )
    outcomes = []
    for enrichment in claimed:
        lookup = waterfall_lookup(
            subject=subject_of(enrichment.person), field=enrichment.field, reference_id=None
        )
        outcomes.append(
            Settlement(
                enrichment=enrichment,
                status=Status.FINISHED,
                values=lookup.values,
                provider=lookup.provider,
            )
        )
    with statements_captured() as captured:
        enrichments_settle(settlements=outcomes)
    script = ids_returned_in_pgbench(
        pgbench_script(captured, captured_block, {}),
        table=CreditTransaction._meta.db_table,
        reference=Enrichment._meta.get_field("credit_transaction").column,
    )
    for drain in drains:
        progress("c. settlement capacity of one credit row")
        fixtures.state_reset()
        fixtures.pending_enrichments_create(tenant, blocks, wave)
        capacity = pgbench_run(script, clients, per_client, SETTLEMENT_FIRST_BATCH)
        report.record(
            "c.settle",
            section="c",
            label=f"settlements of {wave} rows, 0 ms drain, 1 org",
            unit="settlem./s",
            value=drain.settlements_per_second,
            baseline=capacity.per_second,
            baseline_label=f"pgbench {clients} clients:",
        )


# --- e: webhook deliveries beside the settlement ------------------------------------------------


def webhook_drains(report: Report) -> None:
    """Section e: the drain of 1,000 enrichments of an organization with an endpoint subscribed
    to both event types on a local receiver, beside the same drain of an organization without
    one, run by run in alternating order, at 0 ms and at 200 ms of sandbox latency. The workers
    are deployed as docker-compose.yml recommends: the measured worker consumes the enrichment
    and default queues, a webhook worker the `webhooks` queue at a lower CPU priority; the
    receiver, standing for an external system, runs at the lowest. Also the deliveries' own rate
    from the drain's start, and how long after the last settlement the last one arrived."""
    requests = {
        kind: _drain_requests(
            fixtures.tenant_create(f"bench-webhooks-{kind}"),
            CAPTURE_CLIENT + 200 + offset,
            WEBHOOK_DRAIN_SIZE,
        )
        for offset, kind in enumerate(("plain", "subscribed"))
    }
    webhook_worker = celery_worker(
        "webhooks", {}, options=WEBHOOK_WORKER_OPTIONS, nice=WEBHOOK_WORKER_NICE
    )
    with local_receiver() as receiver, webhook_worker:
        webhook_endpoint_create(
            organization=requests["subscribed"][0][0].organization,
            url=receiver.url,
            events=list(EVENT_TYPES),
        )
        for sandbox_ms in (0, SLOW_SANDBOX_MS):
            with _worker(sandbox_ms, options=ENRICHMENT_WORKER_OPTIONS):
                for run in range(RUNS):
                    progress(f"e. {sandbox_ms} ms drains with and without a webhook subscriber")
                    _webhook_drain_pair(report, requests, receiver, sandbox_ms, run)


def _webhook_drain_pair(
    report: Report,
    requests: dict[str, list[tuple[Tenant, list[uuid.UUID]]]],
    receiver: ReceiverClient,
    sandbox_ms: int,
    run: int,
) -> None:
    drains: dict[str, Drain] = {}
    deliveries = 0.0
    for kind in ("plain", "subscribed") if run % 2 == 0 else ("subscribed", "plain"):
        fixtures.state_reset()
        receiver.reset()
        drains[kind] = drain_enrichments(requests[kind])
        if kind == "subscribed":
            deliveries = deliveries_drained(drains[kind].started)
            received = receiver.received()
            # Every event arrived: one per enrichment, one per batch (one batch per request).
            expected = {
                ENRICHMENT_COMPLETED: WEBHOOK_DRAIN_SIZE,
                ENRICHMENT_BATCH_COMPLETED: len(requests[kind]),
            }
            if received.counts != expected:
                raise RuntimeError(f"The receiver got {received.counts}, not {expected}.")
    subscribed = drains["subscribed"]
    report.record(
        f"e.{sandbox_ms}ms.subscribed.rate",
        section="e",
        label=f"{sandbox_ms} ms sandbox, webhook subscriber",
        unit="enrich./s",
        value=subscribed.per_second,
        baseline=drains["plain"].per_second,
        baseline_label="no subscriber:",
    )
    report.record(
        f"e.{sandbox_ms}ms.deliveries.rate",
        section="e",
        label=f"{sandbox_ms} ms: its deliveries, to the last",
        unit="deliv./s",
        value=deliveries,
        baseline=subscribed.per_second,
        baseline_label="its enrich./s:",
    )
    report.record(
        f"e.{sandbox_ms}ms.lag",
        section="e",
        label=f"{sandbox_ms} ms: last delivery after last settled",
        unit="s",
        value=received.last - subscribed.finished,
        baseline=subscribed.finished - subscribed.started,
        baseline_label="its drain, s:",
    )


# --- f: the HTTP adapter path against a local provider -----------------------------------------


def adapter_drains(report: Report) -> None:
    """Section f: the drain of 2,000 enrichments of one organization through the Hunter adapter
    over HTTP, against a local fake Hunter (bench/fake_provider.py). At 200 ms, with a limit of
    200 requests/s on both sides: enrichments/s against that limit, and the provider's refusals
    per request it received. At 0 ms, limits out of the way: against the sandbox's drain of the
    same enrichments, measured first on the same machine (the adapter layer's own cost). At 200
    and 1,000 ms, limits out of the way: against that HTTP drain at 0 ms (latency hidden)."""
    requests = _drain_requests(
        fixtures.tenant_create("bench-http"), CAPTURE_CLIENT + 300, DRAIN_SIZE
    )
    sandbox: list[float] = []
    with _worker(0):
        for _ in range(RUNS):
            progress("f. sandbox drains, 0 ms")
            fixtures.state_reset()
            sandbox.append(drain_enrichments(requests).per_second)
    http_at_zero: list[float] = []
    unlimited = [(latency, UNLIMITED) for latency in (0, *SLOW_LATENCIES_MS)]
    for latency_ms, limit in (*unlimited, (SLOW_SANDBOX_MS, PROVIDER_LIMIT)):
        with fake_hunter_process(
            latency_ms=latency_ms, limit=limit, api_key=PROVIDER_KEY
        ) as provider:
            hunter = {
                "ENRICHMENT_PROVIDERS": json.dumps({"emails": ["hunter"], "phones": ["sandbox"]}),
                "HUNTER_API_KEY": PROVIDER_KEY,
                "HUNTER_BASE_URL": provider.url,
                "HUNTER_RATE_LIMIT": f"{limit}/second",
            }
            with _worker(0, name=f"hunter-{latency_ms}ms", providers=hunter):
                for run in range(RUNS):
                    progress(f"f. HTTP adapter drains, {latency_ms} ms")
                    fixtures.state_reset()
                    provider.reset()
                    drain = drain_enrichments(requests)
                    counts = provider.counts()
                    # A figure only for a drain the provider answered: not one of failures.
                    failed = Enrichment.objects.filter(status=Status.FAILED).exists()
                    if counts.requests < DRAIN_SIZE or failed:
                        raise RuntimeError("The fake Hunter did not answer the drain; see the log.")
                    if limit == PROVIDER_LIMIT:
                        _record_limited_drain(report, drain, counts.requests, counts.refused)
                    elif latency_ms:
                        report.record(
                            f"f.{latency_ms}ms.unlimited.rate",
                            section="f",
                            label=f"{latency_ms} ms, no limit, over HTTP",
                            unit="enrich./s",
                            value=drain.per_second,
                            baseline=http_at_zero[run],
                            baseline_label="HTTP 0 ms:",
                        )
                    else:
                        http_at_zero.append(drain.per_second)
                        report.record(
                            "f.0ms.rate",
                            section="f",
                            label="0 ms, Hunter adapter over HTTP",
                            unit="enrich./s",
                            value=drain.per_second,
                            baseline=sandbox[run],
                            baseline_label="sandbox 0 ms:",
                        )


def _record_limited_drain(report: Report, drain: Drain, requests: int, refused: int) -> None:
    label = f"{SLOW_SANDBOX_MS} ms, limit {PROVIDER_LIMIT}/s"
    report.record(
        f"f.{SLOW_SANDBOX_MS}ms.rate",
        section="f",
        label=label,
        unit="enrich./s",
        value=drain.per_second,
        baseline=PROVIDER_LIMIT,
        baseline_label="provider limit:",
    )
    report.record(
        f"f.{SLOW_SANDBOX_MS}ms.refused",
        section="f",
        label=f"{label}: refused by the provider",
        unit="requests",
        value=refused,
        baseline=requests,
        baseline_label="requests received:",
    )
