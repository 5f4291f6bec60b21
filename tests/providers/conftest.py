import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from pytest_httpserver import HTTPServer

from providers import registry
from providers.base import Adapter, ProviderConfig
from providers.calls import recorder
from providers.ratelimit import rate_limit_schedule

FIXTURES = Path(__file__).parent / "fixtures"
# A key no answer, URL or log line may ever show.
API_KEY = "sk-live-7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4"


@pytest.fixture(autouse=True)
def fresh_provider_state() -> Iterator[None]:
    """Circuits, pauses and rate-limit windows live in Redis (this suite's db): none carry over."""
    caches["providers"].clear()
    rate_limit_schedule().reset()
    registry.adapter.cache_clear()
    recorder._buffer.clear()
    yield
    registry.adapter.cache_clear()


def fixture(provider: str, name: str) -> dict[str, Any]:
    """A recorded answer, {"status", "headers", "body"}; a header value "$iso+N" / "$epoch+N" is
    N seconds from now, so reset headers stay in the future."""
    answer = json.loads((FIXTURES / provider / f"{name}.json").read_text())
    for header, value in answer["headers"].items():
        if value.startswith("$iso+"):
            at = datetime.fromtimestamp(time.time() + float(value[5:]), UTC)
            answer["headers"][header] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif value.startswith("$epoch+"):
            answer["headers"][header] = str(int(time.time() + float(value[7:])))
    return answer


def serve(
    httpserver: HTTPServer, path: str, provider: str, name: str, method: str = "__ALL"
) -> None:
    answer = fixture(provider, name)
    httpserver.expect_request(path, method=method).respond_with_json(
        answer["body"], status=answer["status"], headers=answer["headers"]
    )


@pytest.fixture
def make_adapter(httpserver: HTTPServer) -> Callable[..., Adapter]:
    """An adapter of `cls` pointed at the local server, with the test key and no rate limit."""

    def make(cls: type[Adapter], *, timeout: float = 5.0, rate_limit: str = "") -> Adapter:
        return cls(
            ProviderConfig(
                name=cls.name,
                api_key=API_KEY,
                base_url=httpserver.url_for("").rstrip("/"),
                timeout=timeout,
                rate_limit=rate_limit,
            )
        )

    return make
