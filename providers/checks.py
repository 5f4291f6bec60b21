"""System checks of the provider configuration (`manage.py check`, and every command that runs
checks), also run when a worker starts: a configured provider without its key is an error naming
the variable, never a silent skip."""

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from providers.base import FIELDS, QUALITIES, Adapter
from providers.config import provider_config, variable
from providers.ratelimit import parse_rate_limit
from providers.registry import adapter_class


@register("providers")
def providers_check(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    return configuration_problems()


def configuration_problems() -> list[CheckMessage]:
    configured = settings.ENRICHMENT_PROVIDERS
    if not (
        isinstance(configured, dict)
        and all(
            isinstance(entries, list) and all(isinstance(e, str) for e in entries)
            for entries in configured.values()
        )
    ):
        return [
            Error(
                "ENRICHMENT_PROVIDERS must be a JSON object of field -> list of provider names, "
                'e.g. {"emails": ["hunter", "pdl"], "phones": ["pdl"]}.',
                id="providers.E001",
            )
        ]
    problems: list[CheckMessage] = [
        Error(f"ENRICHMENT_PROVIDERS has an unknown field {field!r}.", id="providers.E001")
        for field in configured
        if field not in FIELDS
    ]
    problems += [
        Warning(
            f"ENRICHMENT_PROVIDERS does not list {field!r}: it is served by the sandbox provider, "
            "with made-up data.",
            id="providers.W001",
        )
        for field in FIELDS
        if field not in configured
    ]
    checked: set[type] = set()
    for field, entries in configured.items():
        for entry in entries:
            try:
                cls = adapter_class(entry)
            except LookupError as error:
                problems.append(
                    Error(f"ENRICHMENT_PROVIDERS[{field!r}]: {error}.", id="providers.E002")
                )
                continue
            if not (isinstance(cls, type) and issubclass(cls, Adapter)):
                problems.append(
                    Error(
                        f"ENRICHMENT_PROVIDERS[{field!r}]: {entry!r} is not a "
                        "providers.base.Adapter.",
                        id="providers.E002",
                    )
                )
                continue
            if field in FIELDS and field not in cls.fields:
                problems.append(
                    Error(
                        f"Provider {cls.name!r} cannot find {field}; it serves "
                        f"{', '.join(sorted(cls.fields))}.",
                        id="providers.E003",
                    )
                )
            if cls not in checked:
                checked.add(cls)
                problems += _adapter_problems(cls)
    return problems + _min_quality_problems()


def _adapter_problems(cls: type[Adapter]) -> list[CheckMessage]:
    try:
        config = provider_config(cls)
    except ValueError as error:
        return [Error(str(error), id="providers.E005")]
    problems: list[CheckMessage] = []
    if cls.requires_key() and not config.api_key:
        problems.append(
            Error(
                f"Provider {cls.name!r} is configured but "
                f"{variable(cls.name, 'API_KEY')} is not set.",
                hint=f"Set {variable(cls.name, 'API_KEY')}, or remove {cls.name!r} from "
                "ENRICHMENT_PROVIDERS.",
                id="providers.E004",
            )
        )
    try:
        parse_rate_limit(config.rate_limit)
    except ValueError:
        problems.append(
            Error(
                f"{variable(cls.name, 'RATE_LIMIT')}={config.rate_limit!r} is not a rate limit "
                "such as '15/second;500/minute'.",
                id="providers.E005",
            )
        )
    return problems


def _min_quality_problems() -> list[CheckMessage]:
    minimum = settings.ENRICHMENT_MIN_QUALITY
    if isinstance(minimum, dict) and all(
        field in FIELDS and quality in QUALITIES for field, quality in minimum.items()
    ):
        return []
    return [
        Error(
            "ENRICHMENT_MIN_QUALITY must map emails/phones to one of "
            f"{', '.join(QUALITIES)}, e.g. " + '{"emails": "probable"}.',
            id="providers.E006",
        )
    ]


def refuse_misconfigured_worker(**kwargs: Any) -> None:
    """Stops a worker at start-up when the provider configuration has errors. A SystemExit, because
    Celery logs and swallows ordinary exceptions raised by signal handlers."""
    errors = [problem for problem in configuration_problems() if problem.is_serious()]
    if errors:
        raise SystemExit("Provider configuration errors:\n" + "\n".join(f"  {e}" for e in errors))
