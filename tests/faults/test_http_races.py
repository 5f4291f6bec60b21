"""Racing clients over real HTTP against gunicorn (four processes): overlapping batches, batches
fighting over a small balance, cancels racing a real worker's completions, and re-queue runs
racing the workers. No duplicate pending enrichment, no over-reservation, never a 5xx."""

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from pytest_django import Settings

from credits.models import CreditAccount
from enrichment.models import Enrichment, Status
from enrichment.services import enrichment_price, enrichments_requeue_timed_out
from providers.adapters import sandbox
from tests.conftest import Tenant
from tests.faults.conftest import (
    PrivateBroker,
    StartWorker,
    add_persons,
    assert_ledger_checks_out,
    assert_settled_and_charged_once,
    double_charges,
    report,
    wait_until_settled,
)

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

BATCH_PATH = "/api/v1/operations/enrichment/batch"
CLIENTS = 16
# A short lookup: the worker completes enrichments while the clients still race it.
QUICK_WORKER = {"ENRICHMENT_SANDBOX_LATENCY_MS": 30}


class Api:
    """A stdlib HTTP client of one tenant, usable from many threads."""

    def __init__(self, base_url: str, tenant: Tenant) -> None:
        self.base_url = base_url
        self.key = tenant.key

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, _parsed(error.read())

    def batch(self, person_ids: Sequence[object], field: str = "emails") -> tuple[int, Any]:
        return self.call(
            "POST", BATCH_PATH, {"personIds": [str(pk) for pk in person_ids], "field": field}
        )

    def cancel(self, enrichment_id: str) -> tuple[int, Any]:
        return self.call("POST", f"/api/v1/enrichments/{enrichment_id}/cancel")


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")  # not our error shape: the assertion shows it


def run_concurrently(calls: Sequence[Callable[[], Any]], threads: int = CLIENTS) -> list[Any]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_overlapping_batches_never_create_two_pending_enrichments_for_a_person(
    make_tenant: Callable[..., Tenant], gunicorn: str
) -> None:
    tenant = make_tenant(credits=10_000)
    api = Api(gunicorn, tenant)
    ids = [person.pk for person in add_persons(tenant, 40)]
    windows = [random.Random(seed).sample(ids, 20) for seed in range(64)]

    responses = run_concurrently([lambda window=window: api.batch(window) for window in windows])

    statuses = Counter(status for status, _ in responses)
    assert set(statuses) <= {200}, statuses
    enrichment_of: dict[str, str] = {}
    for _, body in responses:
        for item in body:
            assert enrichment_of.setdefault(item["entityId"], item["id"]) == item["id"]
    pending = Enrichment.objects.filter(organization=tenant.organization, status=Status.PENDING)
    per_person = Counter(pending.values_list("person_id", flat=True))
    assert set(per_person) == set(ids) and set(per_person.values()) == {1}
    reserved = CreditAccount.objects.get(pk=tenant.organization.pk).reserved
    assert reserved == enrichment_price("emails") * len(ids)
    assert_ledger_checks_out()
    report(
        "overlapping batches over HTTP",
        requests=len(windows),
        clients=CLIENTS,
        statuses=dict(statuses),
        persons=len(ids),
        pending_enrichments=pending.count(),
    )


def test_batches_racing_for_a_small_balance_never_over_reserve(
    make_tenant: Callable[..., Tenant], gunicorn: str
) -> None:
    tenant = make_tenant(credits=95)
    api = Api(gunicorn, tenant)
    price = enrichment_price("phones")
    ids = [person.pk for person in add_persons(tenant, 70)]
    # Thirty batches of two persons and ten of one, all different persons: 70 phones wanted,
    # credits for 9 (at the default price of 10).
    batches = [ids[i : i + 2] for i in range(0, 60, 2)] + [[pk] for pk in ids[60:]]

    responses = run_concurrently(
        [lambda batch=batch: api.batch(batch, field="phones") for batch in batches]
    )

    statuses = Counter(status for status, _ in responses)
    assert set(statuses) <= {200, 402}, statuses
    for status, body in responses:
        if status == 402:
            assert body["error"]["code"] == "INSUFFICIENT_CREDITS"
            assert body["error"]["details"]["required"] > body["error"]["details"]["available"]
    created = sum(len(body) for status, body in responses if status == 200)
    account = CreditAccount.objects.get(pk=tenant.organization.pk)
    assert account.reserved == price * created <= account.balance == 95
    # Used up, not refused wholesale: what is left cannot pay for a batch of two.
    assert account.balance - account.reserved < 2 * price
    assert Enrichment.objects.filter(organization=tenant.organization).count() == created
    assert_ledger_checks_out()
    report(
        "batches against a small balance over HTTP",
        requests=len(batches),
        statuses=dict(statuses),
        enrichments_created=created,
        reserved=f"{account.reserved} of {account.balance}",
    )


def test_cancels_racing_completions_either_cancel_uncharged_or_finish_charged(
    make_tenant: Callable[..., Tenant], gunicorn: str, start_worker: StartWorker
) -> None:
    start_worker(**QUICK_WORKER)
    tenant = make_tenant(credits=10_000)
    api = Api(gunicorn, tenant)
    ids = [person.pk for person in add_persons(tenant, 200, company_domain=sandbox.ALWAYS_FOUND)]

    def batch_then_cancel(batch: list[object]) -> list[tuple[int, Any]]:
        status, body = api.batch(batch)
        assert status == 200, body
        return [api.cancel(item["id"]) for item in random.sample(body, len(body))]

    cancels = [
        outcome
        for outcomes in run_concurrently(
            [lambda i=i: batch_then_cancel(ids[i : i + 25]) for i in range(0, len(ids), 25)]
        )
        for outcome in outcomes
    ]
    wait_until_settled(tenant.organization, timeout=60)

    statuses = Counter(status for status, _ in cancels)
    assert set(statuses) <= {200, 409}, statuses
    for status, body in cancels:
        if status == 409:
            assert body["error"]["code"] == "INVALID_STATE"
            assert body["error"]["details"] == {"status": Status.FINISHED}
    states = assert_settled_and_charged_once(tenant.organization)
    assert states.get(Status.CANCELLED, 0) == statuses[200]
    assert states.get(Status.FINISHED, 0) == statuses[409]
    enrichments = Enrichment.objects.filter(organization=tenant.organization)
    assert not enrichments.filter(status=Status.CANCELLED, credits_charged__gt=0).exists()
    assert not enrichments.filter(status=Status.FINISHED, credits_charged=0).exists()
    report(
        "cancels racing completions over HTTP",
        cancels=len(cancels),
        statuses=dict(statuses),
        final_states=states,
        double_charges=double_charges(),
    )


def test_requeue_runs_racing_workers_never_claim_an_enrichment_twice(
    make_tenant: Callable[..., Tenant], gunicorn: str, start_worker: StartWorker, settings: Settings
) -> None:
    start_worker(**QUICK_WORKER)
    tenant = make_tenant(credits=10_000)
    api = Api(gunicorn, tenant)
    ids = [person.pk for person in add_persons(tenant, 200)]
    settled = threading.Event()
    requeued: list[int] = []

    def requeue_until_settled() -> None:
        # Every pending enrichment queued over a second ago and not held by a live claim is
        # queued again: the workers race duplicates of most of their jobs.
        try:
            while not settled.is_set():
                run = enrichments_requeue_timed_out(
                    older_than=1, max_attempts=settings.ENRICHMENT_MAX_ATTEMPTS
                )
                requeued.append(len(run.requeued))
                time.sleep(0.1)
        finally:
            connection.close()

    requeuers = [threading.Thread(target=requeue_until_settled) for _ in range(3)]
    for requeuer in requeuers:
        requeuer.start()
    try:
        responses = run_concurrently(
            [lambda i=i: api.batch(ids[i : i + 10]) for i in range(0, len(ids), 10)], threads=8
        )
        wait_until_settled(tenant.organization, timeout=60)
    finally:
        settled.set()
        for requeuer in requeuers:
            requeuer.join()

    statuses = Counter(status for status, _ in responses)
    assert set(statuses) <= {200}, statuses
    states = assert_settled_and_charged_once(tenant.organization)
    assert states == {Status.FINISHED: len(ids)}
    enrichments = Enrichment.objects.filter(organization=tenant.organization)
    # A row is claimed once: the re-queue service leaves rows held by a live claim alone.
    assert set(enrichments.values_list("attempts", flat=True)) == {1}
    report(
        "re-queue runs racing workers",
        requests=len(responses),
        statuses=dict(statuses),
        requeue_runs=len(requeued),
        rows_requeued=sum(requeued),
        final_states=states,
        double_charges=double_charges(),
    )


def test_batch_requested_while_the_broker_is_down_is_answered_and_done_once_it_is_back(
    make_tenant: Callable[..., Tenant],
    gunicorn: str,
    start_worker: StartWorker,
    private_broker: PrivateBroker,
) -> None:
    start_worker(**QUICK_WORKER)
    tenant = make_tenant(credits=100)
    api = Api(gunicorn, tenant)
    ids = [person.pk for person in add_persons(tenant, 5, company_domain=sandbox.ALWAYS_FOUND)]

    private_broker.stop()
    status, body = api.batch(ids)
    private_broker.start()

    assert status == 200, body
    assert [item["status"] for item in body] == [Status.PENDING] * len(ids)
    # Its jobs were never published: the re-queue service sends them once the broker is back.
    settled = wait_until_settled(tenant.organization, requeue=True)
    states = assert_settled_and_charged_once(tenant.organization)
    assert states == {Status.FINISHED: len(ids)}
    report(
        "batch requested while the broker is down",
        status=status,
        requeued=settled.requeued,
        final_states=states,
        double_charges=double_charges(),
        settled_after_broker_back=f"{settled.seconds:.1f}s",
    )
