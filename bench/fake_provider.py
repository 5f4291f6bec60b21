"""A local stand-in for Hunter's Email Finder (`GET /v2/email-finder`, PROVIDERS.md section 1) for
section f, on a thread of the bench, on the loopback only.

It answers as Hunter documents: 401 without the key in X-API-KEY, its throttle as 403 "You have
reached the rate limit" (without Retry-After, which Hunter does not document), 400 `wrong_params`
without a domain or company, else after `latency_ms` a 200 whose `data.email` is a verified
address for three persons in four (decided by a hash of the query, as the sandbox decides) and
null for the others. The latency is slept on the request's own thread, so hundreds of requests
can be in flight at once. Its limit is `limit` requests served in any one second (a sliding log of
arrivals): the strictest reading of "N per second", so a provider counting fixed windows would
refuse no more. Refused requests are answered at once and do not count against the limit."""

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

PATH = "/v2/email-finder"
WINDOW_SECONDS = 1.0


@dataclass(frozen=True)
class Counts:
    requests: int
    refused: int


class FakeHunter:
    """The provider's state: its limit, its latency and what it has answered."""

    def __init__(self, *, latency_ms: int, limit: int, api_key: str) -> None:
        self.latency = latency_ms / 1000
        self.limit = limit
        self.api_key = api_key
        self.url = ""
        self._lock = threading.Lock()
        self._served: deque[float] = deque()
        self._requests = 0
        self._refused = 0

    def counts(self) -> Counts:
        with self._lock:
            return Counts(requests=self._requests, refused=self._refused)

    def reset(self) -> None:
        with self._lock:
            self._requests = self._refused = 0

    def admit(self) -> bool:
        """Counts the request; False when `limit` requests were already served in the last
        second."""
        now = time.monotonic()
        with self._lock:
            self._requests += 1
            while self._served and self._served[0] <= now - WINDOW_SECONDS:
                self._served.popleft()
            if len(self._served) >= self.limit:
                self._refused += 1
                return False
            self._served.append(now)
            return True

    def answer(self, key: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if key != self.api_key:
            return 401, _error("authentication_failed", 401, "No user found for the API key")
        if not self.admit():
            return 403, _error("too_many_requests", 403, "You have reached the rate limit")
        domain = query.get("domain") or query.get("company", "")
        if not domain:
            return 400, _error("wrong_params", 400, "You are missing the domain or company")
        time.sleep(self.latency)
        first, last = query.get("first_name", ""), query.get("last_name", "")
        digest = hashlib.sha256(f"{first}|{last}|{domain}".lower().encode()).digest()
        found = digest[0] % 4 != 0
        data = {
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}@{domain}".lower() if found else None,
            "score": 97 if found else None,
            "domain": domain,
            "accept_all": False,
            "verification": {"date": None, "status": "valid" if found else None},
        }
        return 200, {"data": data, "meta": {"params": query}}


def _error(id_: str, code: int, details: str) -> dict[str, Any]:
    return {"errors": [{"id": id_, "code": code, "details": details}]}


class _Handler(BaseHTTPRequestHandler):
    # Keeps connections alive between requests, as the adapter's httpx client expects.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment (flushed after each request), and without Nagle's
    # delay: otherwise the client's delayed ACK adds ~40 ms to every answer.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: "_Server"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != PATH:
            status, body = 404, _error("not_found", 404, "The requested resource does not exist")
        else:
            key = self.headers.get("X-API-KEY", "")
            status, body = self.server.provider.answer(key, dict(parse_qsl(url.query)))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    # Every worker process opens up to ENRICHMENT_PROVIDER_CONCURRENCY connections at once; the
    # default backlog of 5 would reset some of them.
    request_queue_size = 1024
    daemon_threads = True

    def __init__(self, provider: FakeHunter) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.provider = provider


@contextmanager
def fake_hunter(*, latency_ms: int, limit: int, api_key: str) -> Iterator[FakeHunter]:
    """Yields the running provider; its `url` is the base URL (HUNTER_BASE_URL)."""
    provider = FakeHunter(latency_ms=latency_ms, limit=limit, api_key=api_key)
    server = _Server(provider)
    provider.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
