"""In-memory queue: asyncio, delays via the event loop's timers, at-least-once redelivery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from flowcraft_core.protocols.queue import Handler, Job
from flowcraft_memory.faults import Faults

log = logging.getLogger(__name__)

ERROR_BACKOFF = 0.001
"""Seconds before a job whose handler raised is delivered again, doubling with each delivery
up to :data:`ERROR_BACKOFF_MAX`. Never zero: a handler that always raises without awaiting
anything would otherwise take the job back at once, forever, and starve the event loop."""
ERROR_BACKOFF_MAX = 0.25


class MemoryConsumer:
    def __init__(self, queue: MemoryQueue, handler: Handler, concurrency: int) -> None:
        self._queue = queue
        self._handler = handler
        self._busy: set[asyncio.Task[None]] = set()  # loops running a handler right now
        self._stopping = False
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(max(1, concurrency))]

    async def _loop(self) -> None:
        ready = self._queue._ready_queue()
        me = asyncio.current_task()
        assert me is not None
        while not self._stopping:
            job, delivery = await ready.get()
            self._busy.add(me)
            try:
                await self._handler(job)
            except asyncio.CancelledError:
                self._queue._put(job, delivery + 1)  # handed back, never lost
                raise
            except Exception:
                # The handler raised: not acknowledged, so the job comes back, as it would
                # from a real broker after a worker failure.
                log.debug("handler raised for %s; redelivering", job, exc_info=True)
                self._queue._redeliver(job, delivery, backoff=True)
            else:
                faults = self._queue.faults
                if faults.crash_before_ack(job, delivery):
                    faults.crashed += 1
                    self._queue._redeliver(job, delivery)
            finally:
                self._busy.discard(me)
                ready.task_done()
                self._queue._unfinished -= 1
                if self._queue._unfinished == 0:
                    self._queue._idle.set()

    async def stop(self, *, drain: bool = True) -> None:
        """Stop taking jobs. With ``drain``, handlers already running finish first; jobs not
        yet started stay in the queue. Without, running handlers are cancelled and their jobs
        handed back."""
        self._stopping = True  # a busy loop ends right after its handler, taking nothing more
        busy = [task for task in self._tasks if task in self._busy]
        for task in self._tasks:
            if task not in self._busy:
                task.cancel()
        if drain and busy:
            await asyncio.wait(busy)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class MemoryQueue:
    """Jobs for this process only. Delivery is at least once: a simulated crash gets the job
    again after ``redelivery_delay`` seconds; a handler that raises gets it again after at
    least that, backing off from :data:`ERROR_BACKOFF` to :data:`ERROR_BACKOFF_MAX` so that a
    job that always fails cannot busy-loop."""

    #: A message here is an append to a deque: running siblings of one message together (a
    #: task each) would cost more than it saves (measured: fanout-20 15% slower), so the
    #: engine sends each job on its own (the queue protocol's docstring).
    sibling_messages: ClassVar[bool] = False

    def __init__(self, faults: Faults | None = None, redelivery_delay: float = 0.0) -> None:
        self.faults = faults or Faults()
        self.redelivery_delay = redelivery_delay
        self.enqueued = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Queue[tuple[Job, int]] = asyncio.Queue()
        self._unfinished = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Pending delays: handle -> (loop time due, job, delivery), kept so that a move to
        # another event loop can schedule them again there.
        self._timers: dict[asyncio.TimerHandle, tuple[float, Job, int]] = {}

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop, moving the queue onto it if it is not the one it ran on.

        A process may run one ``memory://`` backend on several loops in turn (each
        ``asyncio.run`` makes a new one); asyncio's primitives belong to one loop, so a new
        loop gets new ones holding the same jobs: nothing queued or delayed is lost."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return loop
        old, self._ready = self._ready, asyncio.Queue()
        while not old.empty():
            self._ready.put_nowait(old.get_nowait())
        self._idle = asyncio.Event()
        if self._unfinished == 0:
            self._idle.set()
        timers, self._timers = self._timers, {}
        self._loop = loop
        now = loop.time()
        for handle, (due, job, delivery) in timers.items():
            handle.cancel()
            self._unfinished -= 1  # counted again by _later
            self._later(max(0.0, due - now), job, delivery)
        return loop

    def _ready_queue(self) -> asyncio.Queue[tuple[Job, int]]:
        self._bind()
        return self._ready

    def _put(self, job: Job, delivery: int) -> None:
        ready = self._ready_queue()
        self._unfinished += 1
        self._idle.clear()
        ready.put_nowait((job, delivery))

    def _later(self, delay: float, job: Job, delivery: int) -> None:
        if delay <= 0:
            self._put(job, delivery)
            return
        loop = self._bind()
        self._unfinished += 1  # a pending timer is unfinished work too
        self._idle.clear()

        def fire() -> None:
            self._timers.pop(handle, None)
            self._unfinished -= 1
            self._put(job, delivery)

        handle = loop.call_later(delay, fire)
        self._timers[handle] = (loop.time() + delay, job, delivery)

    def _redeliver(self, job: Job, delivery: int, *, backoff: bool = False) -> None:
        delay = self.redelivery_delay
        if backoff:
            delay = max(delay, min(ERROR_BACKOFF_MAX, ERROR_BACKOFF * 2.0 ** min(delivery - 1, 30)))
        self._later(delay, job, delivery + 1)

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        self.enqueued += 1
        self._later(delay, job, 1)
        if self.faults.duplicate(job, 1):
            self.faults.duplicated += 1
            self._later(delay, job, 2)

    async def enqueue_many(self, jobs: Sequence[Job], *, delay: float = 0.0) -> None:
        for job in jobs:
            await self.enqueue(job, delay=delay)

    async def consume(self, handler: Handler, *, concurrency: int = 1) -> MemoryConsumer:
        return MemoryConsumer(self, handler, concurrency)

    async def join(self) -> None:
        """Wait until nothing is queued, delayed or in flight (tests and ``flowcraft run``)."""
        self._bind()
        await self._idle.wait()

    def stats(self) -> dict[str, Any]:
        return {"enqueued": self.enqueued, "pending": self._unfinished}

    async def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
