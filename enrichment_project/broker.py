"""kombu's Redis transport, with one fix: a worker survives the broker going away.

When the broker connection drops, Celery's consumer calls `connection.collect()`, then
`connection.close()` (celery 5.7, `Consumer.on_connection_error_after_connected`). If the
channel was waiting on a BRPOP and has a fanout binding (the remote-control queue every worker
has), both closes that `collect()` attempts fail on the dead socket before the channel is marked
closed, and `collect()` then detaches the transport from its connection. The `close()` that
follows tries to restore the unacknowledged messages through a new client built from the detached
transport's connection parameters, which are now `None`: an `AttributeError`, which is no
connection error, so the worker dies ("Unrecoverable error") instead of reconnecting (kombu 5.7.0,
still so on kombu's main branch). Here a detached transport raises a connection error instead:
the close is given up as for any other dead connection, the consumer reconnects, and the
unacknowledged messages stay in Redis's unacked set, restored after the visibility timeout (and
their enrichments taken back sooner by the re-queue service)."""

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class RedisChannel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel
