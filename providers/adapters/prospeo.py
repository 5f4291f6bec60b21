"""Prospeo Enrich Person (emails, phones). Prospeo answers most outcomes as a 400 with an
`error_code`, "no match" included, so the code is read before the status."""

import httpx

from providers.base import (
    NOT_ENOUGH_DATA,
    Answer,
    FoundValue,
    PermanentProviderError,
    ProviderError,
    ProviderFailure,
    Subject,
    SyncAdapter,
    TransientProviderError,
    obj,
    text,
)
from providers.http import body_of, retry_after_seconds, unexpected

_FAILURES = {
    "INVALID_API_KEY": "key_rejected",
    "INSUFFICIENT_CREDITS": "credits_exhausted",
    "ACCOUNT_RESTRICTED": "account_restricted",
}
_PERMANENT = {"INVALID_DATAPOINTS", "INVALID_REQUEST"}
# field -> (the person's key, the value's key, the type of the value)
_SHAPE = {"emails": ("email", "email", "work"), "phones": ("mobile", "mobile", "mobile")}


class ProspeoAdapter(SyncAdapter):
    name = "prospeo"
    fields = frozenset({"emails", "phones"})
    key_header = "X-KEY"
    default_base_url = "https://api.prospeo.io"
    # The Starter plan's documented enrich limits.
    default_rate_limit = "5/second;300/minute;2000/day"

    def lookup(self, subject: Subject, field: str) -> Answer:
        data: dict[str, str] = {}
        if subject.linkedin_url:
            data["linkedin_url"] = subject.linkedin_url
        if subject.has_name_and_company:
            data |= {"first_name": subject.first_name, "last_name": subject.last_name}
            if subject.company_domain:
                data["company_website"] = subject.company_domain
            else:
                data["company_name"] = subject.company_name
        if not data:
            return Answer(note=NOT_ENOUGH_DATA)
        response = self.http.request(
            "POST",
            "/enrich-person",
            json={"only_verified_email": False, "enrich_mobile": field == "phones", "data": data},
        )
        body = body_of(response)
        if body.get("error") is True or response.status_code != 200:
            code = text(body.get("error_code"))
            if code == "NO_MATCH":
                return Answer(http_status=response.status_code)
            raise self._error(response, code)
        section, key, kind = _SHAPE[field]
        found = obj(obj(body.get("person")).get(section))
        value = text(found.get(key))
        # Unrevealed values come masked (`+1 415-3**-****`), and UNAVAILABLE means none.
        if not value or found.get("revealed") is not True or found.get("status") == "UNAVAILABLE":
            return Answer(http_status=200, note=text(found.get("status")).lower())
        quality = "verified" if found.get("status") == "VERIFIED" else "unknown"
        return Answer(
            values=(FoundValue(value=value, type=kind, quality=quality),), http_status=200
        )

    def _error(self, response: httpx.Response, code: str) -> ProviderError:
        status = response.status_code
        detail = code or response.text[:200]
        if code in _FAILURES:
            return ProviderFailure(_FAILURES[code], http_status=status, detail=detail)
        if status == 401:
            return ProviderFailure("key_rejected", http_status=status, detail=detail)
        if code == "RATE_LIMITED" or status == 429:
            return TransientProviderError(
                "rate_limited",
                http_status=status,
                detail=detail,
                retry_after=retry_after_seconds(response, "x-minute-reset-seconds"),
            )
        if code == "INTERNAL_ERROR":
            return TransientProviderError("provider_error", http_status=status, detail=detail)
        if code in _PERMANENT:
            return PermanentProviderError("invalid_request", http_status=status, detail=detail)
        return unexpected(response)
