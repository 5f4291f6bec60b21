"""Lusha V3 search-and-enrich (emails, phones), one contact per call. "Not found" is per item
inside a 200 (`results[i].error`); the search itself is charged even when nothing is revealed
(`billing.creditsCharged`). Numbers flagged do-not-call are never returned."""

import re
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
    PermanentProviderError,
    ProviderFailure,
    Subject,
    SyncAdapter,
    TransientProviderError,
    classified_error,
    items,
    obj,
    text,
)
from providers.http import body_of

_REFERENCE = "subject"
_EMAIL_TYPES = {"work": "work", "private": "personal"}
_PHONE_TYPES = {"mobile": "mobile", "direct": "direct", "work": "work"}
# Per-item errors: the person is unknown or may not be shown (not found), or Lusha failed on it.
_ITEM_NOT_FOUND = {"NOT_FOUND", "COMPLIANCE_RESTRICTED"}
# Lusha sends no Retry-After; its 429 messages say "Reset in X seconds".
_RESET_IN = re.compile(r"reset in (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)
_ERRORS: ErrorRules = {
    401: KEY_REJECTED,
    402: CREDITS_EXHAUSTED,
    403: (ProviderFailure, "account_inactive"),
    429: RATE_LIMITED,
    451: (PermanentProviderError, "gdpr_restricted"),
    400: INVALID_REQUEST,
    412: INVALID_REQUEST,
}


class LushaAdapter(SyncAdapter):
    name = "lusha"
    fields = frozenset({"emails", "phones"})
    key_header = "api_key"
    default_base_url = "https://api.lusha.com"
    # 25/second for every account; 40/minute and 100/day are the Free/Starter plan quotas.
    default_rate_limit = "25/second;40/minute;100/day"

    def lookup(self, subject: Subject, field: str) -> Answer:
        fields = subject.as_fields(
            linkedin="linkedinUrl",
            first_name="firstName",
            last_name="lastName",
            domain="companyDomain",
            company="companyName",
        )
        if not fields:
            return Answer(note=NOT_ENOUGH_DATA)
        contact = {"clientReferenceId": _REFERENCE, **fields}
        response = self.http.request(
            "POST",
            "/v3/contacts/search-and-enrich",
            json={"contacts": [contact], "reveal": [field]},
        )
        if response.status_code != 200:
            detail = text(body_of(response).get("message"))
            match = _RESET_IN.search(detail)
            raise classified_error(
                response,
                _ERRORS,
                detail=detail,
                retry_after=float(match.group(1)) if match else None,
            )
        body = body_of(response)
        spent = obj(body.get("billing")).get("creditsCharged")
        spent = spent if isinstance(spent, int) else None
        item = next(
            (
                r
                for r in map(obj, items(body.get("results")))
                if r.get("clientReferenceId") == _REFERENCE
            ),
            {},
        )
        error = obj(item.get("error"))
        if error:
            code = text(error.get("code"))
            if code not in _ITEM_NOT_FOUND:
                raise TransientProviderError("item_failed", http_status=200, detail=code)
            return Answer(http_status=200, credits_spent=spent, note=code.lower())
        values = _emails(item) if field == "emails" else _phones(item)
        return Answer(values=values, http_status=200, credits_spent=spent)


def _emails(item: dict[str, Any]) -> tuple[FoundValue, ...]:
    return tuple(
        FoundValue(
            value=text(entry.get("email")),
            type=_EMAIL_TYPES.get(entry.get("type"), "other"),
            quality=_email_quality(text(entry.get("confidence"))),
        )
        for entry in map(obj, items(item.get("emails")))
        if text(entry.get("email"))
    )


def _email_quality(grade: str) -> str:
    # Lusha grades its emails A+ .. C; we read A-grades as verified, B as probable.
    if grade.startswith("A"):
        return "verified"
    return "probable" if grade.startswith("B") else "unknown"


def _phones(item: dict[str, Any]) -> tuple[FoundValue, ...]:
    return tuple(
        FoundValue(
            value=text(entry.get("number")),
            type=_PHONE_TYPES.get(entry.get("type"), "other"),
            quality="unknown",
        )
        for entry in map(obj, items(item.get("phones")))
        if text(entry.get("number")) and entry.get("doNotCall") is not True
    )
