"""One delivery attempt over HTTP, made outside any transaction: the address is checked again,
the connection goes to the address that was checked, and no redirect is followed."""

import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import certifi
import httpx
from django.conf import settings

from webhooks.addresses import AddressRefused, url_check
from webhooks.signing import signature_header

USER_AGENT = "enrichment-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    duration_ms: int
    error: str

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


@cache
def _tls_context() -> ssl.SSLContext:
    """One per process: loading the CA bundle costs ~60 ms, more than a local delivery, and
    httpx would load it again for every client."""
    return ssl.create_default_context(cafile=certifi.where())


def webhook_body(*, event_type: str, created_at: datetime, payload: Any) -> str:
    return json.dumps(
        {"type": event_type, "timestamp": created_at.isoformat(), "data": payload},
        separators=(",", ":"),
    )


def delivery_client() -> httpx.Client:
    """A client for the deliveries of one endpoint in one job: its connections are kept alive
    between them, and never serve another endpoint's host name (a pooled TLS connection is
    keyed by address, and was verified for one name). trust_env=False: a proxy from the
    environment would connect to the name, not to the checked address."""
    return httpx.Client(
        timeout=settings.WEBHOOK_TIMEOUT,
        follow_redirects=False,
        trust_env=False,
        verify=_tls_context(),
    )


def attempt_send(
    *,
    client: httpx.Client,
    url: str,
    secrets_in_use: Sequence[str],
    message_id: str,
    body: str,
    now: datetime,
) -> Attempt:
    started = time.monotonic()

    def elapsed_ms() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        checked = url_check(url)
    except AddressRefused as refused:
        return Attempt(None, elapsed_ms(), f"address refused: {refused.reason}")
    headers = {
        "host": checked.host_header,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature_header(
            secrets_in_use=secrets_in_use, message_id=message_id, timestamp=now, body=body
        ),
    }
    # The URL names the checked IP; TLS still sends and verifies the host name.
    extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
    try:
        # Streamed and never read: a receiver's answer body is of no use and may be huge.
        with client.stream(
            "POST", checked.url, content=body.encode(), headers=headers, extensions=extensions
        ) as response:
            status_code = response.status_code
    except httpx.TimeoutException:
        return Attempt(None, elapsed_ms(), "timeout")
    except httpx.HTTPError as error:
        return Attempt(None, elapsed_ms(), f"connection error: {type(error).__name__}")
    if 200 <= status_code < 300:
        return Attempt(status_code, elapsed_ms(), "")
    if 300 <= status_code < 400:
        return Attempt(status_code, elapsed_ms(), f"HTTP {status_code}: redirects are not followed")
    return Attempt(status_code, elapsed_ms(), f"HTTP {status_code}")
