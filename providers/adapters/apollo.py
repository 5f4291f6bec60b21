"""Apollo.io People Enrichment, `people/match` (emails). A 200 with no person, or a person without
an email, is the "not found". Phones come only asynchronously (webhook or poll), so this adapter
serves emails."""

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
    classified_error,
    obj,
    text,
)
from providers.http import body_of, retry_after_seconds

_ERRORS: ErrorRules = {
    401: KEY_REJECTED,
    402: CREDITS_EXHAUSTED,
    # API_INACCESSIBLE: the plan has no API access, or the key is not scoped for this call.
    403: (ProviderFailure, "api_inaccessible"),
    429: RATE_LIMITED,
    400: INVALID_REQUEST,
    422: INVALID_REQUEST,
}


class ApolloAdapter(SyncAdapter):
    name = "apollo"
    fields = frozenset({"emails"})
    key_header = "x-api-key"
    default_base_url = "https://api.apollo.io"
    # The free plan's documented enrichment limits; paid plans have 1,000/minute.
    default_rate_limit = "50/minute;200/hour;600/day"

    def lookup(self, subject: Subject, field: str) -> Answer:
        fields = subject.as_fields(domain="domain", company="organization_name")
        if not fields:
            # A name without a company or domain may "match" and enrich nothing.
            return Answer(note=NOT_ENOUGH_DATA)
        response = self.http.request(
            "POST", "/api/v1/people/match", json={"reveal_personal_emails": False, **fields}
        )
        if response.status_code != 200:
            body = body_of(response)
            raise classified_error(
                response,
                _ERRORS,
                detail=text(body.get("error") or body.get("message")),
                retry_after=retry_after_seconds(response),
            )
        person = obj(body_of(response).get("person"))
        email = text(person.get("email"))
        if not email:
            return Answer(http_status=200)
        quality = "verified" if person.get("email_status") == "verified" else "probable"
        return Answer(
            values=(FoundValue(value=email, type="work", quality=quality),),
            http_status=200,
        )
