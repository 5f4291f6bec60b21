"""A local webhook receiver for section e: answers 204 to every POST and counts the distinct
events received by type. It stands for an external system, so it runs as a process of its own at
the lowest CPU priority (`nice 19`): on a real deployment its CPU is not the service's.

`python -m bench.receiver PORT`; GET answers the counts and the time of the last POST, DELETE
forgets them."""

import json
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.control import ControlClient

RECEIVER_NICE = 19


class _Received:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        # Delivery is at least once: an event sent twice counts once, by its webhook-id.
        self.ids: dict[str, set[str]] = defaultdict(set)
        self.last = 0.0


class _Receiver(BaseHTTPRequestHandler):
    # Keeps connections alive between deliveries, as most receivers do.
    protocol_version = "HTTP/1.1"
    received = _Received()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        event_type = json.loads(body)["type"]
        with self.received.lock:
            self.received.ids[event_type].add(self.headers["webhook-id"])
            self.received.last = time.time()
        self._answer(204)

    def do_GET(self) -> None:
        with self.received.lock:
            counts = {kind: len(ids) for kind, ids in self.received.ids.items()}
            state = json.dumps({"counts": counts, "last": self.received.last}).encode()
        self._answer(200, state)

    def do_DELETE(self) -> None:
        with self.received.lock:
            self.received.clear()
        self._answer(204)

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    # The webhook worker opens up to (threads x WEBHOOK_DELIVERY_CONCURRENCY) connections at
    # once; the default backlog of 5 would reset some of them.
    request_queue_size = 256
    daemon_threads = True


@dataclass(frozen=True)
class Received:
    counts: dict[str, int]
    # When the last POST arrived (epoch seconds).
    last: float


class ReceiverClient(ControlClient):
    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.url = f"{self.base}/hook"

    def received(self) -> Received:
        state = self.state()
        return Received(counts=state["counts"], last=state["last"])


if __name__ == "__main__":
    _Server(("127.0.0.1", int(sys.argv[1])), _Receiver).serve_forever()
