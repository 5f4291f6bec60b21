"""One delivery attempt over HTTP, made outside any transaction: the address is checked again,
the connection goes to the address that was checked, and no redirect is followed."""

import json
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
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
ANSWER_READ_LIMIT = 64 * 1024


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


def _client_create() -> httpx.Client:
    """trust_env=False: a proxy from the environment would connect to the name, not to the
    checked address."""
    return httpx.Client(
        timeout=settings.WEBHOOK_TIMEOUT,
        follow_redirects=False,
        trust_env=False,
        verify=_tls_context(),
    )


class _Clients:
    """One client per endpoint and URL in a worker process, kept between jobs so that its
    connections stay alive from one job to the next. Never shared between endpoints: a pooled
    TLS connection is keyed by address, and was verified for one host name. The least recently
    used ones are closed beyond `size`. httpx clients are thread-safe (a threads pool runs
    several jobs in one process)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.clients: OrderedDict[tuple[uuid.UUID, str], httpx.Client] = OrderedDict()

    def get(self, endpoint_id: uuid.UUID, url: str) -> httpx.Client:
        key = (endpoint_id, url)
        with self.lock:
            client = self.clients.get(key)
            if client is None:
                client = self.clients[key] = _client_create()
            self.clients.move_to_end(key)
            evicted = []
            while len(self.clients) > self.size:
                evicted.append(self.clients.popitem(last=False)[1])
        for old in evicted:
            old.close()
        return client


_clients = _Clients(size=256)


def delivery_client(*, endpoint_id: uuid.UUID, url: str) -> httpx.Client:
    return _clients.get(endpoint_id, url)


@cache
def sending_pool() -> ThreadPoolExecutor:
    """One per process: its threads wait on receivers, not on the CPU, and are not started
    again for every job."""
    return ThreadPoolExecutor(settings.WEBHOOK_DELIVERY_CONCURRENCY, "webhook-send")


def _drain(response: httpx.Response) -> None:
    """Reads up to ANSWER_READ_LIMIT bytes; beyond, the connection is closed with the response.
    The status is known already: an error while reading only costs the connection."""
    read = 0
    with suppress(httpx.HTTPError):
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > ANSWER_READ_LIMIT:
                return


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
        # Streamed: a receiver's answer body is of no use and may be huge. A short one is read
        # to its end (and dropped), or the connection could not be kept alive for the next.
        with client.stream(
            "POST", checked.url, content=body.encode(), headers=headers, extensions=extensions
        ) as response:
            status_code = response.status_code
            _drain(response)
    except httpx.TimeoutException:
        return Attempt(None, elapsed_ms(), "timeout")
    except httpx.HTTPError as error:
        return Attempt(None, elapsed_ms(), f"connection error: {type(error).__name__}")
    if 200 <= status_code < 300:
        return Attempt(status_code, elapsed_ms(), "")
    if 300 <= status_code < 400:
        return Attempt(status_code, elapsed_ms(), f"HTTP {status_code}: redirects are not followed")
    return Attempt(status_code, elapsed_ms(), f"HTTP {status_code}")
