import pytest

from providers import registry
from providers.adapters.sandbox import SandboxAdapter
from providers.base import PermanentProviderError, Subject, TransientProviderError


def _subject(domain: str) -> Subject:
    return Subject(first_name="Ada", last_name="Lovelace", company_domain=domain)


def test_sandbox_by_name_finds_the_same_typed_values_every_time() -> None:
    sandbox = registry.adapter("sandbox")

    first = sandbox.lookup(_subject("found.example"), "emails")

    assert first == sandbox.lookup(_subject("found.example"), "emails")
    assert [(v.value, v.type, v.quality) for v in first.values] == [
        ("ada.lovelace@found.example", "work", "verified"),
        ("alovelace@found.example", "work", "probable"),
    ]
    assert [v.type for v in sandbox.lookup(_subject("found.example"), "phones").values] == [
        "mobile"
    ]


def test_sandbox_magic_domains_force_each_outcome() -> None:
    sandbox = registry.adapter("sandbox")

    assert not sandbox.lookup(_subject("notfound.example"), "emails").found
    with pytest.raises(TransientProviderError):
        sandbox.lookup(_subject("fail.example"), "emails")
    with pytest.raises(PermanentProviderError):
        sandbox.lookup(_subject("invalid.example"), "emails")


def test_sandbox_needs_no_key() -> None:
    assert not SandboxAdapter.requires_key()
