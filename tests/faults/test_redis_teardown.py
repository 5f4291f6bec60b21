"""The Redis connection a worker loses is closed as a dead connection, not as a crash.

A worker's consumer that loses Redis while it waits on a BRPOP, holding an unacknowledged job and
bound to a fanout queue (remote control's, on every worker), used to die of an AttributeError in
kombu's teardown (enrichment_project/broker.py). That state is built here on purpose, with the
project's transport, and torn down exactly as Celery's consumer does; the worker-level test
(test_worker_faults: the broker restart) meets it only when the loss lands mid-BRPOP."""

import kombu
import pytest
from kombu.common import ignore_errors

from enrichment_project.celery import app
from tests.faults.conftest import ON_RABBITMQ, PrivateRedis, Spawn

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(ON_RABBITMQ, reason="the teardown under test is the Redis transport's"),
]


def wait_on_a_brpop(connection: kombu.Connection) -> None:
    """Takes what the broker has until nothing more comes: the channel then waits on a BRPOP."""
    while True:
        try:
            connection.drain_events(timeout=0.2)
        except TimeoutError:
            return


def test_a_redis_connection_lost_mid_brpop_is_given_up_without_a_crash(spawn: Spawn) -> None:
    broker = PrivateRedis(spawn)
    broker.start()
    connection = app.connection_for_read(broker.url)
    work = kombu.Queue("work", kombu.Exchange("work"), "work")
    control = kombu.Queue("control", kombu.Exchange("control", type="fanout"), auto_delete=True)
    with connection.Producer() as producer:
        producer.publish({"job": 1}, exchange=work.exchange, routing_key="work", declare=[work])
    held: list[kombu.Message] = []
    consumer = connection.Consumer(
        [work, control], callbacks=[lambda _, message: held.append(message)]
    )
    consumer.consume()
    wait_on_a_brpop(connection)
    assert [message.acknowledged for message in held] == [False]

    broker.stop()
    # Celery's consumer on a lost connection (Consumer.on_connection_error_after_connected):
    # only connection errors are ignored, anything else kills the worker.
    connection.collect(socket_timeout=5)
    ignore_errors(connection, connection.close)

    assert not connection.connected
