"""Hunter.io Email Finder (emails). Hunter inverts the usual codes: 403 is its per-second/minute
throttle ("slow down"), 429 is the monthly quota used up (a provider-level failure)."""

import re

import httpx

from providers.base import (
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
    classified_error,
    items,
    obj,
    text,
)
from providers.http import body_of, retry_after_seconds

# Hunter's inversion: 403 is its throttle, 429 its monthly quota used up.
_ERRORS: ErrorRules = {
    401: KEY_REJECTED,
    429: (ProviderFailure, "quota_exhausted"),
    403: RATE_LIMITED,
    400: INVALID_REQUEST,
    422: INVALID_REQUEST,
}

# verification.status -> quality; invalid or disposable addresses are no answer at all.
_QUALITY = {"valid": "verified", "accept_all": "probable", "webmail": "probable"}
_REJECTED = {"invalid", "disposable"}


class HunterAdapter(SyncAdapter):
    name = "hunter"
    fields = frozenset({"emails"})
    key_header = "X-API-KEY"
    default_base_url = "https://api.hunter.io"
    default_rate_limit = "15/second;500/minute"

    def lookup(self, subject: Subject, field: str) -> Answer:
        params = self._params(subject)
        if params is None:
            return Answer(note=NOT_ENOUGH_DATA)
        response = self.http.request("GET", "/v2/email-finder", params=params)
        status = response.status_code
        if status == 200:
            return self._answer(response)
        # 404: no such resource; 451: the person asked not to be processed.
        if status in (404, 451):
            return Answer(http_status=status)
        errors = items(body_of(response).get("errors"))
        raise classified_error(
            response,
            _ERRORS,
            detail=text(obj(errors[0] if errors else None).get("details")),
            retry_after=retry_after_seconds(response),
        )

    def _params(self, subject: Subject) -> dict[str, str | int] | None:
        # Hunter searches for up to max_duration seconds; the read timeout must outlast it.
        params: dict[str, str | int] = {
            "max_duration": max(3, min(20, int(self.config.timeout) - 5))
        }
        if subject.company_domain:
            params["domain"] = subject.company_domain
        elif subject.company_name:
            params["company"] = subject.company_name
        if subject.first_name and subject.last_name and len(params) > 1:
            params |= {"first_name": subject.first_name, "last_name": subject.last_name}
        elif handle := _linkedin_handle(subject.linkedin_url):
            params = {"linkedin_handle": handle, "max_duration": params["max_duration"]}
        else:
            return None
        return params

    def _answer(self, response: httpx.Response) -> Answer:
        data = obj(body_of(response).get("data"))
        email = text(data.get("email"))
        status = text(obj(data.get("verification")).get("status"))
        if not email or status in _REJECTED:
            return Answer(http_status=200, note=status)
        quality = "probable" if data.get("accept_all") else _QUALITY.get(status, "probable")
        kind = "personal" if status == "webmail" else "work"
        return Answer(
            values=(FoundValue(value=email, type=kind, quality=quality),),
            http_status=200,
        )


def _linkedin_handle(url: str) -> str:
    """Hunter takes the profile's handle (`patrickcollison`), not its URL."""
    match = re.search(r"linkedin\.com/in/([^/?#]+)", url)
    return match.group(1) if match else ""
