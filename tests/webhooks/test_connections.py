"""A worker process keeps one client per endpoint between delivery jobs: the second job reuses
the first one's keep-alive connection, an endpoint never gets another endpoint's, and a long answer
body (not read to its end) costs only its connection."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from organizations.models import Organization
from tests.webhooks.conftest import HOOK_PATH, record_events
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.sending import ANSWER_READ_LIMIT
from webhooks.services import webhook_deliveries_send, webhook_endpoint_create

pytestmark = pytest.mark.django_db


class _KeepAlive(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The client port of every request: one port per TCP connection.
    ports: list[int]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.ports.append(self.client_address[1])
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def keep_alive_receiver(local_receivers: None) -> Iterator[tuple[str, list[int]]]:
    ports: list[int] = []
    handler = type("Handler", (_KeepAlive,), {"ports": ports})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", ports
    server.shutdown()
    server.server_close()


def _send_one(organization: Organization) -> None:
    """One job sending the one delivery just recorded."""
    [event] = record_events(organization)
    [delivery] = WebhookDelivery.objects.filter(event=event)
    assert webhook_deliveries_send(delivery_ids=[str(delivery.pk)]) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_consecutive_jobs_to_one_endpoint_reuse_its_connection(tenant, keep_alive_receiver):
    base, ports = keep_alive_receiver
    webhook_endpoint_create(
        organization=tenant.organization, url=f"{base}/a", events=["enrichment.completed"]
    )
    _send_one(tenant.organization)
    _send_one(tenant.organization)
    assert len(ports) == 2 and ports[0] == ports[1]


def test_two_endpoints_on_one_address_never_share_a_connection(
    tenant, make_tenant, keep_alive_receiver
):
    base, ports = keep_alive_receiver
    other = make_tenant()
    for organization, path in ((tenant.organization, "/a"), (other.organization, "/b")):
        webhook_endpoint_create(
            organization=organization, url=f"{base}{path}", events=["enrichment.completed"]
        )
    _send_one(tenant.organization)
    _send_one(other.organization)
    assert len(ports) == 2 and ports[0] != ports[1]


def test_an_answer_longer_than_the_read_limit_fails_neither_its_delivery_nor_the_next(
    tenant, receiver, make_endpoint
):
    make_endpoint(tenant.organization)
    receiver.expect_request(HOOK_PATH).respond_with_data("x" * (4 * ANSWER_READ_LIMIT))
    _send_one(tenant.organization)
    _send_one(tenant.organization)
    assert len(receiver.log) == 2
