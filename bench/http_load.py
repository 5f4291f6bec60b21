"""Concurrent clients posting to the running gunicorn, one connection per request (gunicorn's
sync workers close it after each response)."""

import http.client
import json
import threading
import time
import uuid
from collections.abc import Sequence

from bench.sql import Throughput, throughput

BATCH_PATH = "/api/v1/operations/enrichment/batch"


def batch_body(person_ids: Sequence[uuid.UUID], field: str = "emails") -> bytes:
    return json.dumps({"personIds": [str(pk) for pk in person_ids], "field": field}).encode()


def post_concurrently(port: int, api_key: str, bodies_per_client: list[list[bytes]]) -> Throughput:
    """Each client posts its bodies one after the other; all clients start together."""
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    start_line = threading.Barrier(len(bodies_per_client))
    spans: list[tuple[float, float]] = []
    failures: list[str] = []

    def client(bodies: list[bytes]) -> None:
        start_line.wait()
        for body in bodies:
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                conn.request("POST", BATCH_PATH, body, headers)
                reply = conn.getresponse()
                content = reply.read()
            finally:
                conn.close()
            spans.append((started, time.perf_counter()))
            if reply.status != 200:
                failures.append(f"{reply.status} {content[:300]!r}")

    threads = [threading.Thread(target=client, args=(bodies,)) for bodies in bodies_per_client]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} batch requests failed, first: {failures[0]}")
    return throughput(spans)
