"""The bench's fake Hunter: the Hunter adapter reads its answers, its latency does not serialize
requests, and it enforces and counts its own limit."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.core.cache import caches

from bench.fake_provider import Counts, FakeHunter, FakeHunterClient, fake_hunter
from bench.processes import fake_hunter_process
from providers.adapters.hunter import HunterAdapter
from providers.base import ProviderConfig, Subject, TransientProviderError

KEY = "bench-key"


@pytest.fixture(autouse=True)
def no_pause_left() -> Iterator[None]:
    # The adapter reads the providers cache (this suite's Redis db) for a "slow down" pause.
    caches["providers"].clear()
    yield


def _adapter(provider: FakeHunter | FakeHunterClient) -> HunterAdapter:
    config = ProviderConfig(
        name="hunter", api_key=KEY, base_url=provider.url, timeout=10.0, rate_limit=""
    )
    return HunterAdapter(config)


def _subject(index: int) -> Subject:
    return Subject(first_name=f"Ada{index}", last_name="Lovelace", company_domain="example.com")


def _get(provider: FakeHunter, client: httpx.Client, **params: str) -> httpx.Response:
    return client.get(f"{provider.url}/v2/email-finder", params=params)


def test_the_hunter_adapter_reads_found_and_not_found_for_a_stable_share_of_persons() -> None:
    with fake_hunter(latency_ms=0, limit=1000, api_key=KEY) as provider:
        adapter = _adapter(provider)
        answers = [adapter.lookup(_subject(index), "emails") for index in range(100)]
        again = [adapter.lookup(_subject(index), "emails") for index in range(100)]
        assert provider.counts() == Counts(requests=200, refused=0)
    assert [a.values for a in answers] == [a.values for a in again]
    found = [answer for answer in answers if answer.found]
    assert 0.65 <= len(found) / len(answers) <= 0.85
    first = found[0].values[0]
    assert first.value.endswith("lovelace@example.com")
    assert (first.type, first.quality) == ("work", "verified")
    assert all(answer.http_status == 200 for answer in answers)


def test_a_request_without_the_key_or_the_domain_is_refused_as_hunter_refuses_it() -> None:
    with fake_hunter(latency_ms=0, limit=10, api_key=KEY) as provider, httpx.Client() as client:
        assert _get(provider, client, first_name="Ada").status_code == 401
        client.headers["X-API-KEY"] = KEY
        missing = _get(provider, client, first_name="Ada", last_name="Lovelace")
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["id"] == "wrong_params"


def test_the_limit_is_enforced_over_any_one_second_and_refusals_are_counted() -> None:
    with fake_hunter(latency_ms=0, limit=5, api_key=KEY) as provider:
        adapter = _adapter(provider)
        for index in range(5):
            assert adapter.lookup(_subject(index), "emails").http_status == 200
        refusals = []
        for index in range(3):
            with pytest.raises(TransientProviderError) as refused:
                adapter.lookup(_subject(index), "emails")
            refusals.append(refused.value)
        assert provider.counts() == Counts(requests=8, refused=3)
        # The window slides: once the served requests are a second old, one more is served.
        time.sleep(1.05)
        assert adapter.lookup(_subject(9), "emails").http_status == 200
        assert provider.counts() == Counts(requests=9, refused=3)
        provider.reset()
        assert provider.counts() == Counts(requests=0, refused=0)
    # Hunter's throttle: a 403 the adapter reads as "slow down", with no Retry-After to honour.
    assert {(e.reason, e.http_status, e.retry_after) for e in refusals} == {
        ("rate_limited", 403, None)
    }


def test_its_latency_does_not_serialize_requests() -> None:
    in_flight = 100
    with fake_hunter(latency_ms=200, limit=1000, api_key=KEY) as provider:
        limits = httpx.Limits(max_connections=in_flight)
        with httpx.Client(headers={"X-API-KEY": KEY}, limits=limits) as client:
            started = time.monotonic()
            with ThreadPoolExecutor(in_flight) as pool:
                statuses = list(
                    pool.map(
                        lambda index: (
                            _get(
                                provider, client, domain="example.com", first_name=f"A{index}"
                            ).status_code
                        ),
                        range(in_flight),
                    )
                )
            elapsed = time.monotonic() - started
    assert statuses == [200] * in_flight
    assert 0.2 <= elapsed < 2.0  # serialized, 100 requests of 200 ms would take 20 s


def test_the_bench_runs_it_as_a_process_of_its_own_and_reads_its_counts_over_http() -> None:
    with fake_hunter_process(latency_ms=0, limit=3, api_key=KEY) as provider:
        assert provider.port != 0 and str(provider.port) in provider.url
        adapter = _adapter(provider)
        for index in range(3):
            assert adapter.lookup(_subject(index), "emails").http_status == 200
        with pytest.raises(TransientProviderError):
            adapter.lookup(_subject(3), "emails")
        assert provider.counts() == Counts(requests=4, refused=1)
        # Its own CPU time, which bench/adapter_cost.py counts per request.
        assert provider.cpu_seconds() > 0
        provider.reset()
        assert provider.counts() == Counts(requests=0, refused=0)
    assert not provider.answers()  # stopped with the block
