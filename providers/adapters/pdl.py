"""People Data Labs Person Enrichment (emails, phones). A 404 is the normal "no match" (not billed);
402 means every match of the account is used up. Free plans answer contact fields with booleans
(whether the field exists) instead of values: that is "not available on this plan", not data."""

from typing import Any

from providers.base import (
    CREDITS_EXHAUSTED,
    INVALID_REQUEST,
    KEY_REJECTED,
    NOT_ENOUGH_DATA,
    RATE_LIMITED,
    Answer,
    ErrorRules,
    FoundValue,
    Subject,
    SyncAdapter,
    classified_error,
    items,
    obj,
    text,
)
from providers.http import body_of, header_int, retry_after_seconds

# PDL has no per-value verification; its match likelihood (1-10, logarithmic) is the only signal.
# From this likelihood up the values count as probable, below it as unknown (our choice).
PROBABLE_LIKELIHOOD = 6
# Only records holding the field we want count as a match, so a match without it is a free 404.
_REQUIRED = {"emails": "emails", "phones": "phone_numbers"}
_EMAIL_TYPES = {"current_professional": "work", "professional": "work", "personal": "personal"}
_ERRORS: ErrorRules = {
    401: KEY_REJECTED,
    402: CREDITS_EXHAUSTED,
    429: RATE_LIMITED,
    400: INVALID_REQUEST,
    405: INVALID_REQUEST,
}


class PdlAdapter(SyncAdapter):
    name = "pdl"
    fields = frozenset({"emails", "phones"})
    key_header = "X-Api-Key"
    default_base_url = "https://api.peopledatalabs.com"
    # The free plan's documented limit; paying plans have 1,000/minute (set PDL_RATE_LIMIT).
    default_rate_limit = "100/minute"

    def lookup(self, subject: Subject, field: str) -> Answer:
        fields = subject.as_fields(linkedin="profile", domain="company", company="company")
        if not fields:
            return Answer(note=NOT_ENOUGH_DATA)
        response = self.http.request(
            "GET", "/v5/person/enrich", params={"required": _REQUIRED[field], **fields}
        )
        if response.status_code == 404:
            return Answer(http_status=404)
        if response.status_code != 200:
            error = body_of(response).get("error") or {}
            raise classified_error(
                response,
                _ERRORS,
                detail=text(error.get("message")) if isinstance(error, dict) else "",
                retry_after=retry_after_seconds(response, "x-ratelimit-reset"),
            )
        body = body_of(response)
        data = obj(body.get("data"))
        likelihood = body.get("likelihood")
        quality = (
            "probable"
            if isinstance(likelihood, int) and likelihood >= PROBABLE_LIKELIHOOD
            else "unknown"
        )
        pairs = _emails(data) if field == "emails" else _phones(data)
        values = tuple(FoundValue(value=v, type=t, quality=quality) for v, t in _unique(pairs))
        hidden = not values and any(isinstance(data.get(key), bool) for key in _CONTACT_KEYS[field])
        return Answer(
            values=values,
            http_status=200,
            credits_spent=header_int(response, "x-call-credits-spent"),
            credits_remaining=header_int(response, "x-totallimit-remaining"),
            note="hidden_on_plan" if hidden else "",
        )


_CONTACT_KEYS = {
    "emails": ("work_email", "personal_emails", "emails"),
    "phones": ("mobile_phone", "phone_numbers"),
}


def _emails(data: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = [(text(data.get("work_email")), "work")]
    for entry in map(obj, items(data.get("emails"))):
        pairs.append((text(entry.get("address")), _EMAIL_TYPES.get(entry.get("type"), "other")))
    pairs += [(text(email), "personal") for email in items(data.get("personal_emails"))]
    return pairs


def _phones(data: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = [(text(data.get("mobile_phone")), "mobile")]
    return pairs + [(text(number), "other") for number in items(data.get("phone_numbers"))]


def _unique(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drops empty values and repeats (the first, most specific type wins), keeping the order."""
    seen: set[str] = set()
    kept = []
    for value, kind in pairs:
        if value and value.lower() not in seen:
            seen.add(value.lower())
            kept.append((value, kind))
    return kept
