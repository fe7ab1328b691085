"""A queue of jobs as Dramatiq messages, on whichever broker a driver builds."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

from dramatiq.actor import Actor
from dramatiq.broker import Broker
from dramatiq.common import current_millis
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from flowcraft_core.protocols.queue import Handler, Job
from flowcraft_dramatiq.consumer import ACTOR_NAME, DUE, DramatiqConsumer
from flowcraft_dramatiq.encoder import require_json

T = TypeVar("T")

#: The Dramatiq queue jobs travel on, unless a driver names another.
QUEUE_NAME = "flowcraft"


def delay_ms(delay: float) -> int | None:
    """Dramatiq's delay for ``delay`` seconds, or None for none.

    Rounded up, plus one millisecond: Dramatiq compares whole milliseconds truncated from the
    clock (``eta = now_ms + delay``, released when ``now_ms >= eta``), so without it a job
    could come up to a millisecond early.
    """
    return None if delay <= 0 else math.ceil(delay * 1000) + 1


def _not_here(data: dict[str, Any]) -> None:
    raise RuntimeError("flowcraft jobs are processed by DramatiqQueue.consume(), not this actor")


class DramatiqQueue:
    """Jobs delivered at least once, with delays, through a Dramatiq broker.

    A job is one message to the actor ``flowcraft_job`` on :attr:`queue_name` whose only
    argument is :meth:`Job.to_dict` (JSON; Dramatiq's JSON encoder is required). Delays use
    Dramatiq's delay queue. A handler that raises gets its job again after a backoff, 100 ms
    doubling to ``max_backoff`` seconds (see :class:`~flowcraft_dramatiq.redeliver.Redeliver`);
    a consumer that stops hands back what it
    fetched but did not start.

    Dramatiq's consumers hold a delayed message unacknowledged until it is due. Where a broker
    takes back a message held too long (RabbitMQ's ``consumer_timeout``), ``max_hold`` bounds
    the hold: a longer delay travels in legs of at most ``max_hold`` seconds, the message
    carrying its due time; a consumer that gets it early enqueues it again for the rest and
    acknowledges it, without calling the handler.

    A driver subclasses it and implements :meth:`new_broker`. The queue owns one broker, for
    enqueueing; each consumer gets its own (its own connections and worker identity). Nothing
    uses Dramatiq's global broker, so queues of several deployments can share a process.
    Blocking broker calls run on a small thread pool of the queue's own, never on the event loop.
    """

    #: The driver's name, for messages and thread names.
    driver: ClassVar[str] = "dramatiq"
    #: What :meth:`consume` starts.
    consumer_class: ClassVar[type[DramatiqConsumer]] = DramatiqConsumer

    def __init__(
        self,
        *,
        queue_name: str = QUEUE_NAME,
        poll: float,
        max_hold: float | None = None,
        max_backoff: float = 5.0,
        threads: int = 4,
    ) -> None:
        require_json(self.driver)
        self.queue_name = queue_name
        #: Longest sleep of an idle consumer between fetches (Dramatiq's ``worker_timeout``).
        self.poll = poll
        #: Longest a consumer holds a delayed job, in seconds (None: as long as the delay).
        self.max_hold = max_hold
        #: Longest backoff before a job whose handler raised is delivered again, in seconds.
        self.max_backoff = max_backoff
        self.broker = self.new_broker([])
        self.actor: Actor[Any, None] = Actor(
            _not_here,
            broker=self.broker,
            actor_name=ACTOR_NAME,
            queue_name=queue_name,
            priority=0,
            options={},
        )
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=f"flowcraft-{self.driver}")
        self._consumers: set[DramatiqConsumer] = set()

    def new_broker(self, middleware: list[Middleware]) -> Broker:
        """A new broker for this queue's deployment, with ``middleware`` (called once for the
        queue and once per consumer)."""
        raise NotImplementedError

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def message(self, job: Job, **options: Any) -> Message[None]:
        """The Dramatiq message for ``job``."""
        return self.actor.message_with_options(args=(job.to_dict(),), **options)

    def _leg(self, delay: float) -> tuple[int | None, dict[str, Any]]:
        """The Dramatiq delay of a job due in ``delay`` seconds, and the options it carries:
        its due time when the delay is longer than :attr:`max_hold`."""
        ms = delay_ms(delay)
        if ms is None or self.max_hold is None or delay <= self.max_hold:
            return ms, {}
        return delay_ms(self.max_hold), {DUE: current_millis() + ms}

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        ms, options = self._leg(delay)
        await self._call(self.actor.send_with_options, args=(job.to_dict(),), delay=ms, **options)

    async def enqueue_many(self, jobs: Sequence[Job], *, delay: float = 0.0) -> None:
        if not jobs:
            return
        ms, options = self._leg(delay)
        await self._call(self.send_batch, [self.message(job, **options) for job in jobs], ms)

    def send_batch(self, messages: Sequence[Message[Any]], delay: int | None) -> None:
        """Enqueue ``messages`` with ``delay`` ms, on a thread of the queue's pool: one at a
        time here; a broker that can send a batch at once overrides it."""
        for message in messages:
            self.broker.enqueue(message, delay=delay)

    async def consume(self, handler: Handler, *, concurrency: int = 1) -> DramatiqConsumer:
        consumer = self.consumer_class(self, handler, concurrency, asyncio.get_running_loop())
        consumer.start()
        self._consumers.add(consumer)
        return consumer

    def _forget(self, consumer: DramatiqConsumer) -> None:
        self._consumers.discard(consumer)

    async def close(self) -> None:
        """Stop any consumer still running (draining), then release the connections."""
        for consumer in list(self._consumers):
            await consumer.stop()
        self._executor.shutdown(wait=True)
        self.broker.close()
