"""The lookup threads of a worker process: many more than PostgreSQL has connections to spare."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from enrichment.services import enrichments_claim
from enrichment.tasks import _lookup
from providers.models import ProviderCall
from tests.enrichment.conftest import request_enrichments
from tests.factories import PersonFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_lookup_thread_that_wrote_the_call_log_keeps_no_database_connection(
    make_tenant, settings
):
    settings.PROVIDER_CALLS_BUFFER_MAX = 1  # the lookup's own call fills the buffer
    tenant = make_tenant(credits=10)
    person = PersonFactory(organization=tenant.organization, company_domain="found.example")
    [enrichment] = request_enrichments(tenant, [person])
    [claimed] = enrichments_claim(enrichment_ids=[str(enrichment.pk)], claim_token="job")

    def lookup_on_a_thread() -> tuple[bool, object]:
        outcome = _lookup(claimed)
        return bool(outcome.values), connection.connection

    with ThreadPoolExecutor(max_workers=1) as pool:
        found, thread_connection = pool.submit(lookup_on_a_thread).result()

    assert found
    assert ProviderCall.objects.filter(reference_id=enrichment.pk).count() == 1
    assert thread_connection is None
