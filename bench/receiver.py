"""A local webhook receiver for the bench: answers 204 to every POST, on a thread of the bench."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Receiver(BaseHTTPRequestHandler):
    # Keeps connections alive between deliveries, as most receivers do.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    # The worker opens up to (processes x WEBHOOK_DELIVERY_CONCURRENCY) connections at once;
    # the default backlog of 5 would reset some of them.
    request_queue_size = 256
    daemon_threads = True


@contextmanager
def local_receiver() -> Iterator[str]:
    """Yields the receiver's URL."""
    server = _Server(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook"
    finally:
        server.shutdown()
        server.server_close()
