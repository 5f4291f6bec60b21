"""Provider keys never leave this process in clear: every key a provider is configured with is
registered here, and log lines, exception details and admin text pass through `redact`."""

import logging
import threading

REDACTED = "[redacted]"
_secrets: set[str] = set()
_lock = threading.Lock()


def secret_register(secret: str) -> None:
    if secret:
        with _lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    # Longest first, so a key that contains another key is hidden whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class RedactKeysFilter(logging.Filter):
    """A handler filter: redacts the formatted message and any traceback of every record, whichever
    logger (httpx, celery, ours) wrote it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
        return True
