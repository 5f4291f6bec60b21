"""The ids a log line carries: request, organization, task, enrichment.

They live in a context variable, set by the request middleware, the authentication, the Celery
task signals and the worker's lookup threads, and a logging filter copies them onto every record
(the JSON formatter then writes them as keys). The request and organization ids travel to the
jobs a request queues as Celery message headers, so the same request id appears on every line
from the POST to the settlement, retries included.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

# The ids that travel with a queued job.
PROPAGATED = ("request_id", "organization_id")

_context: ContextVar[dict[str, str]] = ContextVar("log_context", default={})  # noqa: B039 - never mutated


def log_context() -> dict[str, str]:
    return _context.get()


def log_context_bind(**ids: object) -> Token[dict[str, str]]:
    """Adds ids to the current context (empty ones are left out); reset with the token."""
    return _context.set(_context.get() | {key: str(value) for key, value in ids.items() if value})


def log_context_reset(token: Token[dict[str, str]]) -> None:
    _context.reset(token)


@contextmanager
def log_context_bound(**ids: object) -> Iterator[None]:
    token = log_context_bind(**ids)
    try:
        yield
    finally:
        log_context_reset(token)


class ContextFilter(logging.Filter):
    """Puts the context's ids on each record, unless the call passed its own in `extra`."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True
