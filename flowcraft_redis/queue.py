"""The Redis queue: the shared Dramatiq queue on Dramatiq's Redis broker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from flowcraft_dramatiq import DramatiqQueue
from flowcraft_redis.broker import QUEUE_NAME, FlowcraftBroker
from flowcraft_redis.connection import sync_client, unreachable
from flowcraft_redis.consumer import RedisConsumer
from flowcraft_redis.url import RedisSettings, settings_of


class RedisQueue(DramatiqQueue):
    """Jobs delivered at least once, with delays, through Dramatiq's Redis broker (see
    :class:`~flowcraft_dramatiq.DramatiqQueue`).

    A handler that raises gets its job again after a backoff (100 ms doubling to 5 s); a worker
    that dies has its jobs delivered elsewhere within :attr:`RedisSettings.redelivery_bound`
    seconds. Deployments on one database are kept apart by the URL's ``prefix``.
    """

    driver = "redis"
    consumer_class = RedisConsumer
    broker: FlowcraftBroker

    def __init__(
        self,
        url: str | RedisSettings,
        *,
        client: redis.Redis | None = None,
        threads: int = 4,
    ) -> None:
        self.settings = settings_of(url)
        self.client = client or sync_client(self.settings)
        super().__init__(queue_name=QUEUE_NAME, poll=self.settings.poll, threads=threads)

    def new_broker(self, middleware: list[Middleware]) -> FlowcraftBroker:
        return FlowcraftBroker(self.settings, self.client, middleware=middleware)

    def send_batch(self, messages: Sequence[Message[Any]], delay: int | None) -> None:
        """Enqueue ``messages`` in one MULTI/EXEC transaction: all of them or, on error, none."""
        self.broker.enqueue_batch([(message, delay) for message in messages])

    async def size(self) -> int:
        """Jobs enqueued and not yet acknowledged: waiting, delayed or in flight."""
        return int(await self._call(self.broker.do_qsize, QUEUE_NAME))

    async def purge(self) -> None:
        """Drop every job of this deployment's queue (tests and benchmarks)."""
        await self._call(self.broker.flush, QUEUE_NAME)

    async def ping(self) -> None:
        """Raise :class:`DriverError` naming the URL if Redis does not answer."""
        try:
            await self._call(self.client.ping)
        except (redis.RedisError, OSError) as exc:
            raise unreachable(self.settings, exc) from None

    async def close(self) -> None:
        """Stop any consumer still running (draining), then release the connections."""
        await super().close()
        self.client.close()
