"""The shared HTTP layer: the key only in the documented header, never in a URL, a log line or an
exception; timeouts always set; one client per process, renewed after a fork."""

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from providers import registry
from providers.adapters.apollo import ApolloAdapter
from providers.adapters.dropcontact import DropcontactAdapter
from providers.adapters.hunter import HunterAdapter
from providers.adapters.lusha import LushaAdapter
from providers.adapters.pdl import PdlAdapter
from providers.adapters.prospeo import ProspeoAdapter
from providers.base import (
    ProviderConfig,
    ProviderError,
    Subject,
    SyncAdapter,
    TransientProviderError,
)
from providers.http import retry_after_seconds
from providers.redaction import REDACTED, RedactKeysFilter
from tests.processes import python_run
from tests.providers.conftest import API_KEY

SUBJECT = Subject(first_name="Ada", last_name="Lovelace", company_domain="example.com")
KEY_HEADERS = [
    (HunterAdapter, "X-API-KEY"),
    (PdlAdapter, "X-Api-Key"),
    (ApolloAdapter, "x-api-key"),
    (ProspeoAdapter, "X-KEY"),
    (LushaAdapter, "api_key"),
    (DropcontactAdapter, "X-Access-Token"),
]


def _ask(adapter: SyncAdapter | DropcontactAdapter) -> None:
    if isinstance(adapter, DropcontactAdapter):
        adapter.submit([SUBJECT], "emails")
    else:
        adapter.lookup(SUBJECT, "emails")


@pytest.mark.parametrize(("cls", "header"), KEY_HEADERS)
@pytest.mark.parametrize("status", [401, 500])
def test_key_travels_only_in_the_documented_header_and_never_in_logs_or_errors(
    httpserver: HTTPServer, make_adapter, caplog: pytest.LogCaptureFixture, cls, header, status
) -> None:
    # The provider echoes the key back in its error body, as some do.
    httpserver.expect_request("").respond_with_json(
        {"error": True, "message": f"bad key {API_KEY}", "reason": f"bad key {API_KEY}"},
        status=status,
    )
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # Quiet by default; a deployment may not be.

    with pytest.raises(ProviderError) as raised:
        _ask(make_adapter(cls))

    adapter_headers = make_adapter(cls).http.client().headers
    assert [name for name, value in adapter_headers.items() if API_KEY in value] == [header.lower()]
    request, _ = httpserver.log[0]
    # The test server (WSGI) drops header names with an underscore, such as Lusha's `api_key`.
    expected_on_wire = [] if "_" in header else [header.lower()]
    assert [n.lower() for n, v in request.headers.items() if API_KEY in v] == expected_on_wire
    assert API_KEY not in request.url and API_KEY not in request.get_data(as_text=True)
    assert API_KEY not in str(raised.value) and API_KEY not in repr(raised.value)
    assert API_KEY not in raised.value.detail
    assert "HTTP Request" in caplog.text  # httpx did log the request line...
    assert API_KEY not in caplog.text  # ...without the key


def test_log_filter_redacts_a_key_from_message_arguments_and_tracebacks(make_adapter) -> None:
    make_adapter(HunterAdapter)  # registers the key
    try:
        raise RuntimeError(f"boom {API_KEY}")
    except RuntimeError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "calling with %s", (API_KEY,), sys.exc_info()
        )

    RedactKeysFilter().filter(record)

    text = logging.Formatter().format(record)
    assert API_KEY not in text
    assert text.count(REDACTED) == 2


def test_every_log_handler_of_the_project_redacts_keys() -> None:
    from django.conf import settings

    handlers = settings.LOGGING["handlers"].values()
    assert handlers and all("redact_provider_keys" in h["filters"] for h in handlers)


def test_request_slower_than_the_timeout_is_a_transient_timeout(
    httpserver: HTTPServer, make_adapter
) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/v2/email-finder").respond_with_handler(slow)
    adapter = make_adapter(HunterAdapter, timeout=0.3)

    started = time.monotonic()
    with pytest.raises(TransientProviderError) as raised:
        adapter.lookup(SUBJECT, "emails")

    assert raised.value.reason == "provider_timeout"
    assert time.monotonic() - started < 0.9
    assert adapter.http.client().timeout.read == 0.3


def test_a_base_url_with_a_path_prefixes_every_request_and_params_are_encoded(
    httpserver: HTTPServer,
) -> None:
    # Behind a gateway, e.g. HUNTER_BASE_URL=https://gateway.internal/hunter/
    httpserver.expect_request(
        "/gateway/hunter/v2/email-finder",
        query_string={
            "max_duration": "3",
            "domain": "example.com",
            "first_name": "Zoë & Co",
            "last_name": "Lovelace",
        },
    ).respond_with_json({"data": {"email": None}})
    config = ProviderConfig(
        name="hunter",
        api_key=API_KEY,
        base_url=httpserver.url_for("/gateway/hunter/"),
        timeout=2.0,
    )
    subject = Subject(first_name="Zoë & Co", last_name="Lovelace", company_domain="example.com")

    # Answered by the expectation above, not by the server's 500 for an unexpected request.
    assert HunterAdapter(config).lookup(subject, "emails").values == ()


def test_unreachable_provider_is_a_transient_error() -> None:
    config = ProviderConfig(
        name="hunter", api_key=API_KEY, base_url="http://127.0.0.1:9", timeout=2.0
    )

    with pytest.raises(TransientProviderError) as raised:
        HunterAdapter(config).lookup(SUBJECT, "emails")

    assert raised.value.reason == "provider_unreachable"


def test_one_client_per_process_reused_and_renewed_after_a_fork(make_adapter) -> None:
    http = make_adapter(HunterAdapter).http
    parent_client = http.client()
    assert http.client() is parent_client

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new client, never the parent's sockets
        os.write(write, b"new" if http.client() is not parent_client else b"same")
        os._exit(0)
    os.waitpid(pid, 0)

    assert os.read(read, 10) == b"new"
    assert http.client() is parent_client


@contextmanager
def _keep_alive_server(
    latency: float = 0.0,
) -> Iterator[tuple[HunterAdapter, list[tuple[str, int]]]]:
    """A keep-alive (HTTP/1.1) server answering "not found" after `latency` seconds, and a Hunter
    adapter pointed at it; yields the adapter and the client address (the connection) of every
    request."""
    peers: list[tuple[str, int]] = []

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            peers.append(self.client_address)
            time.sleep(latency)
            body = b'{"data": {"email": null}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = ProviderConfig(
            name="hunter",
            api_key=API_KEY,
            base_url=f"http://127.0.0.1:{server.server_port}",
            timeout=5.0,
        )
        yield HunterAdapter(config), peers
    finally:
        server.shutdown()
        server.server_close()


def test_requests_of_a_process_reuse_one_connection() -> None:
    with _keep_alive_server() as (adapter, peers):
        for _ in range(3):
            adapter.lookup(SUBJECT, "emails")

    assert len(peers) == 3
    assert len(set(peers)) == 1


def test_every_lookup_thread_of_a_process_keeps_its_connection() -> None:
    threads, rounds = 40, 3
    # The latency keeps every thread's request in flight at once.
    with _keep_alive_server(latency=0.1) as (adapter, peers):
        together = threading.Barrier(threads)

        def look_up(_: int) -> None:
            for _ in range(rounds):
                together.wait()  # All at once, as a job's lookups are.
                adapter.lookup(SUBJECT, "emails")

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(look_up, range(threads)))

    assert len(peers) == threads * rounds
    # One connection per thread, kept for its every request.
    assert len(set(peers)) == threads


def test_each_thread_has_its_own_client_and_all_share_one_ssl_context(make_adapter) -> None:
    http = make_adapter(HunterAdapter).http
    with ThreadPoolExecutor(4) as pool:
        clients = list(pool.map(lambda _: (threading.get_ident(), http.client()), range(40)))

    by_thread: dict[int, set[int]] = {}
    for thread, client in clients:
        by_thread.setdefault(thread, set()).add(id(client))
    assert all(len(ids) == 1 for ids in by_thread.values())
    assert len({id(client) for _, client in clients}) == len(by_thread)
    assert http.client() is not clients[0][1]
    assert http.ssl_context() is http.ssl_context()


def test_a_worker_process_builds_the_configured_providers_clients_when_it_starts(
    monkeypatch, settings
) -> None:
    monkeypatch.setenv("HUNTER_API_KEY", API_KEY)
    settings.ENRICHMENT_PROVIDERS = {"emails": ["hunter"], "phones": ["sandbox"]}

    registry.http_clients_open()  # worker_process_init's receiver

    assert registry.adapter("hunter").http._ssl_context is not None
    assert registry.adapter("sandbox").http._ssl_context is not None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7),
        ({"Retry-After": "{http_date}"}, 30),
        ({"x-ratelimit-reset": "{epoch}"}, 30),
        ({"x-ratelimit-reset": "{iso}"}, 30),
        ({"x-ratelimit-reset": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_and_reset_headers_are_read_in_every_documented_format(
    headers: dict[str, str], seconds: float | None
) -> None:
    at = datetime.now(UTC) + timedelta(seconds=30)
    values = {
        "http_date": format_datetime(at, usegmt=True),
        "epoch": str(int(at.timestamp())),
        "iso": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    response = httpx.Response(429, headers={k: v.format(**values) for k, v in headers.items()})

    wait = retry_after_seconds(response, "x-ratelimit-reset")

    assert wait == (None if seconds is None else pytest.approx(seconds, abs=1.5))


def test_a_key_logged_by_any_library_comes_out_redacted() -> None:
    """The project's own logging set-up, in a fresh process: a configured key written to a log
    line (here by a stand-in third-party logger) is printed as [redacted]."""

    script = (
        "import django, logging; django.setup(); "
        "from providers.registry import adapter; adapter('hunter'); "
        f"logging.getLogger('somelib').warning('sending %s', {API_KEY!r})"
    )
    run = python_run(
        script,
        HUNTER_API_KEY=API_KEY,
        ENRICHMENT_PROVIDERS='{"emails": ["hunter"], "phones": ["sandbox"]}',
    )

    assert "somelib sending [redacted]" in run.stderr
    assert API_KEY not in run.stderr + run.stdout
