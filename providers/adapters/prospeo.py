"""Prospeo Enrich Person (emails, phones). Prospeo answers most outcomes as a 400 with an
`error_code`, "no match" included, so the code is read before the status."""

from providers.base import (
    CREDITS_EXHAUSTED,
    INVALID_REQUEST,
    KEY_REJECTED,
    NOT_ENOUGH_DATA,
    RATE_LIMITED,
    Answer,
    ErrorRules,
    FoundValue,
    ProviderFailure,
    Subject,
    SyncAdapter,
    TransientProviderError,
    classified_error,
    obj,
    text,
)
from providers.http import body_of, retry_after_seconds

# Keyed by `error_code` or status; the first matching rule wins, so the code outranks the status.
_ERRORS: ErrorRules = {
    "INVALID_API_KEY": KEY_REJECTED,
    "INSUFFICIENT_CREDITS": CREDITS_EXHAUSTED,
    "ACCOUNT_RESTRICTED": (ProviderFailure, "account_restricted"),
    401: KEY_REJECTED,
    "RATE_LIMITED": RATE_LIMITED,
    429: RATE_LIMITED,
    "INTERNAL_ERROR": (TransientProviderError, "provider_error"),
    "INVALID_DATAPOINTS": INVALID_REQUEST,
    "INVALID_REQUEST": INVALID_REQUEST,
}
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
        data = subject.as_fields(domain="company_website")
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
            raise classified_error(
                response,
                _ERRORS,
                detail=code or response.text[:200],
                code=code,
                retry_after=retry_after_seconds(response, "x-minute-reset-seconds"),
            )
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
