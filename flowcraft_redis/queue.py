"""The Redis queue: jobs as Dramatiq messages on Redis."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import dramatiq
import redis
from dramatiq.actor import Actor
from dramatiq.encoder import JSONEncoder
from dramatiq.message import Message

from flowcraft_core.errors import DriverError
from flowcraft_core.protocols.queue import Handler, Job
from flowcraft_redis.broker import QUEUE_NAME, FlowcraftBroker
from flowcraft_redis.connection import sync_client, unreachable
from flowcraft_redis.consumer import ACTOR_NAME, RedisConsumer
from flowcraft_redis.url import RedisSettings, settings_of

T = TypeVar("T")


def delay_ms(delay: float) -> int | None:
    """Dramatiq's delay for ``delay`` seconds, or None for none.

    Rounded up, plus one millisecond: Dramatiq compares whole milliseconds truncated from the
    clock (``eta = now_ms + delay``, released when ``now_ms >= eta``), so without it a job
    could come up to a millisecond early.
    """
    return None if delay <= 0 else math.ceil(delay * 1000) + 1


def _not_here(data: dict[str, Any]) -> None:
    raise RuntimeError("flowcraft jobs are processed by RedisQueue.consume(), not this actor")


class RedisQueue:
    """Jobs delivered at least once, with delays, through Dramatiq's Redis broker.

    A job is one message to the actor ``flowcraft_job`` whose only argument is
    :meth:`Job.to_dict` (JSON; Dramatiq's JSON encoder is required). Delays use Dramatiq's
    delay queue. A handler that raises gets its job again after a backoff (100 ms doubling to
    5 s); a worker that dies has its jobs delivered elsewhere within
    :attr:`RedisSettings.redelivery_bound` seconds.

    The queue owns one broker, for enqueueing; each consumer has its own. Nothing uses
    Dramatiq's global broker, so queues of several deployments can share a process. Blocking
    broker calls run on a small thread pool of the queue's own, never on the event loop.
    """

    def __init__(
        self,
        url: str | RedisSettings,
        *,
        client: redis.Redis | None = None,
        threads: int = 4,
    ) -> None:
        self.settings = settings_of(url)
        encoder = dramatiq.get_encoder()
        if not isinstance(encoder, JSONEncoder):
            raise DriverError(
                "the Redis driver sends jobs as JSON, but dramatiq.set_encoder() was given "
                f"{type(encoder).__name__}; restore dramatiq.JSONEncoder"
            )
        self.client = client or sync_client(self.settings)
        self.broker = FlowcraftBroker(self.settings, self.client)
        self.actor: Actor[Any, None] = Actor(
            _not_here,
            broker=self.broker,
            actor_name=ACTOR_NAME,
            queue_name=QUEUE_NAME,
            priority=0,
            options={},
        )
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="flowcraft-redis")
        self._consumers: set[RedisConsumer] = set()

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def message(self, job: Job) -> Message[None]:
        """The Dramatiq message for ``job``."""
        return self.actor.message_with_options(args=(job.to_dict(),))

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        await self._call(self.actor.send_with_options, args=(job.to_dict(),), delay=delay_ms(delay))

    async def enqueue_many(self, jobs: Sequence[Job], *, delay: float = 0.0) -> None:
        """Enqueue ``jobs`` in one MULTI/EXEC transaction: all of them or, on error, none."""
        if not jobs:
            return
        ms = delay_ms(delay)
        await self._call(self.broker.enqueue_batch, [(self.message(job), ms) for job in jobs])

    async def consume(self, handler: Handler, *, concurrency: int = 1) -> RedisConsumer:
        consumer = RedisConsumer(self, handler, concurrency, asyncio.get_running_loop())
        consumer.start()
        self._consumers.add(consumer)
        return consumer

    def _forget(self, consumer: RedisConsumer) -> None:
        self._consumers.discard(consumer)

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
        for consumer in list(self._consumers):
            await consumer.stop()
        self._executor.shutdown(wait=True)
        self.broker.close()
        self.client.close()
