"""Dropcontact's asynchronous flow against a local server: submit a batch, poll while it answers
"not ready" (200 with success: false), then map every record in submission order."""

import pytest
from pytest_httpserver import HTTPServer

from providers.adapters.dropcontact import DropcontactAdapter
from providers.base import (
    PermanentProviderError,
    ProviderFailure,
    Subject,
    TransientProviderError,
)
from tests.providers.conftest import fixture, serve

SUBMIT = "/v1/enrich/all"
SUBJECTS = [
    Subject(first_name="Denis", last_name="Cohen", company_name="Dropcontact"),
    Subject(first_name="Ana", last_name="Lopez", company_domain="acme.example"),
    Subject(first_name="Nobody", last_name="Known", company_name="Nowhere"),
    Subject(linkedin_url="https://www.linkedin.com/in/paul-martin"),
]


def test_submit_sends_records_in_english_without_emails_and_returns_the_request_id(
    httpserver: HTTPServer, make_adapter
) -> None:
    serve(httpserver, SUBMIT, "dropcontact", "submit_accepted", method="POST")

    submission = make_adapter(DropcontactAdapter).submit(SUBJECTS, "emails")

    assert (submission.request_id, submission.credits_remaining) == ("qzmxkpvlrtdnhwa", 15277)
    body = httpserver.log[0][0].get_json()
    assert body["language"] == "en"
    assert body["data"][0] == {
        "first_name": "Denis",
        "last_name": "Cohen",
        "company": "Dropcontact",
    }
    assert body["data"][3] == {"linkedin": "https://www.linkedin.com/in/paul-martin"}
    assert all("email" not in record for record in body["data"])


def test_poll_waits_while_not_ready_then_maps_each_record_in_order(
    httpserver: HTTPServer, make_adapter
) -> None:
    path = "/v1/enrich/all/qzmxkpvlrtdnhwa"
    for name in ("poll_not_ready", "poll_not_ready", "poll_ready"):
        answer = fixture("dropcontact", name)
        httpserver.expect_ordered_request(path, method="GET").respond_with_json(answer["body"])
    adapter = make_adapter(DropcontactAdapter)

    polls = [adapter.poll("qzmxkpvlrtdnhwa") for _ in range(3)]

    assert [poll.ready for poll in polls] == [False, False, True]
    answers = polls[-1].answers
    assert [[(v.value, v.type, v.quality) for v in a.values] for a in answers] == [
        [("denis.cohen@dropcontact.io", "work", "verified")],
        # The generic mailbox is not the person's address; the catch-all one is probable.
        [("ana@acme.example", "work", "probable")],
        [],
        # A disposable domain is no answer.
        [("paul.martin@gmail.com", "personal", "verified")],
    ]
    assert polls[-1].credits_remaining == 15275


@pytest.mark.parametrize(
    ("answer", "error", "reason"),
    [
        ("submit_too_many_400", PermanentProviderError, "invalid_request"),
        ("submit_unauthorized_401", ProviderFailure, "key_rejected"),
        ("submit_no_credits_403", ProviderFailure, "credits_exhausted"),
        ("submit_validation_422", PermanentProviderError, "invalid_request"),
        ("too_many_requests_429", TransientProviderError, "rate_limited"),
        ("server_error_500", TransientProviderError, "provider_error"),
    ],
)
def test_submit_error_maps_to_its_error_class(
    httpserver: HTTPServer, make_adapter, answer, error, reason
) -> None:
    serve(httpserver, SUBMIT, "dropcontact", answer, method="POST")

    with pytest.raises(error) as raised:
        make_adapter(DropcontactAdapter).submit(SUBJECTS[:1], "emails")

    assert (type(raised.value), raised.value.reason) == (error, reason)


def test_poll_error_maps_like_submit(httpserver: HTTPServer, make_adapter) -> None:
    serve(httpserver, "/v1/enrich/all/gone", "dropcontact", "too_many_requests_429")

    with pytest.raises(TransientProviderError):
        make_adapter(DropcontactAdapter).poll("gone")


@pytest.mark.parametrize("count", [0, 251])
def test_submit_outside_the_batch_limit_sends_nothing(
    httpserver: HTTPServer, make_adapter, count
) -> None:
    with pytest.raises(ValueError, match="250"):
        make_adapter(DropcontactAdapter).submit(SUBJECTS[:1] * count, "emails")

    assert httpserver.log == []


def test_a_ready_answer_of_an_unexpected_shape_finds_nothing(
    httpserver: HTTPServer, make_adapter
) -> None:
    httpserver.expect_request("/v1/enrich/all/odd").respond_with_json(
        {"success": True, "data": ["x", {"email": "not-a-list"}, {"email": [{"email": 1}]}]}
    )

    poll = make_adapter(DropcontactAdapter).poll("odd")

    assert [answer.found for answer in poll.answers] == [False, False, False]
