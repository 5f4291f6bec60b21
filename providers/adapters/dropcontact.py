"""Dropcontact batch enrichment (emails), asynchronous: submit up to 250 records, then poll. While
the batch is being processed the poll answers 200 with `success: false`, which is also its answer
for an unknown request id, so the caller must cap the total wait (ENRICHMENT_ASYNC_MAX_WAIT)."""

from collections.abc import Sequence
from typing import Any

import httpx

from providers.base import (
    CREDITS_EXHAUSTED,
    INVALID_REQUEST,
    KEY_REJECTED,
    RATE_LIMITED,
    Answer,
    AsyncAdapter,
    ErrorRules,
    FoundValue,
    PollResult,
    ProviderError,
    Subject,
    Submission,
    TransientProviderError,
    classified_error,
    items,
    obj,
    text,
)
from providers.http import body_of, retry_after_seconds

# `qualification` is `localpart@domain`; always asked in English (French when `language: fr`).
_LOCALPART_QUALITY = {"nominative": "verified", "catch-all": "probable", "non_validated": "unknown"}
_DOMAIN_TYPES = {"pro": "work", "perso": "personal", "school": "other"}
_ERRORS: ErrorRules = {
    401: KEY_REJECTED,
    # An unknown account, or not enough credits for every record: the whole batch refused.
    403: CREDITS_EXHAUSTED,
    429: RATE_LIMITED,
    400: INVALID_REQUEST,
    422: INVALID_REQUEST,
}


class DropcontactAdapter(AsyncAdapter):
    name = "dropcontact"
    fields = frozenset({"emails"})
    key_header = "X-Access-Token"
    default_base_url = "https://api.dropcontact.com"
    default_rate_limit = "60/second"
    batch_limit = 250

    def submit(self, subjects: Sequence[Subject], field: str) -> Submission:
        if not 1 <= len(subjects) <= self.batch_limit:
            raise ValueError(f"Dropcontact takes 1 to {self.batch_limit} records per request")
        # Never an `email` to verify: that costs a credit whatever the result.
        body = {"data": [_record(s) for s in subjects], "siren": False, "language": "en"}
        response = self.http.request("POST", "/v1/enrich/all", json=body)
        answer = body_of(response)
        request_id = text(answer.get("request_id"))
        if response.status_code != 200:
            raise self._error(response)
        if answer.get("success") is not True or not request_id:
            raise TransientProviderError(
                "submit_refused", http_status=200, detail=text(answer.get("reason"))
            )
        return Submission(
            request_id=request_id,
            http_status=200,
            credits_remaining=_int(answer.get("credits_left")),
        )

    def poll(self, request_id: str) -> PollResult:
        response = self.http.request("GET", f"/v1/enrich/all/{request_id}")
        if response.status_code != 200:
            raise self._error(response)
        body = body_of(response)
        if body.get("success") is not True:
            return PollResult(answers=None, http_status=200)
        return PollResult(
            answers=tuple(_answer(obj(record)) for record in items(body.get("data"))),
            http_status=200,
            credits_remaining=_int(body.get("credits_left")),
        )

    def _error(self, response: httpx.Response) -> ProviderError:
        body = body_of(response)
        return classified_error(
            response,
            _ERRORS,
            # Some statuses (404, 422, 500) answer `{"detail": ...}` instead of a reason.
            detail=text(body.get("reason")) or str(body.get("detail") or ""),
            retry_after=retry_after_seconds(response),
        )


def _record(subject: Subject) -> dict[str, str]:
    record = {
        "first_name": subject.first_name,
        "last_name": subject.last_name,
        "company": subject.company_name,
        "website": subject.company_domain,
        "linkedin": subject.linkedin_url,
    }
    return {key: value for key, value in record.items() if value}


def _answer(record: dict[str, Any]) -> Answer:
    values = []
    for entry in map(obj, items(record.get("email"))):
        email = text(entry.get("email"))
        localpart, _, domain = text(entry.get("qualification")).partition("@")
        # generic (info@), Do_Not_Contact, invalid, disposable and invalid domains are no answer.
        if email and localpart in _LOCALPART_QUALITY and domain in _DOMAIN_TYPES:
            values.append(
                FoundValue(
                    value=email, type=_DOMAIN_TYPES[domain], quality=_LOCALPART_QUALITY[localpart]
                )
            )
    return Answer(values=tuple(values), http_status=200)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
