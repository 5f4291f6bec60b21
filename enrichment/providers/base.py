"""The provider interface: one lookup of one field for one person."""

from dataclasses import dataclass
from typing import Protocol


class ProviderError(Exception):
    """A lookup that produced no answer; `reason` is short and safe to show to users."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientProviderError(ProviderError):
    """Worth retrying later: timeouts, rate limits, 5xx answers, connection errors."""


class PermanentProviderError(ProviderError):
    """Retrying cannot help: the provider refused the request itself."""


@dataclass(frozen=True)
class Subject:
    """What a provider may know about a person; nothing tenant-specific."""

    first_name: str
    last_name: str
    company_name: str
    company_domain: str
    linkedin_url: str


@dataclass(frozen=True)
class FoundValue:
    value: str
    type: str


class Provider(Protocol):
    name: str

    def lookup(self, subject: Subject, field: str) -> list[FoundValue]:
        """The values found (empty when none), or raises a ProviderError."""
        ...
