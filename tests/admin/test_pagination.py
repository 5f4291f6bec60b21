from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from organizations.admin import EstimatedCountPaginator
from tests.admin.conftest import request_enrichments
from tests.conftest import Tenant

CHANGELIST = "admin:enrichment_enrichment_changelist"


def list_queries(client: Client, **params: str) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(CHANGELIST), params)
    return response.context["cl"].result_count, [query["sql"] for query in queries]


def counts_rows(sql: list[str]) -> bool:
    return any("COUNT(" in statement.upper() for statement in sql)


@pytest.fixture
def analyzed(make_tenant: Callable[..., Tenant]) -> Tenant:
    """30 enrichments, and statistics that know of them (ANALYZE counts this transaction's rows)."""
    tenant = make_tenant(credits=100)
    request_enrichments(tenant, 30)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE enrichment_enrichment")
    return tenant


def test_unfiltered_large_list_is_counted_from_table_statistics_without_a_scan(
    admin_client: Client, analyzed: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 10)
    request_enrichments(analyzed, 5)  # not in the statistics yet

    count, sql = list_queries(admin_client)

    assert count == 30
    assert any("reltuples" in statement for statement in sql)
    assert not counts_rows(sql)


def test_filtered_list_gets_an_exact_count(
    admin_client: Client, analyzed: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 10)

    count, sql = list_queries(admin_client, status__exact="pending")

    assert count == 30
    assert counts_rows(sql)
    assert not any("reltuples" in statement for statement in sql)


def test_small_table_gets_an_exact_count(admin_client: Client, analyzed: Tenant) -> None:
    request_enrichments(analyzed, 5)

    count, sql = list_queries(admin_client)

    assert count == 35
    assert counts_rows(sql)
