"""Lusha V3 search-and-enrich (emails, phones), one contact per call. "Not found" is per item
inside a 200 (`results[i].error`); the search itself is charged even when nothing is revealed
(`billing.creditsCharged`). Numbers flagged do-not-call are never returned."""

import re
from typing import Any

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
    items,
    obj,
    text,
)
from providers.http import body_of, unexpected

_REFERENCE = "subject"
_EMAIL_TYPES = {"work": "work", "private": "personal"}
_PHONE_TYPES = {"mobile": "mobile", "direct": "direct", "work": "work"}
# Per-item errors: the person is unknown or may not be shown (not found), or Lusha failed on it.
_ITEM_NOT_FOUND = {"NOT_FOUND", "COMPLIANCE_RESTRICTED"}
# Lusha sends no Retry-After; its 429 messages say "Reset in X seconds".
_RESET_IN = re.compile(r"reset in (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


class LushaAdapter(SyncAdapter):
    name = "lusha"
    fields = frozenset({"emails", "phones"})
    key_header = "api_key"
    default_base_url = "https://api.lusha.com"
    # 25/second for every account; 40/minute and 100/day are the Free/Starter plan quotas.
    default_rate_limit = "25/second;40/minute;100/day"

    def lookup(self, subject: Subject, field: str) -> Answer:
        contact: dict[str, str] = {"clientReferenceId": _REFERENCE}
        if subject.linkedin_url:
            contact["linkedinUrl"] = subject.linkedin_url
        if subject.has_name_and_company:
            contact |= {"firstName": subject.first_name, "lastName": subject.last_name}
            if subject.company_domain:
                contact["companyDomain"] = subject.company_domain
            else:
                contact["companyName"] = subject.company_name
        if len(contact) == 1:
            return Answer(note=NOT_ENOUGH_DATA)
        response = self.http.request(
            "POST",
            "/v3/contacts/search-and-enrich",
            json={"contacts": [contact], "reveal": [field]},
        )
        if response.status_code != 200:
            raise self._error(response)
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

    def _error(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        detail = text(body_of(response).get("message"))
        if status == 401:
            return ProviderFailure("key_rejected", http_status=status, detail=detail)
        if status == 402:
            return ProviderFailure("credits_exhausted", http_status=status, detail=detail)
        if status == 403:
            return ProviderFailure("account_inactive", http_status=status, detail=detail)
        if status == 429:
            match = _RESET_IN.search(detail)
            return TransientProviderError(
                "rate_limited",
                http_status=status,
                detail=detail,
                retry_after=float(match.group(1)) if match else None,
            )
        if status == 451:
            return PermanentProviderError("gdpr_restricted", http_status=status, detail=detail)
        if status in (400, 412):
            return PermanentProviderError("invalid_request", http_status=status, detail=detail)
        return unexpected(response)


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
