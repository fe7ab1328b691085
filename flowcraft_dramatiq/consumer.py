"""A Dramatiq worker in this process that hands each job to an async handler."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
from typing import TYPE_CHECKING, Any

from dramatiq.actor import Actor
from dramatiq.common import current_millis
from dramatiq.middleware import CurrentMessage
from dramatiq.worker import Worker

from flowcraft_core.protocols.queue import Handler, Job
from flowcraft_dramatiq.redeliver import Redeliver

if TYPE_CHECKING:
    from flowcraft_dramatiq.queue import DramatiqQueue

log = logging.getLogger(__name__)

#: The Dramatiq actor every job is a message to.
ACTOR_NAME = "flowcraft_job"
#: The message option holding a long-delayed job's due time (ms since the epoch).
DUE = "flowcraft_due"
#: How long a draining stop waits for in-flight handlers (ms): as long as they take.
_DRAIN_FOREVER = 30 * 86400 * 1000


class HandedBack(Exception):
    """Raised on the Dramatiq thread of a handler that a stop without drain cancelled: the
    message is not acknowledged and :class:`Redeliver` enqueues it again. Declared as thrown,
    so Dramatiq logs one line for it, not a traceback."""


async def _call(handler: Handler, job: Job) -> None:
    await handler(job)


class DramatiqConsumer:
    """Jobs of a :class:`DramatiqQueue` delivered to ``handler`` on the event loop that called
    :meth:`DramatiqQueue.consume`, at most ``concurrency`` at once.

    Each consumer has its own Dramatiq broker (its own connections and worker identity), so
    several can run in one process and a stopped one can be followed by a new one. Its Dramatiq
    worker runs ``concurrency`` threads; each blocks on the handler's coroutine, scheduled on
    the loop. The message is acknowledged only when the handler returned; if it raised, the
    :class:`Redeliver` middleware enqueues it again with a backoff.

    A broker that needs more than Dramatiq's worker to keep its guarantees (the Redis broker's
    heartbeat) overrides :meth:`_on_start` and :meth:`_on_stop`.
    """

    def __init__(
        self,
        queue: DramatiqQueue,
        handler: Handler,
        concurrency: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.loop = loop
        redeliver = Redeliver(max_backoff=round(queue.max_backoff * 1000))
        self.broker = queue.new_broker([redeliver, CurrentMessage()])
        self.actor: Actor[Any, None] = Actor(
            self._process,
            broker=self.broker,
            actor_name=ACTOR_NAME,
            queue_name=queue.queue_name,
            priority=0,
            options={"throws": (HandedBack,)},
        )
        self.worker = Worker(
            self.broker,
            worker_threads=concurrency,
            worker_timeout=max(1, round(queue.poll * 1000)),
        )
        self._running: set[concurrent.futures.Future[None]] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._cancelling = False  # set by stop(drain=False): cancel every handler, late or not

    def start(self) -> None:
        # Dramatiq's CLI emits process_boot before starting workers; do the same when running
        # one programmatically, for any middleware that sets itself up on it.
        self.broker.emit_after("process_boot")
        self.worker.start()
        self._on_start()

    def _on_start(self) -> None:
        """Called once the Dramatiq worker runs."""

    def _on_stop(self, idle: bool) -> None:
        """Called once the Dramatiq worker has stopped, before the broker closes; ``idle``
        says whether every handler has returned (nothing this worker holds was started)."""

    def _process(self, data: dict[str, Any]) -> None:
        """The actor, on a Dramatiq worker thread: run the handler on the loop, wait for it,
        and raise what it raised (so the message is not acknowledged)."""
        message = CurrentMessage.get_current_message()
        due = None if message is None else message.options.get(DUE)
        if due is not None and self._not_yet(message, int(due)):
            return
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
        except concurrent.futures.CancelledError:
            if self._cancelling:
                raise HandedBack(f"{job} handed back by a stopping worker") from None
            raise
        finally:
            with self._lock:
                self._running.discard(future)

    def _not_yet(self, message: Any, due: int) -> bool:
        """Send a job that arrived before its due time on its next leg; False once it is due.
        A failed send raises, so the message comes back through Redeliver and tries again."""
        remaining = due - current_millis()
        if remaining <= 0:
            return False
        hold = self.queue.max_hold
        leg = remaining + 1 if hold is None else min(remaining + 1, math.ceil(hold * 1000) + 1)
        log.debug(
            "job %s is due in %d ms: on the delay queue again for %d", message, remaining, leg
        )
        self.broker.enqueue(message, delay=leg)
        return True

    @property
    def running(self) -> int:
        """Handlers running now."""
        with self._lock:
            return len(self._running)

    async def stop(self, *, drain: bool = True) -> None:
        """Stop taking jobs. With ``drain``, in-flight handlers finish and are acknowledged;
        without, they are cancelled and their jobs enqueued again. Jobs fetched but not started
        go back to the queue either way. A stop without ``drain`` during a draining one cancels
        the handlers that one waits for."""
        if not drain:
            # Also while a draining stop is under way: a second, impatient stop (a worker's
            # second SIGTERM) cancels what the first was waiting for, and that stop ends.
            with self._lock:
                self._cancelling = True
                running = list(self._running)
            for future in running:
                future.cancel()
        if self._stopped:
            return
        self._stopped = True
        try:
            await asyncio.to_thread(self._shutdown)
        finally:
            self.queue._forget(self)

    def _shutdown(self) -> None:
        # Dramatiq's stop lets worker threads finish their message, then requeues what sat in
        # its in-memory work and delay queues.
        self.worker.stop(timeout=_DRAIN_FOREVER)
        self._on_stop(idle=not any(thread.is_alive() for thread in self.worker.workers))
        self.broker.close()
