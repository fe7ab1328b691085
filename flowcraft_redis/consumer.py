"""A Dramatiq worker in this process that hands each job to an async handler."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import TYPE_CHECKING, Any

from dramatiq.actor import Actor
from dramatiq.common import dq_name
from dramatiq.worker import Worker

from flowcraft_core.protocols.queue import Handler, Job
from flowcraft_redis.broker import QUEUE_NAME, FlowcraftBroker, namespace
from flowcraft_redis.redeliver import Redeliver

if TYPE_CHECKING:
    from flowcraft_redis.queue import RedisQueue

log = logging.getLogger(__name__)

#: The Dramatiq actor every job is a message to.
ACTOR_NAME = "flowcraft_job"
#: How long a draining stop waits for in-flight handlers (ms): as long as they take.
_DRAIN_FOREVER = 30 * 86400 * 1000


async def _call(handler: Handler, job: Job) -> None:
    await handler(job)


class _Heartbeat(threading.Thread):
    """Proves the worker alive every ``interval`` seconds, busy or not, and gives each beat a
    chance to run maintenance (requeueing dead workers' jobs).

    Dramatiq beats only when its consumers call Redis; a worker whose threads and prefetch are
    all taken by long jobs, and whose delay queue is full, stops calling and would be declared
    dead while healthy. Any dispatch call beats, so a queue-size query on both queues does.
    """

    def __init__(self, broker: FlowcraftBroker, interval: float) -> None:
        super().__init__(name="flowcraft-heartbeat", daemon=True)
        self.broker = broker
        self.interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            for queue_name in (QUEUE_NAME, dq_name(QUEUE_NAME)):
                try:
                    self.broker.do_qsize(queue_name)
                except Exception:
                    log.warning("heartbeat to Redis failed", exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


class RedisConsumer:
    """Jobs of a :class:`RedisQueue` delivered to ``handler`` on the event loop that called
    :meth:`RedisQueue.consume`, at most ``concurrency`` at once.

    Each consumer has its own Dramatiq broker (its own worker identity and heartbeat), so
    several can run in one process and a stopped one can be followed by a new one. Its Dramatiq
    worker runs ``concurrency`` threads; each blocks on the handler's coroutine, scheduled on
    the loop. The message is acknowledged only when the handler returned; if it raised, the
    :class:`Redeliver` middleware enqueues it again with a backoff.
    """

    def __init__(
        self,
        queue: RedisQueue,
        handler: Handler,
        concurrency: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        settings = queue.settings
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.loop = loop
        self.broker = FlowcraftBroker(settings, queue.client, middleware=[Redeliver()])
        self.actor: Actor[Any, None] = Actor(
            self._process,
            broker=self.broker,
            actor_name=ACTOR_NAME,
            queue_name=QUEUE_NAME,
            priority=0,
            options={},
        )
        self.worker = Worker(
            self.broker,
            worker_threads=concurrency,
            worker_timeout=max(1, round(settings.poll * 1000)),
        )
        self._heartbeat = _Heartbeat(self.broker, settings.heartbeat_interval)
        self._running: set[concurrent.futures.Future[None]] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._cancelling = False  # set by stop(drain=False): cancel every handler, late or not

    def start(self) -> None:
        # Dramatiq's CLI emits process_boot before starting workers; do the same when running
        # one programmatically, for any middleware that sets itself up on it.
        self.broker.emit_after("process_boot")
        self.worker.start()
        self._heartbeat.start()

    def _process(self, data: dict[str, Any]) -> None:
        """The actor, on a Dramatiq worker thread: run the handler on the loop, wait for it,
        and raise what it raised (so the message is not acknowledged)."""
        job = Job.from_dict(data)
        future = asyncio.run_coroutine_threadsafe(_call(self.handler, job), self.loop)
        with self._lock:
            self._running.add(future)
            if self._cancelling:
                # stop(drain=False) took its snapshot before this job got here: a handler
                # started now would run on, and the stop would wait for it forever.
                future.cancel()
        try:
            future.result()
        finally:
            with self._lock:
                self._running.discard(future)

    @property
    def running(self) -> int:
        """Handlers running now."""
        with self._lock:
            return len(self._running)

    async def stop(self, *, drain: bool = True) -> None:
        """Stop taking jobs. With ``drain``, in-flight handlers finish and are acknowledged;
        without, they are cancelled and their jobs enqueued again. Jobs fetched but not started
        go back to the queue either way."""
        if self._stopped:
            return
        self._stopped = True
        if not drain:
            with self._lock:
                self._cancelling = True
                running = list(self._running)
            for future in running:
                future.cancel()
        try:
            await asyncio.to_thread(self._shutdown)
        finally:
            self.queue._forget(self)

    def _shutdown(self) -> None:
        # Dramatiq's stop lets worker threads finish their message, then requeues what sat in
        # its in-memory work and delay queues.
        self.worker.stop(timeout=_DRAIN_FOREVER)
        self._heartbeat.stop()
        if not any(thread.is_alive() for thread in self.worker.workers):
            self._hand_back()
        self.broker.close()

    def _hand_back(self) -> None:
        """Requeue what this worker fetched but Dramatiq's stop did not hand back (messages
        still in its consumer's fetch buffer), now rather than after a heartbeat timeout.

        Every handler has returned, so whatever this worker still holds unacknowledged was
        never started. Backdating its heartbeat to 0 makes it dead; the next maintenance,
        forced here through the queue's own broker (a different worker id, so the call does
        not revive it), moves its messages back and forgets it.
        """
        heartbeats = f"{namespace(self.queue.settings)}:__heartbeats__"
        try:
            self.broker.client.zadd(heartbeats, {self.broker.broker_id: 0}, xx=True)
            for queue_name in (QUEUE_NAME, dq_name(QUEUE_NAME)):
                self.queue.broker.do_qsize(queue_name)
        except Exception:
            # Not lost: the heartbeat stopped, so maintenance will requeue them anyway.
            log.warning("could not hand back prefetched jobs at once", exc_info=True)
