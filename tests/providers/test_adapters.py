"""Every documented answer of every synchronous adapter, replayed from a real local HTTP server
(fixtures/<provider>/<answer>.json), mapped to found values, not found, or a classified error."""

import pytest
from pytest_httpserver import HTTPServer

from providers.adapters.apollo import ApolloAdapter
from providers.adapters.hunter import HunterAdapter
from providers.adapters.lusha import LushaAdapter
from providers.adapters.pdl import PdlAdapter
from providers.adapters.prospeo import ProspeoAdapter
from providers.base import (
    PermanentProviderError,
    ProviderFailure,
    Subject,
    TransientProviderError,
)
from tests.providers.conftest import serve

SUBJECT = Subject(
    first_name="Patrick", last_name="Collison", company_name="Stripe", company_domain="stripe.com"
)
PATHS = {
    HunterAdapter: "/v2/email-finder",
    PdlAdapter: "/v5/person/enrich",
    ApolloAdapter: "/api/v1/people/match",
    ProspeoAdapter: "/enrich-person",
    LushaAdapter: "/v3/contacts/search-and-enrich",
}
# An answer each provider gives when it knows nobody: for tests about the request sent.
NOBODY = {
    HunterAdapter: "not_found_404",
    PdlAdapter: "not_found_404",
    ApolloAdapter: "not_found_no_person",
    ProspeoAdapter: "no_match_400",
    LushaAdapter: "item_not_found",
}

FOUND = [
    (HunterAdapter, "found_valid", "emails", [("patrick@stripe.com", "work", "verified")]),
    (HunterAdapter, "found_accept_all", "emails", [("patrick@stripe.com", "work", "probable")]),
    (
        HunterAdapter,
        "found_webmail",
        "emails",
        [("patrick.collison@gmail.com", "personal", "probable")],
    ),
    (
        PdlAdapter,
        "found",
        "emails",
        [
            ("kimberly_patton@hall-rios-and-miller.com", "work", "probable"),
            ("kpatton@gmail.com", "personal", "probable"),
        ],
    ),
    (
        PdlAdapter,
        "found",
        "phones",
        [("+15814854381", "mobile", "probable"), ("+15815550100", "other", "probable")],
    ),
    (
        PdlAdapter,
        "found_low_likelihood",
        "emails",
        [
            ("kimberly_patton@hall-rios-and-miller.com", "work", "unknown"),
            ("kpatton@gmail.com", "personal", "unknown"),
        ],
    ),
    (ApolloAdapter, "found_verified", "emails", [("tim@apollo.io", "work", "verified")]),
    (ApolloAdapter, "found_extrapolated", "emails", [("tim@apollo.io", "work", "probable")]),
    (ProspeoAdapter, "found", "emails", [("eoghan@intercom.com", "work", "verified")]),
    (ProspeoAdapter, "found", "phones", [("+14155550000", "mobile", "verified")]),
    (
        LushaAdapter,
        "found",
        "emails",
        [
            ("orit.shilvock@lusha.com", "work", "verified"),
            ("orit.s@gmail.com", "personal", "probable"),
        ],
    ),
    # The second number is flagged do-not-call: never returned.
    (LushaAdapter, "found", "phones", [("+14155551234", "mobile", "unknown")]),
]

NOT_FOUND = [
    (HunterAdapter, "not_found_null_email", "emails", 200),
    (HunterAdapter, "not_found_404", "emails", 404),
    (HunterAdapter, "gdpr_451", "emails", 451),
    (HunterAdapter, "found_invalid", "emails", 200),
    (PdlAdapter, "not_found_404", "emails", 404),
    (PdlAdapter, "free_plan_booleans", "emails", 200),
    (PdlAdapter, "free_plan_booleans", "phones", 200),
    (ApolloAdapter, "not_found_no_person", "emails", 200),
    (ApolloAdapter, "not_found_no_email", "emails", 200),
    (ProspeoAdapter, "no_match_400", "emails", 400),
    (ProspeoAdapter, "no_match_400", "phones", 400),
    (ProspeoAdapter, "mobile_not_revealed", "phones", 200),
    (ProspeoAdapter, "email_unavailable", "emails", 200),
    (LushaAdapter, "item_not_found", "emails", 200),
    (LushaAdapter, "item_compliance_restricted", "phones", 200),
    (LushaAdapter, "item_boolean_fields", "emails", 200),
    (LushaAdapter, "item_boolean_fields", "phones", 200),
]

ERRORS = [
    (HunterAdapter, "bad_request_400", PermanentProviderError, "invalid_request"),
    (HunterAdapter, "unauthorized_401", ProviderFailure, "key_rejected"),
    (HunterAdapter, "rate_limited_403", TransientProviderError, "rate_limited"),
    (HunterAdapter, "quota_used_up_429", ProviderFailure, "quota_exhausted"),
    (HunterAdapter, "server_error_500", TransientProviderError, "provider_error"),
    (PdlAdapter, "bad_request_400", PermanentProviderError, "invalid_request"),
    (PdlAdapter, "unauthorized_401", ProviderFailure, "key_rejected"),
    (PdlAdapter, "payment_required_402", ProviderFailure, "credits_exhausted"),
    (PdlAdapter, "method_not_allowed_405", PermanentProviderError, "invalid_request"),
    (PdlAdapter, "rate_limited_429_reset", TransientProviderError, "rate_limited"),
    (PdlAdapter, "server_error_500", TransientProviderError, "provider_error"),
    (ApolloAdapter, "unauthorized_401", ProviderFailure, "key_rejected"),
    (ApolloAdapter, "api_inaccessible_403", ProviderFailure, "api_inaccessible"),
    (ApolloAdapter, "unprocessable_422", PermanentProviderError, "invalid_request"),
    (ApolloAdapter, "rate_limited_429", TransientProviderError, "rate_limited"),
    (ApolloAdapter, "server_error_500", TransientProviderError, "provider_error"),
    (ProspeoAdapter, "insufficient_credits_400", ProviderFailure, "credits_exhausted"),
    (ProspeoAdapter, "account_restricted_400", ProviderFailure, "account_restricted"),
    (ProspeoAdapter, "invalid_api_key_401", ProviderFailure, "key_rejected"),
    (ProspeoAdapter, "invalid_datapoints_400", PermanentProviderError, "invalid_request"),
    (ProspeoAdapter, "internal_error_400", TransientProviderError, "provider_error"),
    (ProspeoAdapter, "rate_limited_429", TransientProviderError, "rate_limited"),
    (LushaAdapter, "item_enrich_failed", TransientProviderError, "item_failed"),
    (LushaAdapter, "bad_request_400", PermanentProviderError, "invalid_request"),
    (LushaAdapter, "unauthorized_401", ProviderFailure, "key_rejected"),
    (LushaAdapter, "payment_required_402", ProviderFailure, "credits_exhausted"),
    (LushaAdapter, "forbidden_403", ProviderFailure, "account_inactive"),
    (LushaAdapter, "rate_limited_429", TransientProviderError, "rate_limited"),
    (LushaAdapter, "gdpr_451", PermanentProviderError, "gdpr_restricted"),
    (LushaAdapter, "timeout_499", TransientProviderError, "provider_error"),
]


def _id(case: tuple) -> str:
    return f"{case[0].name}-{case[1]}-{case[2] if isinstance(case[2], str) else ''}"


@pytest.mark.parametrize(("cls", "answer", "field", "expected"), FOUND, ids=map(_id, FOUND))
def test_documented_found_answer_maps_to_typed_values(
    httpserver: HTTPServer, make_adapter, cls, answer, field, expected
) -> None:
    serve(httpserver, PATHS[cls], cls.name, answer)

    result = make_adapter(cls).lookup(SUBJECT, field)

    assert [(v.value, v.type, v.quality) for v in result.values] == expected
    assert result.http_status == 200


@pytest.mark.parametrize(("cls", "answer", "field", "status"), NOT_FOUND, ids=map(_id, NOT_FOUND))
def test_documented_not_found_answer_maps_to_no_values(
    httpserver: HTTPServer, make_adapter, cls, answer, field, status
) -> None:
    serve(httpserver, PATHS[cls], cls.name, answer)

    result = make_adapter(cls).lookup(SUBJECT, field)

    assert not result.found
    assert result.http_status == status


@pytest.mark.parametrize(("cls", "answer", "error", "reason"), ERRORS, ids=map(_id, ERRORS))
def test_documented_error_answer_maps_to_its_error_class(
    httpserver: HTTPServer, make_adapter, cls, answer, error, reason
) -> None:
    serve(httpserver, PATHS[cls], cls.name, answer)
    field = "phones" if "phones" in cls.fields and cls is not ProspeoAdapter else "emails"

    with pytest.raises(error) as raised:
        make_adapter(cls).lookup(SUBJECT, field)

    assert type(raised.value) is error
    assert raised.value.reason == reason


@pytest.mark.parametrize(
    ("cls", "answer", "seconds"),
    [
        (PdlAdapter, "rate_limited_429_reset", 20),  # x-ratelimit-reset as an ISO time
        (PdlAdapter, "rate_limited_429_legacy", 12),  # Retry-After wins over the epoch reset
        (ApolloAdapter, "rate_limited_429", 30),
        (ProspeoAdapter, "rate_limited_429", 17),  # x-minute-reset-seconds
        (LushaAdapter, "rate_limited_429", 20),  # "Reset in 20 seconds" in the message
    ],
)
def test_slow_down_answer_carries_the_providers_wait(
    httpserver: HTTPServer, make_adapter, cls, answer, seconds
) -> None:
    serve(httpserver, PATHS[cls], cls.name, answer)

    with pytest.raises(TransientProviderError) as raised:
        make_adapter(cls).lookup(SUBJECT, "emails")

    assert raised.value.retry_after == pytest.approx(seconds, abs=1.5)


def test_hunter_slow_down_without_a_header_has_no_wait(
    httpserver: HTTPServer, make_adapter
) -> None:
    serve(httpserver, PATHS[HunterAdapter], "hunter", "rate_limited_403")

    with pytest.raises(TransientProviderError) as raised:
        make_adapter(HunterAdapter).lookup(SUBJECT, "emails")

    assert raised.value.retry_after is None


def test_pdl_reports_the_credits_it_spent_and_has_left(
    httpserver: HTTPServer, make_adapter
) -> None:
    serve(httpserver, PATHS[PdlAdapter], "pdl", "found")

    result = make_adapter(PdlAdapter).lookup(SUBJECT, "emails")

    assert (result.credits_spent, result.credits_remaining) == (1, 8799)


def test_pdl_free_plan_booleans_are_not_data(httpserver: HTTPServer, make_adapter) -> None:
    serve(httpserver, PATHS[PdlAdapter], "pdl", "free_plan_booleans")

    result = make_adapter(PdlAdapter).lookup(SUBJECT, "emails")

    assert result.values == ()
    assert result.note == "hidden_on_plan"


def test_lusha_search_charge_is_reported_even_when_nothing_is_found(
    httpserver: HTTPServer, make_adapter
) -> None:
    serve(httpserver, PATHS[LushaAdapter], "lusha", "item_not_found")

    result = make_adapter(LushaAdapter).lookup(SUBJECT, "emails")

    assert (result.found, result.credits_spent, result.note) == (False, 1, "not_found")


@pytest.mark.parametrize(
    ("cls", "field", "expected"),
    [
        (
            HunterAdapter,
            "emails",
            {"domain": "stripe.com", "first_name": "Patrick", "last_name": "Collison"},
        ),
        (
            PdlAdapter,
            "phones",
            {
                "first_name": "Patrick",
                "last_name": "Collison",
                "company": "stripe.com",
                "required": "phone_numbers",
            },
        ),
    ],
)
def test_get_adapters_send_the_subject_as_documented_query_parameters(
    httpserver: HTTPServer, make_adapter, cls, field, expected
) -> None:
    serve(httpserver, PATHS[cls], cls.name, NOBODY[cls])

    make_adapter(cls).lookup(SUBJECT, field)

    request, _ = httpserver.log[0]
    assert expected.items() <= request.args.to_dict().items()


@pytest.mark.parametrize(
    ("cls", "field", "expected"),
    [
        (
            ApolloAdapter,
            "emails",
            {
                "first_name": "Patrick",
                "last_name": "Collison",
                "domain": "stripe.com",
                "reveal_personal_emails": False,
            },
        ),
        (
            ProspeoAdapter,
            "phones",
            {
                "only_verified_email": False,
                "enrich_mobile": True,
                "data": {
                    "first_name": "Patrick",
                    "last_name": "Collison",
                    "company_website": "stripe.com",
                },
            },
        ),
        (
            LushaAdapter,
            "emails",
            {
                "contacts": [
                    {
                        "clientReferenceId": "subject",
                        "firstName": "Patrick",
                        "lastName": "Collison",
                        "companyDomain": "stripe.com",
                    }
                ],
                "reveal": ["emails"],
            },
        ),
    ],
)
def test_post_adapters_send_the_subject_as_documented_json(
    httpserver: HTTPServer, make_adapter, cls, field, expected
) -> None:
    serve(httpserver, PATHS[cls], cls.name, NOBODY[cls])

    make_adapter(cls).lookup(SUBJECT, field)

    request, _ = httpserver.log[0]
    assert request.method == "POST"
    assert request.get_json() == expected


@pytest.mark.parametrize("cls", list(PATHS))
def test_subject_without_name_and_company_or_linkedin_sends_nothing(
    httpserver: HTTPServer, make_adapter, cls
) -> None:
    result = make_adapter(cls).lookup(Subject(first_name="Ada", company_name=""), "emails")

    assert (result.found, result.http_status, result.note) == (False, None, "not_enough_data")
    assert httpserver.log == []


@pytest.mark.parametrize("cls", list(PATHS))
def test_linkedin_url_alone_is_enough_to_ask(httpserver: HTTPServer, make_adapter, cls) -> None:
    serve(httpserver, PATHS[cls], cls.name, NOBODY[cls])
    url = "https://www.linkedin.com/in/patrickcollison"

    make_adapter(cls).lookup(Subject(linkedin_url=url), "emails")

    request, _ = httpserver.log[0]
    sent = request.args.get("profile") or request.get_data(as_text=True)
    if cls is HunterAdapter:  # Hunter takes the handle only
        assert request.args["linkedin_handle"] == "patrickcollison"
    else:
        assert url in sent


@pytest.mark.parametrize("cls", list(PATHS))
@pytest.mark.parametrize(
    "body",
    [
        {"data": [], "person": "x", "results": ["x"], "emails": "x"},
        {"data": {"email": ["x"], "emails": [1]}, "results": [{"clientReferenceId": "subject"}]},
        [],
    ],
)
def test_a_200_of_an_unexpected_shape_is_not_found_never_a_crash(
    httpserver: HTTPServer, make_adapter, cls, body
) -> None:
    httpserver.expect_request(PATHS[cls]).respond_with_json(body)

    assert not make_adapter(cls).lookup(SUBJECT, "emails").found
