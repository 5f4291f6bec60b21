"""A local stand-in for Hunter's Email Finder (`GET /v2/email-finder`, PROVIDERS.md section 1) for
section f, on a thread of the bench, on the loopback only.

It answers as Hunter documents: 401 without the key in X-API-KEY, its throttle as 403 "You have
reached the rate limit" (without Retry-After, which Hunter does not document), 400 `wrong_params`
without a domain or company, else after `latency_ms` a 200 whose `data.email` is a verified
address for three persons in four (decided by a hash of the query, as the sandbox decides) and
null for the others. The latency is a timer on the server's event loop, so hundreds of
requests can be in flight at once. Its limit is `limit` requests served in any one second (a
sliding log of arrivals): the strictest reading of "N per second", so a provider counting fixed
windows would refuse no more. Refused requests are answered at once and do not count against
the limit.

The bench runs it as a process of its own, `python -m bench.fake_provider PORT LATENCY_MS LIMIT
KEY` (see `FakeHunterClient`): a provider does not share a process with the client's bench. On
a thread of the bench, whenever the bench's own Python (its drain polling, its collector) held
the interpreter, it stamped arrivals late and refused requests sent in time: from send to
arrival p99 361 ms and at most 487 ms in a traced limited drain, against 69 and 143 ms as a
process of its own.
`GET /_bench/counts` answers its counts, `DELETE` resets them."""

import asyncio
import hashlib
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httptools
import uvloop

from bench.control import ControlClient

PATH = "/v2/email-finder"
COUNTS_PATH = "/_bench/counts"
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

    def answer(self, key: str, query: dict[str, str]) -> "Reply":
        if key != self.api_key:
            return Reply(401, _error("authentication_failed", 401, "No user found for the API key"))
        if not self.admit():
            return Reply(403, _error("too_many_requests", 403, "You have reached the rate limit"))
        domain = query.get("domain") or query.get("company", "")
        if not domain:
            return Reply(400, _error("wrong_params", 400, "You are missing the domain or company"))
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
        return Reply(200, {"data": data, "meta": {"params": query}}, delay=self.latency)


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    # The search's time; refusals are answered at once.
    delay: float = 0.0


def _error(id_: str, code: int, details: str) -> dict[str, Any]:
    return {"errors": [{"id": id_, "code": code, "details": details}]}


class _Connection(asyncio.Protocol):
    """One keep-alive connection, parsed by httptools (C) and answered from loop callbacks: no
    coroutine per request, so the provider's own CPU stays small beside the worker's it shares
    the machine with (h11 in pure Python and a coroutine per connection cost ~300 us a request,
    as much as a third of the worker's own HTTP cost). Answers leave in the order their requests
    came, as HTTP/1.1 wants, even when an answer at once follows a delayed one."""

    def __init__(self, provider: FakeHunter, open_connections: set["_Connection"]) -> None:
        self.provider = provider
        self.open_connections = open_connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None  # uvloop's TCPTransport, not an asyncio.Transport subclass
        self.loop = asyncio.get_running_loop()
        self._url = b""
        self._key = ""
        self._last_answer_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.open_connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open_connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # httptools' callbacks, in the order it makes them for each request.
    def on_message_begin(self) -> None:
        self._url, self._key = b"", ""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-api-key":
            self._key = value.decode()

    def on_message_complete(self) -> None:
        reply = _reply(self.provider, self.parser.get_method(), self._url.decode(), self._key)
        keep_alive = self.parser.should_keep_alive()
        payload = _encoded(reply, keep_alive)
        self._last_answer_at = max(self.loop.time() + reply.delay, self._last_answer_at)
        self.loop.call_at(self._last_answer_at, self._send, payload, keep_alive)

    def _send(self, payload: bytes, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(payload)
        if not keep_alive:
            self.transport.close()


def _reply(provider: FakeHunter, method: bytes, target: str, key: str) -> Reply:
    url = urlsplit(target)
    if url.path == COUNTS_PATH:
        if method == b"DELETE":
            provider.reset()
        counts = provider.counts()
        # With the process's own CPU time so far (bench/adapter_cost.py).
        return Reply(200, {**asdict(counts), "cpu_seconds": time.process_time()})
    if url.path != PATH:
        return Reply(404, _error("not_found", 404, "The requested resource does not exist"))
    return provider.answer(key, dict(parse_qsl(url.query)))


def _encoded(reply: Reply, keep_alive: bool) -> bytes:
    payload = json.dumps(reply.body).encode()
    head = (
        f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}\r\n"
        "content-type: application/json; charset=utf-8\r\n"
        f"content-length: {len(payload)}\r\n"
        f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + payload


@contextmanager
def fake_hunter(
    *, latency_ms: int, limit: int, api_key: str, port: int = 0
) -> Iterator[FakeHunter]:
    """Yields the running provider; its `url` is the base URL (HUNTER_BASE_URL). One uvloop loop
    on a thread of its own serves every connection: no thread to start per connection, so a
    burst of new connections is admitted as fast as it arrives."""
    provider = FakeHunter(latency_ms=latency_ms, limit=limit, api_key=api_key)
    open_connections: set[_Connection] = set()
    loop = uvloop.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(
            lambda: _Connection(provider, open_connections),
            "127.0.0.1",
            port,
            # Every worker process opens up to ENRICHMENT_PROVIDER_CONCURRENCY connections at once.
            backlog=1024,
        )
    )
    provider.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        asyncio.run_coroutine_threadsafe(_stop(server, open_connections), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


class FakeHunterClient(ControlClient):
    """The bench's handle on a fake Hunter running as a process of its own on `port`."""

    def __init__(self, port: int) -> None:
        super().__init__(port, COUNTS_PATH)
        self.url = self.base

    def counts(self) -> Counts:
        state = self.state()
        return Counts(requests=state["requests"], refused=state["refused"])

    def cpu_seconds(self) -> float:
        """The provider process's CPU time since it started."""
        return float(self.state()["cpu_seconds"])


async def _stop(server: asyncio.Server, open_connections: set[_Connection]) -> None:
    """Stops listening and ends the connections the clients still keep alive."""
    server.close()
    for connection in list(open_connections):
        connection.close()
    await server.wait_closed()


if __name__ == "__main__":
    port, latency_ms, limit, api_key = sys.argv[1:5]
    with fake_hunter(latency_ms=int(latency_ms), limit=int(limit), api_key=api_key, port=int(port)):
        threading.Event().wait()  # until the bench stops the process
