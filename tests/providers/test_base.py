"""The helpers every adapter shares: a subject under the provider's field names, and the one
function that turns an adapter's error table into a classified error."""

import httpx
import pytest

from providers.base import (
    INVALID_REQUEST,
    KEY_REJECTED,
    RATE_LIMITED,
    ErrorRules,
    PermanentProviderError,
    ProviderFailure,
    Subject,
    TransientProviderError,
    classified_error,
)

LINKEDIN = "https://www.linkedin.com/in/patrickcollison"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (Subject(), {}),
        # A name without a company is not enough to send.
        (Subject(first_name="Patrick", last_name="Collison"), {}),
        (Subject(first_name="Patrick", company_name="Stripe"), {}),
        (Subject(linkedin_url=LINKEDIN, first_name="Patrick"), {"url": LINKEDIN}),
        (
            Subject(first_name="Patrick", last_name="Collison", company_name="Stripe"),
            {"first": "Patrick", "last": "Collison", "org": "Stripe"},
        ),
        # The domain, when known, is sent instead of the company's name.
        (
            Subject(
                linkedin_url=LINKEDIN,
                first_name="Patrick",
                last_name="Collison",
                company_name="Stripe",
                company_domain="stripe.com",
            ),
            {"url": LINKEDIN, "first": "Patrick", "last": "Collison", "site": "stripe.com"},
        ),
    ],
)
def test_a_subject_is_sent_under_the_providers_names_only_with_enough_to_match(
    subject: Subject, expected: dict[str, str]
) -> None:
    names = {"linkedin": "url", "first_name": "first", "last_name": "last"}
    assert subject.as_fields(**names, domain="site", company="org") == expected


def test_a_subjects_field_names_default_to_its_own() -> None:
    subject = Subject(first_name="Patrick", last_name="Collison", company_name="Stripe")
    assert subject.as_fields() == {
        "first_name": "Patrick",
        "last_name": "Collison",
        "company_name": "Stripe",
    }


RULES: ErrorRules = {
    "QUOTA": (ProviderFailure, "quota_exhausted"),
    401: KEY_REJECTED,
    429: RATE_LIMITED,
    "BUSY": (TransientProviderError, "provider_error"),
    400: INVALID_REQUEST,
}


def response(status: int, text: str = "") -> httpx.Response:
    return httpx.Response(status, text=text)


def test_a_listed_status_gives_its_class_and_reason_with_status_and_detail() -> None:
    error = classified_error(response(401), RULES, detail="bad key")
    assert type(error) is ProviderFailure
    assert (error.reason, error.http_status, error.detail) == ("key_rejected", 401, "bad key")


def test_only_the_rate_limited_rule_carries_the_retry_hint() -> None:
    limited = classified_error(response(429), RULES, detail="", retry_after=7.0)
    busy = classified_error(response(400), RULES, detail="", code="BUSY", retry_after=7.0)
    assert isinstance(limited, TransientProviderError) and limited.retry_after == 7.0
    assert isinstance(busy, TransientProviderError) and busy.reason == "provider_error"
    assert busy.retry_after is None


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (401, "QUOTA", "quota_exhausted"),  # a code listed before the status wins
        (400, "BUSY", "provider_error"),  # ...and so does a code listed after it
        (401, "BUSY", "key_rejected"),  # a status listed before the code wins
        (400, "UNLISTED", "invalid_request"),  # an unknown code falls back to the status
    ],
)
def test_the_first_rule_in_table_order_matching_status_or_code_wins(
    status: int, code: str, reason: str
) -> None:
    assert classified_error(response(status), RULES, detail="", code=code).reason == reason


@pytest.mark.parametrize(
    ("status", "error_class", "reason"),
    [
        (503, TransientProviderError, "provider_error"),
        (418, PermanentProviderError, "unexpected_status"),
    ],
)
def test_an_unlisted_status_is_the_shared_unexpected_error(
    status: int, error_class: type, reason: str
) -> None:
    error = classified_error(response(status, "teapot"), RULES, detail="ignored")
    assert type(error) is error_class
    assert (error.reason, error.http_status, error.detail) == (reason, status, "teapot")
