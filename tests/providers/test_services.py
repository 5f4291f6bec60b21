"""One provider request with everything around it: the circuit asked and told, a provider's
"slow down" paused for everyone, the answer held to the minimum quality, and the call buffered for
the append-only log, written in one INSERT."""

import json
import time
import uuid

import pytest
from django.test import override_settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from providers.adapters.dropcontact import DropcontactAdapter
from providers.adapters.hunter import HunterAdapter
from providers.adapters.pdl import PdlAdapter
from providers.base import (
    PermanentProviderError,
    ProviderFailure,
    RateLimitWait,
    Subject,
    TransientProviderError,
)
from providers.calls import provider_calls_flush, recorder
from providers.circuit import OPEN, Circuit
from providers.models import ProviderCall
from providers.services import (
    ProviderUnavailable,
    provider_lookup,
    provider_poll,
    provider_submit,
)
from tests.providers.conftest import fixture, serve

SUBJECT = Subject(first_name="Patrick", last_name="Collison", company_domain="stripe.com")
HUNTER = "/v2/email-finder"
PDL = "/v5/person/enrich"
pytestmark = pytest.mark.django_db


def test_found_answer_is_buffered_without_a_query_then_written_with_its_details(
    httpserver: HTTPServer, make_adapter, django_assert_num_queries
) -> None:
    serve(httpserver, PDL, "pdl", "found")
    reference = uuid.uuid4()

    with django_assert_num_queries(0):
        answer = provider_lookup(
            adapter=make_adapter(PdlAdapter),
            subject=SUBJECT,
            field="emails",
            reference_id=reference,
        )
    with django_assert_num_queries(1):
        assert provider_calls_flush() == 1

    assert answer.found
    call = ProviderCall.objects.get()
    assert (call.provider, call.reference_id, call.outcome, call.http_status) == (
        "pdl",
        reference,
        "found",
        200,
    )
    assert (call.credits_spent, call.credits_remaining) == (1, 8799)
    assert call.duration_ms >= 0 and call.created_at is not None


def test_many_calls_are_written_with_one_insert(
    httpserver: HTTPServer, make_adapter, django_assert_num_queries
) -> None:
    serve(httpserver, PDL, "pdl", "not_found_404")
    adapter = make_adapter(PdlAdapter)
    for _ in range(30):
        provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)

    with django_assert_num_queries(1):
        provider_calls_flush()

    assert ProviderCall.objects.filter(outcome="not_found", http_status=404).count() == 30


@override_settings(PROVIDER_CALLS_BUFFER_MAX=3)
def test_a_full_buffer_flushes_by_itself(httpserver: HTTPServer, make_adapter) -> None:
    serve(httpserver, PDL, "pdl", "not_found_404")
    adapter = make_adapter(PdlAdapter)

    for _ in range(4):
        provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)

    assert (ProviderCall.objects.count(), recorder.pending()) == (3, 1)


def test_provider_failure_opens_the_circuit_and_the_next_lookup_sends_nothing(
    httpserver: HTTPServer, make_adapter
) -> None:
    serve(httpserver, PDL, "pdl", "payment_required_402")
    adapter = make_adapter(PdlAdapter)

    with pytest.raises(ProviderFailure):
        provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)
    with pytest.raises(ProviderUnavailable) as skipped:
        provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)

    assert len(httpserver.log) == 1
    assert (skipped.value.state.state, skipped.value.state.reason) == (OPEN, "credits_exhausted")
    provider_calls_flush()
    call = ProviderCall.objects.get()
    assert (call.outcome, call.http_status) == ("provider_failure", 402)
    assert call.error.startswith("credits_exhausted: You have reached your account maximum")


def test_retry_after_of_a_slow_down_answer_holds_the_next_request(
    httpserver: HTTPServer, make_adapter
) -> None:
    arrivals: list[float] = []
    answers = [
        Response('{"errors": []}', status=403, headers={"Retry-After": "1"}),
        Response(
            json.dumps(fixture("hunter", "found_valid")["body"]), content_type="application/json"
        ),
    ]

    def handler(request: Request) -> Response:
        arrivals.append(time.monotonic())
        return answers[len(arrivals) - 1]

    httpserver.expect_request(HUNTER).respond_with_handler(handler)
    adapter = make_adapter(HunterAdapter)

    with pytest.raises(TransientProviderError) as raised:
        provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)
    answer = provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)

    assert raised.value.retry_after == 1
    assert answer.found
    assert arrivals[1] - arrivals[0] >= 0.95


@override_settings(ENRICHMENT_PROVIDER_TRANSIENT_STREAK=5)
def test_five_server_errors_in_a_row_open_the_circuit(httpserver: HTTPServer, make_adapter) -> None:
    serve(httpserver, HUNTER, "hunter", "server_error_500")
    adapter = make_adapter(HunterAdapter)

    for _ in range(5):
        with pytest.raises(TransientProviderError):
            provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)

    assert Circuit("hunter").state().reason == "transient_streak: provider_error"
    with pytest.raises(ProviderUnavailable):
        provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)


def test_slow_down_answers_pause_every_worker_and_never_open_the_circuit(
    httpserver: HTTPServer, make_adapter, monkeypatch
) -> None:
    monkeypatch.setattr("providers.services.SLOW_DOWN_PAUSE", 0.05)
    serve(httpserver, HUNTER, "hunter", "rate_limited_403")
    adapter = make_adapter(HunterAdapter)

    for _ in range(6):
        with pytest.raises(TransientProviderError, match="rate_limited"):
            provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)

    assert Circuit("hunter").state().state != OPEN
    assert len(httpserver.log) == 6


def test_slow_downs_without_a_hint_pause_every_worker_longer_each_time_up_to_a_second(
    httpserver: HTTPServer, make_adapter
) -> None:
    serve(httpserver, HUNTER, "hunter", "rate_limited_403")
    adapter = make_adapter(HunterAdapter, rate_limit="1000/second")
    pauses = []
    for _ in range(5):
        with pytest.raises(TransientProviderError, match="rate_limited"):
            provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)
        # The next lookup (any worker's) waits out the pause before it is sent.
        started = time.monotonic()
        adapter.http.limiter.acquire()
        pauses.append(time.monotonic() - started)

    for measured, expected in zip(pauses, [0.1, 0.2, 0.4, 0.8, 1.0], strict=True):
        assert expected - 0.03 <= measured <= expected + 0.15


def test_an_invalid_request_is_recorded_and_leaves_the_circuit_closed(
    httpserver: HTTPServer, make_adapter
) -> None:
    serve(httpserver, HUNTER, "hunter", "bad_request_400")

    with pytest.raises(PermanentProviderError):
        provider_lookup(
            adapter=make_adapter(HunterAdapter), subject=SUBJECT, field="emails", reference_id=None
        )

    provider_calls_flush()
    assert ProviderCall.objects.get().outcome == "invalid_request"
    assert Circuit("hunter").allow()


def test_a_timeout_is_recorded_as_transient_without_a_status(
    httpserver: HTTPServer, make_adapter
) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.6)
        return Response("{}")

    httpserver.expect_request(HUNTER).respond_with_handler(slow)

    with pytest.raises(TransientProviderError):
        provider_lookup(
            adapter=make_adapter(HunterAdapter, timeout=0.2),
            subject=SUBJECT,
            field="emails",
            reference_id=None,
        )

    provider_calls_flush()
    call = ProviderCall.objects.get()
    assert (call.outcome, call.http_status, call.error[:16]) == (
        "transient",
        None,
        "provider_timeout",
    )


def test_a_lookup_that_sends_nothing_records_nothing(make_adapter) -> None:
    answer = provider_lookup(
        adapter=make_adapter(HunterAdapter),
        subject=Subject(first_name="Ada"),
        field="emails",
        reference_id=None,
    )

    assert not answer.found
    assert recorder.pending() == 0


@override_settings(ENRICHMENT_MIN_QUALITY={"emails": "verified"})
def test_values_below_the_minimum_quality_count_as_not_found(
    httpserver: HTTPServer, make_adapter
) -> None:
    serve(httpserver, HUNTER, "hunter", "found_accept_all")

    answer = provider_lookup(
        adapter=make_adapter(HunterAdapter), subject=SUBJECT, field="emails", reference_id=None
    )

    assert (answer.found, answer.note) == (False, "below_min_quality")


def test_async_submit_and_polls_are_recorded_with_the_providers_request_id(
    httpserver: HTTPServer, make_adapter
) -> None:
    serve(httpserver, "/v1/enrich/all", "dropcontact", "submit_accepted", method="POST")
    for name in ("poll_not_ready", "poll_ready"):
        httpserver.expect_oneshot_request("/v1/enrich/all/qzmxkpvlrtdnhwa").respond_with_json(
            fixture("dropcontact", name)["body"]
        )
    adapter = make_adapter(DropcontactAdapter)

    submission = provider_submit(adapter=adapter, subjects=[SUBJECT], field="emails")
    first = provider_poll(adapter=adapter, request_id=submission.request_id)
    second = provider_poll(adapter=adapter, request_id=submission.request_id)
    provider_calls_flush()

    assert (first.ready, second.ready) == (False, True)
    assert list(
        ProviderCall.objects.order_by("id").values_list("outcome", "provider_request_id")
    ) == [
        ("pending", "qzmxkpvlrtdnhwa"),
        ("pending", "qzmxkpvlrtdnhwa"),
        ("found", "qzmxkpvlrtdnhwa"),
    ]


@override_settings(ENRICHMENT_PROVIDER_MAX_WAIT=0.1, ENRICHMENT_PROVIDER_TRANSIENT_STREAK=1)
def test_no_free_slot_within_max_wait_sends_nothing_and_leaves_the_circuit_alone(
    httpserver: HTTPServer, make_adapter
) -> None:
    serve(httpserver, PDL, "pdl", "not_found_404")
    adapter = make_adapter(PdlAdapter, rate_limit="1/minute")
    provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)

    with pytest.raises(RateLimitWait) as raised:
        provider_lookup(adapter=adapter, subject=SUBJECT, field="emails", reference_id=None)

    assert raised.value.retry_after > 55
    assert len(httpserver.log) == 1
    assert Circuit("pdl").allow()
    assert recorder.pending() == 1
