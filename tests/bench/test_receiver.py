"""The bench's webhook receiver (section e), run as the bench runs it: a process of its own."""

import json
import urllib.request

from bench.processes import local_receiver


def _deliver(url: str, webhook_id: str, event_type: str) -> None:
    body = json.dumps({"type": event_type}).encode()
    headers = {"webhook-id": webhook_id, "content-type": "application/json"}
    urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers)).read()


def test_it_counts_distinct_events_by_type_and_forgets_them_when_reset() -> None:
    with local_receiver() as receiver:
        for webhook_id in ("a", "a", "b"):  # at least once: "a" counts once
            _deliver(receiver.url, webhook_id, "enrichment.completed")
        _deliver(receiver.url, "c", "enrichment_batch.completed")

        received = receiver.received()
        assert received.counts == {"enrichment.completed": 2, "enrichment_batch.completed": 1}
        assert received.last > 0
        receiver.reset()
        assert receiver.received().counts == {}
    assert not receiver.answers()
