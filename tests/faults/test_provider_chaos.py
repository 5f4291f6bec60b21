"""A flaky, slow provider behind a real worker: every enrichment ends finished or failed within
its attempts, with its reservation released or charged, and no job lost in retries."""

from collections.abc import Callable

import pytest
from pytest_django import Settings

from enrichment.models import Enrichment, Status
from providers.adapters import sandbox
from tests.conftest import Tenant
from tests.faults.conftest import (
    StartWorker,
    add_persons,
    assert_settled_and_charged_once,
    double_charges,
    jobs_for,
    report,
    request_enrichments,
    wait_until_settled,
)

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

ORDINARY = 200
SLOW = 10


def test_flaky_slow_provider_ends_every_enrichment_within_its_attempts(
    make_tenant: Callable[..., Tenant], start_worker: StartWorker, settings: Settings
) -> None:
    start_worker(ENRICHMENT_SANDBOX_ERROR_RATE=0.3, ENRICHMENT_PROVIDER_TIMEOUT=0.3)
    tenant = make_tenant(credits=10_000)
    slow = add_persons(tenant, SLOW, company_domain=sandbox.TOO_SLOW)
    request_enrichments(tenant, add_persons(tenant, ORDINARY) + slow)
    # No re-queue service here: the retries alone must bring every enrichment to its end.
    settled = wait_until_settled(tenant.organization, timeout=60)

    states = assert_settled_and_charged_once(tenant.organization)  # reserved is back to 0
    assert set(states) <= {Status.FINISHED, Status.FAILED}, states
    enrichments = Enrichment.objects.filter(organization=tenant.organization)
    max_attempts = settings.ENRICHMENT_MAX_ATTEMPTS
    assert {e.attempts for e in enrichments} <= set(range(1, max_attempts + 1))
    for enrichment in enrichments.filter(status=Status.FAILED):
        # Only running out of attempts fails an enrichment of this sandbox.
        assert enrichment.attempts == max_attempts
        assert enrichment.error in {"provider_unavailable", "provider_timeout"}
    slow_outcomes = {(e.status, e.error, e.attempts) for e in enrichments.filter(person__in=slow)}
    assert slow_outcomes == {(Status.FAILED, "provider_timeout", max_attempts)}
    for enrichment in enrichments.filter(status=Status.FINISHED):
        assert enrichment.credits_charged == (enrichment.price if enrichment.data_found else 0)
    retried = enrichments.filter(attempts__gt=1).count()
    assert retried > 0  # the error rate did bite
    report(
        "provider chaos",
        jobs=jobs_for(ORDINARY + SLOW),
        enrichments=ORDINARY + SLOW,
        faults=f"30% transient errors, {SLOW} persons slower than the provider timeout",
        retried_enrichments=retried,
        attempts=sum(e.attempts for e in enrichments),
        final_states=states,
        double_charges=double_charges(),
        settled_in=f"{settled.seconds:.1f}s",
    )
