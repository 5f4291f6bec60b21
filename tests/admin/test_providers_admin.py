"""The providers page (each provider's last 24 hours and its circuit, in a fixed number of
queries), the read-only call log, and each enrichment's calls on its page; keys never shown."""

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_httpserver import HTTPServer

from providers import registry
from providers.base import ProviderError, Subject
from providers.calls import provider_calls_flush, recorder
from providers.circuit import HALF_OPEN, OPEN, Circuit
from providers.models import ProviderCall
from providers.services import provider_lookup
from tests.admin.conftest import request_enrichments
from tests.conftest import Tenant

OVERVIEW = "/admin/providers/providercall/overview/"
CHANGELIST = "/admin/providers/providercall/"
ALL_BUILTINS = list(registry.BUILTIN)
Outcome = ProviderCall.Outcome
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_circuits() -> Iterator[None]:
    """Circuits live in Redis (this suite's db): none carry over between tests."""
    caches["providers"].clear()
    registry.adapter.cache_clear()
    recorder._buffer.clear()
    yield
    caches["providers"].clear()
    registry.adapter.cache_clear()


def log_calls(
    provider: str, *calls: tuple[str, int], ago: timedelta = timedelta(minutes=5), **extra
) -> None:
    """Records (outcome, duration_ms) calls of `provider` made `ago`, through the buffered log."""
    at = timezone.now() - ago
    for outcome, duration_ms in calls:
        recorder.record(provider=provider, outcome=outcome, at=at, duration_ms=duration_ms, **extra)
    provider_calls_flush()


def row_of(response, provider: str):
    [row] = [row for row in response.context["rows"] if row["stats"].provider == provider]
    return row["stats"]


def test_page_shows_requests_found_rate_errors_latency_error_and_quota_of_the_last_day(
    admin_client: Client, settings
) -> None:
    settings.ENRICHMENT_PROVIDERS = {"emails": ["pdl", "hunter"], "phones": ["pdl"]}
    # Twelve calls in the window, 10, 10, 20, 20, 30, 40, ..., 100 ms: interpolated, p50 is
    # halfway between 40 and 50, p95 is 45 % of the way from 90 to 100.
    log_calls("pdl", *[(Outcome.FOUND, ms) for ms in (10, 20, 30, 40, 50, 60)])
    log_calls("pdl", (Outcome.NOT_FOUND, 70), (Outcome.NOT_FOUND, 80))
    log_calls("pdl", (Outcome.TRANSIENT, 90), ago=timedelta(hours=2), error="server_error: 500")
    log_calls(
        "pdl", (Outcome.PROVIDER_FAILURE, 100), ago=timedelta(hours=1), error="credits_exhausted"
    )
    log_calls("pdl", (Outcome.FOUND, 10), ago=timedelta(hours=3), credits_remaining=8800)
    log_calls("pdl", (Outcome.FOUND, 20), ago=timedelta(minutes=30), credits_remaining=8799)
    # Outside the window: counted nowhere.
    log_calls(
        "pdl", (Outcome.TRANSIENT, 5000), ago=timedelta(hours=25), error="old", credits_remaining=1
    )

    response = admin_client.get(OVERVIEW)

    assert response.status_code == 200
    pdl = row_of(response, "pdl")
    assert pdl.requests == 12
    assert pdl.outcomes == {
        "found": 8,
        "not_found": 2,
        "transient": 1,
        "provider_failure": 1,
        "invalid_request": 0,
        "pending": 0,
    }
    assert pdl.found_rate == pytest.approx(0.8)
    assert pdl.p50_ms == pytest.approx(45.0) and pdl.p95_ms == pytest.approx(94.5)
    assert pdl.last_error.value == "credits_exhausted"
    assert pdl.credits_remaining.value == 8799
    assert timezone.now() - pdl.credits_remaining.at < timedelta(minutes=31)
    hunter = row_of(response, "hunter")
    assert (hunter.requests, hunter.found_rate, hunter.p50_ms, hunter.last_error) == (
        0,
        None,
        None,
        None,
    )
    text = response.content.decode()
    assert "80.0%" in text and "credits_exhausted" in text and "8799" in text
    assert "not reported" in text  # hunter's quota


def test_configured_providers_come_first_then_any_other_with_calls_in_the_window(
    admin_client: Client, settings
) -> None:
    settings.ENRICHMENT_PROVIDERS = {"emails": ["hunter", "sandbox"], "phones": ["pdl", "hunter"]}
    log_calls("zeta", (Outcome.FOUND, 5))
    log_calls("apollo", (Outcome.NOT_FOUND, 5))
    log_calls("lusha", (Outcome.FOUND, 5), ago=timedelta(days=2))

    response = admin_client.get(OVERVIEW)

    listed = [(row["stats"].provider, row["stats"].configured) for row in response.context["rows"]]
    assert listed == [
        ("hunter", True),
        ("sandbox", True),
        ("pdl", True),
        ("apollo", False),
        ("zeta", False),
    ]
    assert "(not configured)" in response.content.decode()


def test_an_open_circuit_shows_its_reason_and_when_a_trial_is_allowed(
    admin_client: Client, settings
) -> None:
    settings.ENRICHMENT_PROVIDERS = {"emails": ["hunter", "pdl"], "phones": ["pdl"]}
    settings.ENRICHMENT_PROVIDER_COOLDOWN = 300
    Circuit("hunter").record_failure("credits_exhausted")

    response = admin_client.get(OVERVIEW)

    hunter, pdl = row_of(response, "hunter"), row_of(response, "pdl")
    assert (hunter.circuit.state, hunter.circuit.reason) == (OPEN, "credits_exhausted")
    assert hunter.circuit.reopen_at - hunter.circuit.opened_at == 300
    assert pdl.circuit.state == "closed"
    text = response.content.decode()
    assert "open: credits_exhausted" in text and "(in 4\xa0minutes)" in text


def test_a_circuit_past_its_cooldown_shows_half_open(admin_client: Client, settings) -> None:
    settings.ENRICHMENT_PROVIDERS = {"emails": ["hunter"], "phones": []}
    settings.ENRICHMENT_PROVIDER_COOLDOWN = 0
    Circuit("hunter").record_failure("key_rejected")

    response = admin_client.get(OVERVIEW)

    assert row_of(response, "hunter").circuit.state == HALF_OPEN
    assert "half-open: key_rejected" in response.content.decode()


# Measured, the session and the user included: one query for every provider's figures.
OVERVIEW_QUERIES = 3


@pytest.mark.parametrize("providers", [ALL_BUILTINS[:1], ALL_BUILTINS])
def test_the_page_costs_the_same_queries_for_one_and_seven_providers(
    admin_client: Client, settings, django_assert_num_queries: Callable, providers: list[str]
) -> None:
    settings.ENRICHMENT_PROVIDERS = {"emails": providers, "phones": []}
    for name in providers:
        log_calls(
            name, (Outcome.FOUND, 10), (Outcome.TRANSIENT, 20), error="timeout", credits_remaining=5
        )
        Circuit(name).record_failure("credits_exhausted")
    admin_client.get(OVERVIEW)

    with django_assert_num_queries(OVERVIEW_QUERIES):
        response = admin_client.get(OVERVIEW)

    assert [row["stats"].provider for row in response.context["rows"]] == providers
    assert all(row["stats"].requests == 2 for row in response.context["rows"])


def test_a_configured_key_appears_on_no_admin_page(
    admin_client: Client, settings, monkeypatch, httpserver: HTTPServer, tenant: Tenant
) -> None:
    key = "hk-live-" + uuid.uuid4().hex
    monkeypatch.setenv("HUNTER_API_KEY", key)
    monkeypatch.setenv("HUNTER_BASE_URL", httpserver.url_for(""))
    settings.ENRICHMENT_PROVIDERS = {"emails": ["hunter"], "phones": []}
    # The provider echoes the key back in its error, as some do.
    httpserver.expect_request("/v2/email-finder").respond_with_json(
        {"errors": [{"id": "authentication_failed", "details": f"bad key {key}"}]}, status=401
    )
    [enrichment] = request_enrichments(tenant, 1)
    subject = Subject(first_name="Ada", last_name="Lovelace", company_domain="example.com")
    with pytest.raises(ProviderError):
        provider_lookup(
            adapter=registry.adapter("hunter"),
            subject=subject,
            field="emails",
            reference_id=enrichment.pk,
        )
    provider_calls_flush()
    call = ProviderCall.objects.get()
    pages = [
        OVERVIEW,
        CHANGELIST,
        f"{CHANGELIST}?provider=hunter",
        reverse("admin:providers_providercall_change", args=[call.pk]),
        reverse("admin:enrichment_enrichment_change", args=[enrichment.pk]),
    ]

    responses = [admin_client.get(page) for page in pages]

    assert [response.status_code for response in responses] == [200] * len(pages)
    for response in responses:
        assert key not in response.content.decode()
    assert "[redacted]" in call.error and "[redacted]" in responses[0].content.decode()


def test_the_call_log_is_read_only_and_filters_by_provider_and_outcome(
    admin_client: Client, settings
) -> None:
    settings.ENRICHMENT_PROVIDERS = {"emails": ["hunter", "pdl"], "phones": []}
    log_calls("hunter", (Outcome.FOUND, 10), (Outcome.TRANSIENT, 10))
    log_calls("pdl", (Outcome.FOUND, 10))
    call = ProviderCall.objects.get(provider="hunter", outcome="found")

    def listed(query: str) -> list[tuple[str, str]]:
        response = admin_client.get(f"{CHANGELIST}?{query}")
        assert response.status_code == 200
        return sorted((c.provider, c.outcome) for c in response.context["cl"].result_list)

    assert listed("provider=hunter") == [("hunter", "found"), ("hunter", "transient")]
    assert listed("outcome__exact=found") == [("hunter", "found"), ("pdl", "found")]
    assert admin_client.get(reverse("admin:providers_providercall_add")).status_code == 403
    assert (
        admin_client.get(reverse("admin:providers_providercall_delete", args=[call.pk])).status_code
        == 403
    )
    change = admin_client.post(
        reverse("admin:providers_providercall_change", args=[call.pk]), {"outcome": "not_found"}
    )
    assert change.status_code == 403
    call.refresh_from_db()
    assert call.outcome == "found"


def test_the_admin_index_links_to_the_providers_page(admin_client: Client) -> None:
    assert OVERVIEW in admin_client.get(reverse("admin:index")).content.decode()


def test_staff_without_the_view_permission_cannot_see_the_page(staff_client: Client) -> None:
    assert staff_client.get(OVERVIEW).status_code == 403
    assert OVERVIEW not in staff_client.get(reverse("admin:index")).content.decode()


# Measured, the session and the user included; the calls take one of them.
ENRICHMENT_PAGE_QUERIES = 7


def add_calls(reference: uuid.UUID, count: int) -> None:
    log_calls("hunter", *[(Outcome.NOT_FOUND, 10)] * count, reference_id=reference)


def test_an_enrichments_page_lists_its_calls_in_one_query_however_many(
    admin_client: Client, tenant: Tenant, django_assert_num_queries: Callable
) -> None:
    mine, other = request_enrichments(tenant, 2)
    url = reverse("admin:enrichment_enrichment_change", args=[mine.pk])
    log_calls("hunter", (Outcome.TRANSIENT, 10), reference_id=mine.pk, error="server_error: 502")
    log_calls("pdl", (Outcome.FOUND, 20), reference_id=mine.pk, credits_spent=1)
    log_calls("apollo", (Outcome.FOUND, 30), reference_id=other.pk, error="not-mine")
    admin_client.get(url)

    with django_assert_num_queries(ENRICHMENT_PAGE_QUERIES) as few:
        response = admin_client.get(url)
    add_calls(mine.pk, 20)
    with django_assert_num_queries(ENRICHMENT_PAGE_QUERIES) as many:
        admin_client.get(url)

    assert len(few) == len(many)
    assert sum("providers_providercall" in q["sql"] for q in many.captured_queries) == 1
    text = response.content.decode()
    assert "server_error: 502" in text and "pdl" in text and "not-mine" not in text
    assert text.index("server_error: 502") < text.index("<td>pdl</td>")  # oldest first


def test_an_enrichment_without_calls_says_so(admin_client: Client, tenant: Tenant) -> None:
    [enrichment] = request_enrichments(tenant, 1)
    response = admin_client.get(reverse("admin:enrichment_enrichment_change", args=[enrichment.pk]))
    assert response.status_code == 200
    assert "Provider calls" in response.content.decode()
