"""A local webhook receiver for section e: answers 204 to every POST and counts the distinct
events received by type. It stands for an external system, so it runs as a process of its own at
the lowest CPU priority (`nice 19`): on a real deployment its CPU is not the service's.

`python -m bench.receiver PORT`; GET answers the counts and the time of the last POST, DELETE
forgets them."""

import json
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


class ReceiverClient:
    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/hook"

    def _call(self, method: str) -> bytes:
        request = urllib.request.Request(self.base, method=method)
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.read()

    def received(self) -> Received:
        state = json.loads(self._call("GET"))
        return Received(counts=state["counts"], last=state["last"])

    def clear(self) -> None:
        self._call("DELETE")

    def answers(self) -> bool:
        try:
            self.received()
        except OSError:
            return False
        return True


if __name__ == "__main__":
    _Server(("127.0.0.1", int(sys.argv[1])), _Receiver).serve_forever()
