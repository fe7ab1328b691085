"""The Redis queue: the shared Dramatiq queue on Dramatiq's Redis broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import redis
from dramatiq.middleware import Middleware

from flowcraft_core.protocols.queue import Job
from flowcraft_dramatiq import DramatiqQueue
from flowcraft_redis.broker import QUEUE_NAME, FlowcraftBroker
from flowcraft_redis.connection import Connections, sync_client, unreachable
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
        connections: Connections | None = None,
        threads: int = 4,
    ) -> None:
        self.settings = settings_of(url)
        self.client = client or sync_client(self.settings)
        self.connections = (connections or Connections(self.settings)).acquire()
        self._prepared = False
        super().__init__(queue_name=QUEUE_NAME, poll=self.settings.poll, threads=threads)

    def new_broker(self, middleware: list[Middleware]) -> FlowcraftBroker:
        return FlowcraftBroker(self.settings, self.client, middleware=middleware)

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        await self.enqueue_many([job], delay=delay)

    async def enqueue_many(self, jobs: Sequence[Job], *, delay: float = 0.0) -> None:
        """Enqueue ``jobs`` as Dramatiq's broker would, one dispatch script call each, sent on
        the event loop's connection with the loop turn's other script calls (a worker's
        commits among them): no thread hop and no round trip of their own. Each job is
        enqueued on its own, not in a transaction: if this raises, some may be enqueued, and
        the caller's retry enqueues them again, which at-least-once delivery allows."""
        if not jobs:
            return
        if not self._prepared:
            await self._call(self.broker.prepare)
            self._prepared = True
        ms, options = self._leg(delay)
        calls = self.broker.dispatches([self.message(job, **options) for job in jobs], ms)
        script = self.connections.script("dramatiq:dispatch", text=self.broker.dispatch_text)
        replies = await asyncio.gather(
            *(script.submit(keys, args) for keys, args in calls), return_exceptions=True
        )
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply

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
        await self.connections.release()
