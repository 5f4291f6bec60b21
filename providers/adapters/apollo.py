"""Apollo.io People Enrichment, `people/match` (emails). A 200 with no person, or a person without
an email, is the "not found". Phones come only asynchronously (webhook or poll), so this adapter
serves emails."""

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


class ApolloAdapter(SyncAdapter):
    name = "apollo"
    fields = frozenset({"emails"})
    key_header = "x-api-key"
    default_base_url = "https://api.apollo.io"
    # The free plan's documented enrichment limits; paid plans have 1,000/minute.
    default_rate_limit = "50/minute;200/hour;600/day"

    def lookup(self, subject: Subject, field: str) -> Answer:
        body: dict[str, str | bool] = {"reveal_personal_emails": False}
        if subject.linkedin_url:
            body["linkedin_url"] = subject.linkedin_url
        if subject.has_name_and_company:
            body |= {"first_name": subject.first_name, "last_name": subject.last_name}
            if subject.company_domain:
                body["domain"] = subject.company_domain
            else:
                body["organization_name"] = subject.company_name
        if len(body) == 1:
            # A name without a company or domain may "match" and enrich nothing.
            return Answer(note=NOT_ENOUGH_DATA)
        response = self.http.request("POST", "/api/v1/people/match", json=body)
        if response.status_code != 200:
            raise self._error(response)
        person = obj(body_of(response).get("person"))
        email = text(person.get("email"))
        if not email:
            return Answer(http_status=200)
        quality = "verified" if person.get("email_status") == "verified" else "probable"
        return Answer(
            values=(FoundValue(value=email, type="work", quality=quality),),
            http_status=200,
        )

    def _error(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        body = body_of(response)
        detail = text(body.get("error") or body.get("message"))
        if status == 401:
            return ProviderFailure("key_rejected", http_status=status, detail=detail)
        if status == 402:
            return ProviderFailure("credits_exhausted", http_status=status, detail=detail)
        if status == 403:
            # API_INACCESSIBLE: the plan has no API access, or the key is not scoped for this call.
            return ProviderFailure("api_inaccessible", http_status=status, detail=detail)
        if status == 429:
            return TransientProviderError(
                "rate_limited",
                http_status=status,
                detail=detail,
                retry_after=retry_after_seconds(response),
            )
        if status in (400, 422):
            return PermanentProviderError("invalid_request", http_status=status, detail=detail)
        return unexpected(response)
