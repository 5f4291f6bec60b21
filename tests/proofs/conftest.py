from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from enrichment.models import Enrichment, EnrichmentBatch, Status
from enrichment.services import enrichment_complete, enrichment_end_unfound
from persons.models import Person
from providers.base import FoundValue
from tests.conftest import Tenant
from tests.enrichment.conftest import request_enrichments
from tests.factories import ContactPointFactory, PersonFactory

# Cases run by each fuzz test, reported at the end of the run.
FUZZ_CASES = pytest.StashKey[dict[str, int]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts = terminalreporter.config.stash.get(FUZZ_CASES, {})
    if counts:
        terminalreporter.write_line(
            f"API fuzzing: {sum(counts.values())} cases in {len(counts)} fuzz tests"
        )


@dataclass
class Stocked:
    """A tenant with persons, found contact points, ledger entries, an enrichment in each kind
    of state: `pending`, `finished` (data found, charged) and `failed` (released), and the
    batches that requested them."""

    tenant: Tenant
    persons: list[Person]
    pending: Enrichment
    finished: Enrichment
    failed: Enrichment
    batches: list[EnrichmentBatch]

    @property
    def enrichments(self) -> list[Enrichment]:
        return [self.pending, self.finished, self.failed]

    @property
    def ids(self) -> list[str]:
        """The ids of the organization and its objects, as a response would show them."""
        objects = [self.tenant.organization, *self.persons, *self.enrichments, *self.batches]
        return [str(obj.pk) for obj in objects]


@pytest.fixture
def make_stocked_tenant(make_tenant: Callable[..., Tenant]) -> Callable[..., Stocked]:
    def make(credits: int = 1000) -> Stocked:
        tenant = make_tenant(credits=credits)
        persons = PersonFactory.create_batch(3, organization=tenant.organization)
        ContactPointFactory(person=persons[2])
        pending, finished = request_enrichments(tenant, persons[:2])
        [failed] = request_enrichments(tenant, persons[2:], field="phones")
        finished = enrichment_complete(
            enrichment=finished,
            values=[
                FoundValue(
                    value=f"found-{finished.pk}@example.com", type="work", quality="verified"
                )
            ],
            provider="sandbox",
        )
        failed = enrichment_end_unfound(
            enrichment=failed, status=Status.FAILED, reason="invalid_request"
        )
        batches = list(EnrichmentBatch.objects.filter(organization=tenant.organization))
        return Stocked(tenant, persons, pending, finished, failed, batches)

    return make


@pytest.fixture
def wsgi_requests_keep_the_test_transaction() -> Iterator[None]:
    """A WSGI request ends with `close_old_connections`, which would close the connection that
    holds the test's transaction; Django's own test client disconnects it the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
