"""The provider call log, buffered: lookups append to a per-process buffer (no database work on the
hot path) and `provider_calls_flush` writes everything buffered with one bulk INSERT, e.g. when a
job has settled its lookups. A buffer that reaches PROVIDER_CALLS_BUFFER_MAX flushes by itself."""

import logging
import threading
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings

from providers.models import ProviderCall

logger = logging.getLogger(__name__)


class CallRecorder:
    def __init__(self) -> None:
        self._buffer: list[ProviderCall] = []
        self._lock = threading.Lock()

    def record(
        self,
        *,
        provider: str,
        outcome: str,
        at: datetime,
        duration_ms: int,
        reference_id: uuid.UUID | None = None,
        provider_request_id: str = "",
        http_status: int | None = None,
        credits_spent: int | None = None,
        credits_remaining: int | None = None,
        error: str = "",
    ) -> None:
        call = ProviderCall(
            provider=provider,
            outcome=outcome,
            created_at=at,
            duration_ms=duration_ms,
            reference_id=reference_id,
            provider_request_id=provider_request_id,
            http_status=http_status,
            credits_spent=credits_spent,
            credits_remaining=credits_remaining,
            error=error[:500],
        )
        with self._lock:
            self._buffer.append(call)
            full = len(self._buffer) >= settings.PROVIDER_CALLS_BUFFER_MAX
        if full:
            self.flush()

    def flush(self) -> int:
        """Writes every buffered call in one INSERT; returns how many. Safe from any thread."""
        with self._lock:
            calls, self._buffer = self._buffer, []
        if calls:
            try:
                ProviderCall.objects.bulk_create(calls)
            except Exception:
                # Kept for the next flush rather than lost with a database hiccup.
                with self._lock:
                    self._buffer[:0] = calls
                raise
        return len(calls)

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)


recorder = CallRecorder()


def provider_calls_flush() -> int:
    return recorder.flush()


def calls_flush_at_exit(**kwargs: Any) -> None:
    """A worker's exit writes what it buffered; a failure is logged, not raised (Celery would
    swallow it, and the process is going away)."""
    try:
        recorder.flush()
    except Exception:
        logger.exception("%d provider calls could not be written at exit", recorder.pending())
