"""A deterministic offline provider for demos and tests: the same person always gets the same
answer. Magic company domains force each outcome a client must handle (see the README)."""

import hashlib
import random
import re
import time

from django.conf import settings

from providers.base import (
    Answer,
    FoundValue,
    PermanentProviderError,
    Subject,
    SyncAdapter,
    TransientProviderError,
)

ALWAYS_FOUND = "found.example"
NEVER_FOUND = "notfound.example"
ALWAYS_TRANSIENT = "fail.example"
ALWAYS_PERMANENT = "invalid.example"
TOO_SLOW = "slow.example"


class SandboxAdapter(SyncAdapter):
    name = "sandbox"
    fields = frozenset({"emails", "phones"})
    key_header = None
    has_circuit = False

    def lookup(self, subject: Subject, field: str) -> Answer:
        domain = _domain(subject)
        if domain == TOO_SLOW:
            time.sleep(self.config.timeout)
            raise TransientProviderError("provider_timeout")
        latency_ms = settings.ENRICHMENT_SANDBOX_LATENCY_MS
        if latency_ms:
            time.sleep(latency_ms / 1000)
        if domain == ALWAYS_TRANSIENT:
            raise TransientProviderError("provider_unavailable")
        if domain == ALWAYS_PERMANENT:
            raise PermanentProviderError("provider_rejected_request")
        error_rate = settings.ENRICHMENT_SANDBOX_ERROR_RATE
        if error_rate and random.random() < error_rate:
            raise TransientProviderError("provider_unavailable")
        digest = hashlib.sha256(f"{_identity(subject)}|{field}".encode()).digest()
        # One in four ordinary persons is not found, decided by the hash so it never changes.
        if domain == NEVER_FOUND or (domain != ALWAYS_FOUND and digest[0] % 4 == 0):
            return Answer()
        values = _emails(subject, domain) if field == "emails" else _phones(digest)
        return Answer(values=values)


def _domain(subject: Subject) -> str:
    if subject.company_domain:
        return subject.company_domain.lower()
    slug = re.sub(r"[^a-z0-9]+", "", subject.company_name.lower())
    return f"{slug or 'example'}.com"


def _identity(subject: Subject) -> str:
    return "|".join(
        part.strip().lower()
        for part in (
            subject.linkedin_url,
            subject.first_name,
            subject.last_name,
            subject.company_domain or subject.company_name,
        )
    )


def _emails(subject: Subject, domain: str) -> tuple[FoundValue, ...]:
    first = re.sub(r"[^a-z0-9]", "", subject.first_name.lower())
    last = re.sub(r"[^a-z0-9]", "", subject.last_name.lower())
    if not (first and last):
        handle = hashlib.sha256(subject.linkedin_url.encode()).hexdigest()[:10]
        return (FoundValue(value=f"{handle}@{domain}", type="work", quality="probable"),)
    return (
        FoundValue(value=f"{first}.{last}@{domain}", type="work", quality="verified"),
        FoundValue(value=f"{first[0]}{last}@{domain}", type="work", quality="probable"),
    )


def _phones(digest: bytes) -> tuple[FoundValue, ...]:
    number = int.from_bytes(digest[1:5], "big") % 10_000
    return (FoundValue(value=f"+1555010{number:04d}", type="mobile", quality="verified"),)
