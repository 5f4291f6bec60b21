"""Adapters by name (`hunter`) or by dotted path to a class (a custom adapter), one instance per
process."""

from functools import cache
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from providers.base import Adapter
from providers.config import provider_config

BUILTIN = {
    "sandbox": "providers.adapters.sandbox.SandboxAdapter",
    "hunter": "providers.adapters.hunter.HunterAdapter",
    "pdl": "providers.adapters.pdl.PdlAdapter",
    "apollo": "providers.adapters.apollo.ApolloAdapter",
    "prospeo": "providers.adapters.prospeo.ProspeoAdapter",
    "lusha": "providers.adapters.lusha.LushaAdapter",
    "dropcontact": "providers.adapters.dropcontact.DropcontactAdapter",
}


def adapter_class(entry: str) -> type:
    """The class an ENRICHMENT_PROVIDERS entry names; raises LookupError for an unknown name or a
    path that does not import."""
    path = BUILTIN.get(entry, entry)
    if "." not in path:
        raise LookupError(f"unknown provider {entry!r}: use one of {', '.join(BUILTIN)}")
    try:
        return import_string(path)
    except ImportError as error:
        raise LookupError(f"provider {entry!r} does not import: {error}") from error


# Settings an adapter reads once, when it is built.
_BUILT_FROM = {"ENRICHMENT_PROVIDER_TIMEOUT", "ENRICHMENT_PROVIDER_MAX_WAIT"}


def adapters_forget(*, setting: str, **kwargs: Any) -> None:
    """A setting_changed receiver (tests change settings at run time): adapters built from the old
    value are built again."""
    if setting in _BUILT_FROM:
        adapter.cache_clear()


@cache
def adapter(entry: str) -> Adapter:
    cls = adapter_class(entry)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise LookupError(f"provider {entry!r} is not a providers.base.Adapter")
    return cls(provider_config(cls))


def provider_names_configured() -> list[str]:
    """The providers ENRICHMENT_PROVIDERS names, in order of first appearance, by their `name`
    (a dotted path is imported to learn it; one that does not import keeps its entry)."""
    names: list[str] = []
    for entries in settings.ENRICHMENT_PROVIDERS.values():
        for entry in entries:
            try:
                names.append(getattr(adapter_class(entry), "name", entry))
            except LookupError:
                names.append(entry)
    return list(dict.fromkeys(names))


def http_clients_open(**kwargs: Any) -> None:
    """A worker_process_init and worker_init receiver: a worker process builds every configured
    provider's SSL context and a client (httpx's first imports) when it starts (a prefork child
    after its fork), rather than in its first lookups, whose rate-limit slots would be spent
    late meanwhile."""
    for entries in settings.ENRICHMENT_PROVIDERS.values():
        for entry in entries:
            adapter(entry).http.client()
