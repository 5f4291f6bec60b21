"""Per-provider settings, read from the environment by the provider's NAME (its `name`, upper
case): NAME_API_KEY, NAME_BASE_URL, NAME_RATE_LIMIT, NAME_TIMEOUT. They are read here rather than
in settings.py because the configured names (a custom adapter's included) are only known once
ENRICHMENT_PROVIDERS has been resolved; keys are thus never Django settings either."""

import os

from django.conf import settings

from providers.base import Adapter, ProviderConfig
from providers.redaction import secret_register


def variable(name: str, suffix: str) -> str:
    return f"{name.upper()}_{suffix}"


def provider_config(adapter_class: type[Adapter]) -> ProviderConfig:
    """Raises ValueError naming the variable when NAME_TIMEOUT is not a positive number."""
    name = adapter_class.name
    api_key = os.environ.get(variable(name, "API_KEY"), "").strip()
    # Known to the log filter from the first time it is read (a check, a worker start-up).
    secret_register(api_key)
    timeout_text = os.environ.get(variable(name, "TIMEOUT"), "").strip()
    try:
        timeout = float(timeout_text) if timeout_text else settings.ENRICHMENT_PROVIDER_TIMEOUT
    except ValueError:
        timeout = -1.0
    if timeout <= 0:
        raise ValueError(f"{variable(name, 'TIMEOUT')} must be a positive number of seconds")
    return ProviderConfig(
        name=name,
        api_key=api_key,
        base_url=(
            os.environ.get(variable(name, "BASE_URL"), "").strip() or adapter_class.default_base_url
        ).rstrip("/"),
        timeout=timeout,
        rate_limit=os.environ.get(variable(name, "RATE_LIMIT"), "").strip()
        or adapter_class.default_rate_limit,
    )
