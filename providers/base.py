"""What every adapter takes and gives: a Subject in, an Answer (found values or not found) out, or
one of the classified errors below."""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from providers.redaction import redact

if TYPE_CHECKING:  # providers.http imports this module
    import httpx

FIELDS = ("emails", "phones")
VALUE_TYPES = ("work", "personal", "mobile", "direct", "other")
# Ascending: an answer below ENRICHMENT_MIN_QUALITY counts as not found.
QUALITIES = ("unknown", "probable", "verified")
# The note of an answer for which nothing was sent: the subject lacked what the provider needs.
NOT_ENOUGH_DATA = "not_enough_data"


@dataclass(frozen=True)
class Subject:
    """What a provider may know about a person; nothing tenant-specific."""

    first_name: str = ""
    last_name: str = ""
    company_name: str = ""
    company_domain: str = ""
    linkedin_url: str = ""

    @property
    def has_name_and_company(self) -> bool:
        return bool(
            self.first_name and self.last_name and (self.company_domain or self.company_name)
        )

    def as_fields(
        self,
        *,
        linkedin: str = "linkedin_url",
        first_name: str = "first_name",
        last_name: str = "last_name",
        domain: str = "company_domain",
        company: str = "company_name",
    ) -> dict[str, str]:
        """The subject under a provider's field names (by default our own): the LinkedIn URL when
        known, plus the name with the company's domain (else its name) when both are known; {} when
        neither. `domain` and `company` may be the same field."""
        fields = {linkedin: self.linkedin_url} if self.linkedin_url else {}
        if self.has_name_and_company:
            fields |= {first_name: self.first_name, last_name: self.last_name}
            if self.company_domain:
                fields[domain] = self.company_domain
            else:
                fields[company] = self.company_name
        return fields


@dataclass(frozen=True)
class FoundValue:
    value: str
    type: str
    quality: str

    def __post_init__(self) -> None:
        if self.type not in VALUE_TYPES or self.quality not in QUALITIES:
            raise ValueError(f"bad found value {self.type!r}/{self.quality!r}")


@dataclass(frozen=True)
class Answer:
    """One provider's answer for one subject: no values means not found. `http_status` is None when
    no request was sent (the subject lacked what the provider needs); `credits_spent` and
    `credits_remaining` are what the provider reported, when it does; `note` says why nothing was
    found when the provider told us (e.g. a plan that hides contact fields)."""

    values: tuple[FoundValue, ...] = ()
    http_status: int | None = None
    credits_spent: int | None = None
    credits_remaining: int | None = None
    note: str = ""

    @property
    def found(self) -> bool:
        return bool(self.values)

    @property
    def sent(self) -> bool:
        return self.note != NOT_ENOUGH_DATA


@dataclass(frozen=True)
class PollResult:
    """An asynchronous provider's state of one submission: `answers` (in submission order) once
    ready, None while the provider is still working."""

    answers: tuple[Answer, ...] | None
    http_status: int
    credits_remaining: int | None = None

    @property
    def ready(self) -> bool:
        return self.answers is not None


@dataclass(frozen=True)
class Submission:
    request_id: str
    http_status: int
    credits_remaining: int | None = None


class ProviderError(Exception):
    """A lookup that produced no answer. `reason` is a short code, safe to show to users;
    `detail` is the provider's own words, with every configured key redacted."""

    outcome: ClassVar[str] = "error"

    def __init__(self, reason: str, *, http_status: int | None = None, detail: str = "") -> None:
        self.reason = reason
        self.http_status = http_status
        self.detail = redact(detail)[:500]
        super().__init__(f"{reason}: {self.detail}" if self.detail else reason)


class TransientProviderError(ProviderError):
    """Worth retrying later: timeouts, connection errors, 5xx, "slow down". `retry_after` is the
    provider's own hint in seconds, when it gave one."""

    outcome = "transient"

    def __init__(
        self,
        reason: str,
        *,
        http_status: int | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason, http_status=http_status, detail=detail)
        self.retry_after = retry_after


class RateLimitWait(TransientProviderError):
    """Nothing was sent: the provider's own limit leaves no slot within
    ENRICHMENT_PROVIDER_MAX_WAIT. Says nothing about the provider's health."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("rate_limited_locally", retry_after=retry_after)


class ProviderFailure(ProviderError):
    """The provider as a whole cannot answer anyone: rejected key, out of credits or quota. Opens
    the provider's circuit for the cooldown."""

    outcome = "provider_failure"


class PermanentProviderError(ProviderError):
    """The provider refused this request itself (invalid parameters); retrying cannot help, and the
    provider is fine for other subjects."""

    outcome = "invalid_request"


# What one documented error status (or a provider's own error code) means: the class and reason.
ErrorRule = tuple[type[ProviderError], str]
ErrorRules = Mapping[int | str, ErrorRule]
KEY_REJECTED: ErrorRule = (ProviderFailure, "key_rejected")
CREDITS_EXHAUSTED: ErrorRule = (ProviderFailure, "credits_exhausted")
INVALID_REQUEST: ErrorRule = (PermanentProviderError, "invalid_request")
# "Slow down": the one rule whose error carries the provider's retry hint.
RATE_LIMITED: ErrorRule = (TransientProviderError, "rate_limited")


def classified_error(
    response: "httpx.Response",
    rules: ErrorRules,
    *,
    detail: str,
    code: str = "",
    retry_after: float | None = None,
) -> ProviderError:
    """The error an adapter's `rules` give for a refused request: the first rule, in table order,
    keyed by the response's status or by the provider's error `code`; only RATE_LIMITED carries
    `retry_after`. A status the table does not list is the shared `unexpected` error."""
    from providers.http import unexpected  # providers.http imports this module

    status = response.status_code
    rule = next((rule for key, rule in rules.items() if key in (status, code)), None)
    if rule is None:
        return unexpected(response)
    error_class, reason = rule
    if rule == RATE_LIMITED:
        return TransientProviderError(
            reason, http_status=status, detail=detail, retry_after=retry_after
        )
    return error_class(reason, http_status=status, detail=detail)


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    api_key: str
    base_url: str
    timeout: float
    rate_limit: str = ""


class Adapter(ABC):
    """One provider. Subclasses set the class attributes and map its answers; the shared HTTP
    client (`self.http`) does timeouts, pooling, header auth and rate limiting."""

    name: ClassVar[str]
    fields: ClassVar[frozenset[str]]
    # The one header the provider documents for its key; None for a provider without a key.
    key_header: ClassVar[str | None]
    default_base_url: ClassVar[str] = ""
    # The provider's documented limit, in `limits` notation ("15/second;500/minute"); "" = none.
    default_rate_limit: ClassVar[str] = ""
    asynchronous: ClassVar[bool] = False
    # Whether its failures open a shared circuit; an offline provider's made-up failures say
    # nothing of its health.
    has_circuit: ClassVar[bool] = True

    def __init__(self, config: ProviderConfig) -> None:
        from providers.http import ProviderHttp  # providers.http imports this module

        self.config = config
        self.http = ProviderHttp(config, key_header=self.key_header)

    @classmethod
    def requires_key(cls) -> bool:
        return cls.key_header is not None


class SyncAdapter(Adapter):
    @abstractmethod
    def lookup(self, subject: Subject, field: str) -> Answer:
        """The provider's answer, or raises a ProviderError."""


class AsyncAdapter(Adapter):
    """Submits several subjects at once (up to `batch_limit`), then polls until they are ready."""

    asynchronous = True
    batch_limit: ClassVar[int]

    @abstractmethod
    def submit(self, subjects: Sequence[Subject], field: str) -> Submission: ...

    @abstractmethod
    def poll(self, request_id: str) -> PollResult: ...


def obj(value: object) -> dict[str, Any]:
    """A provider's JSON object, or {} when it sent something else in its place."""
    return value if isinstance(value, dict) else {}


def items(value: object) -> list[Any]:
    """A provider's JSON array, or [] when it sent something else in its place."""
    return value if isinstance(value, list) else []


def text(value: object) -> str:
    """A provider's string, or "" for anything else: free plans send booleans (the field exists)
    where paid plans send the value, and null means no data."""
    return value.strip() if isinstance(value, str) else ""
